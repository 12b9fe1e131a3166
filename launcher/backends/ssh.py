"""Reaching other hosts over SSH (paramiko): connections, the remote node agent, files (over
SFTP, or exec channels where a host has no SFTP server: ``launcher.backends.remotefiles``).

* ``~/.ssh/config`` (``HostName``, ``User``, ``Port``, ``IdentityFile``, ``IdentitiesOnly``,
  ``UserKnownHostsFile``), the ssh-agent and the default keys are honoured; the launcher never
  asks for or passes a password.
* Host keys are checked against known_hosts (paramiko ``RejectPolicy``); an unknown host is
  refused with the command that trusts it, unless ``--ssh-accept-new`` opts in (the key is then
  appended to the known_hosts file, like OpenSSH's ``StrictHostKeyChecking=accept-new``).
* ``SSHBackend.spawn_agent`` runs ``python -m launcher.agent`` on the host in an SSH channel
  without a pty. Closing the channel (``kill``), losing the connection, or the launcher dying
  closes the agent's stdin, and the agent then stops its process groups (see
  ``launcher.agent``); its PR_SET_PDEATHSIG also fires when the sshd session process dies.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
from dataclasses import dataclass
from typing import Any, Collection, Mapping

import paramiko

from cluster.errors import PlanError
from launcher.backends.base import Backend, BackendError, module_argv
from launcher.backends.remotefiles import ExecFiles, SFTPFiles
from launcher.config import SSHSettings

KEEPALIVE_S = 2

# paramiko's transport thread logs failed handshakes with a traceback; without a handler
# Python prints that to stderr. Every such failure is reported as an SSHError instead.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SSHError(PlanError):
    """A host cannot be reached or used over SSH; ``str()`` is the one-paragraph message."""


@dataclass(frozen=True)
class SSHTarget:
    """One host as SSH reaches it (after ``~/.ssh/config``)."""

    name: str
    hostname: str
    port: int
    user: str
    key_files: tuple[str, ...] = ()
    identities_only: bool = False
    known_hosts: str = "~/.ssh/known_hosts"

    @property
    def label(self) -> str:
        """``user@host:port`` for messages."""
        return f"{self.user}@{self.hostname}:{self.port}"


def resolve_target(name: str, settings: SSHSettings, user: str | None = None,
                   port: int | None = None) -> SSHTarget:
    """Apply ``~/.ssh/config`` (if present) to host ``name``; hostfile ``user``/``port`` win."""
    cfg: dict[str, Any] = {}
    path = os.path.expanduser(settings.config_path)
    if os.path.isfile(path):
        try:
            cfg = paramiko.SSHConfig.from_path(path).lookup(name)
        except (OSError, paramiko.SSHException, ValueError) as exc:
            raise SSHError(f"{path}: cannot read the SSH config ({exc}); fix it or point "
                           f"--ssh-config at another file") from None
    known = settings.known_hosts or (cfg.get("userknownhostsfile") or "~/.ssh/known_hosts").split()[0]
    try:
        final_port = port or int(cfg.get("port", 22))
    except ValueError:
        raise SSHError(f"{path}: Port for host {name} is not a number") from None
    return SSHTarget(name=name, hostname=cfg.get("hostname", name), port=final_port,
                     user=user or cfg.get("user") or _local_user(),
                     key_files=tuple(os.path.expanduser(k) for k in cfg.get("identityfile", [])),
                     identities_only=str(cfg.get("identitiesonly", "no")).lower() == "yes",
                     known_hosts=os.path.expanduser(known))


def _local_user() -> str:
    import getpass
    return getpass.getuser()


class _UnknownHostKey(paramiko.SSHException):
    def __init__(self, key: paramiko.PKey) -> None:
        super().__init__("unknown host key")
        self.key = key


class _RejectUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse a host whose key is not in known_hosts (the default)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(key)


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """``--ssh-accept-new``: trust a host seen for the first time and remember its key."""

    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self._lock:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def connect(target: SSHTarget, settings: SSHSettings) -> paramiko.SSHClient:
    """An authenticated, host-key-verified connection to ``target``, or ``SSHError``."""
    client = paramiko.SSHClient()
    if os.path.isfile(target.known_hosts):
        try:
            client.load_host_keys(target.known_hosts)
        except (OSError, paramiko.SSHException) as exc:
            raise SSHError(f"{target.known_hosts}: cannot read known hosts ({exc})") from None
    client.set_missing_host_key_policy(_AcceptNew(target.known_hosts) if settings.accept_new
                                       else _RejectUnknown())
    t = settings.timeout
    where = f"host {target.name} ({target.label})"
    try:
        client.connect(target.hostname, port=target.port, username=target.user,
                       key_filename=list(target.key_files) or None,
                       allow_agent=not target.identities_only,
                       look_for_keys=not target.identities_only, timeout=t, banner_timeout=t,
                       auth_timeout=t, channel_timeout=t)
    except _UnknownHostKey as exc:
        client.close()
        keyscan = f"ssh-keyscan -p {target.port} {target.hostname} >> {target.known_hosts}"
        raise SSHError(f"{where}: its host key ({exc.key.get_name()}, SHA256:"
                       f"{exc.key.fingerprint.split(':', 1)[-1]}) is not in {target.known_hosts}, so "
                       f"the host is not trusted. Check the key, then trust it with `{keyscan}`, or "
                       f"pass --ssh-accept-new to accept and remember keys of new hosts") from None
    except paramiko.BadHostKeyException:
        client.close()
        raise SSHError(f"{where}: its host key DIFFERS from the one in {target.known_hosts} "
                       f"(possible man-in-the-middle, or the host was reinstalled). If the change "
                       f"is expected, remove the old entry with `ssh-keygen -R "
                       f"[{target.hostname}]:{target.port} -f {target.known_hosts}`") from None
    except paramiko.AuthenticationException:
        client.close()
        keys = ", ".join(target.key_files) or "ssh-agent and ~/.ssh/id_*"
        raise SSHError(f"{where}: the server refused our key(s) ({keys}). Add your public key to "
                       f"~{target.user}/.ssh/authorized_keys there (ssh-copy-id -p {target.port} "
                       f"{target.user}@{target.hostname}), or set User/IdentityFile for this host "
                       f"in ~/.ssh/config; passwords are not used") from None
    except (socket.timeout, TimeoutError):
        client.close()
        raise SSHError(f"{where}: no answer within {t:g} s (--ssh-timeout). Check that the host is "
                       f"up and the address and port are right (hostfile port=, ~/.ssh/config "
                       f"HostName/Port)") from None
    except socket.gaierror as exc:
        client.close()
        raise SSHError(f"{where}: cannot resolve {target.hostname} ({exc.strerror}); fix the name "
                       f"in the hostfile or HostName in ~/.ssh/config") from None
    except (paramiko.ssh_exception.NoValidConnectionsError, ConnectionError, OSError) as exc:
        client.close()
        raise SSHError(f"{where}: cannot connect ({getattr(exc, 'strerror', None) or exc}). Is sshd "
                       f"running there and is port {target.port} right (hostfile port=, "
                       f"~/.ssh/config Port)?") from None
    except paramiko.SSHException as exc:
        client.close()
        if "banner" in str(exc).lower() or "no existing session" in str(exc).lower():
            # paramiko: the handshake never completed (a non-SSH service on that port)
            raise SSHError(f"{where}: something answers on port {target.port} but it is not an "
                           f"SSH server (no SSH banner within {t:g} s); fix the port (hostfile "
                           f"port=, ~/.ssh/config Port)") from None
        raise SSHError(f"{where}: SSH failed ({exc}); try `ssh -p {target.port} "
                       f"{target.user}@{target.hostname}` to see why") from None
    transport = client.get_transport()
    if transport is not None:
        transport.set_keepalive(KEEPALIVE_S)  # a cut connection is noticed within seconds
    return client


def run_command(client: paramiko.SSHClient, command: str, timeout: float,
                stdin_data: bytes = b"") -> tuple[int, str, str]:
    """Run ``command`` (a shell string) on the host: (exit status, stdout, stderr).

    Raises ``TimeoutError`` when it takes longer than ``timeout`` seconds.
    """
    transport = client.get_transport()
    if transport is None:
        raise ConnectionError("not connected")
    chan = transport.open_session(timeout=timeout)
    chan.settimeout(timeout)
    try:
        chan.exec_command(command)
        if stdin_data:
            chan.sendall(stdin_data)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            data = chan.recv(65536)
            if not data:
                break
            out += data
        while chan.recv_stderr_ready() or not chan.exit_status_ready():
            data = chan.recv_stderr(65536)
            if not data:
                break
            err += data
        return chan.recv_exit_status(), out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    except socket.timeout:
        raise TimeoutError(f"no answer within {timeout:g} s") from None
    finally:
        chan.close()


class ChannelProcess:
    """A remote command in an SSH channel, shaped like the parts of ``subprocess.Popen`` the
    supervisor uses (``stdin``, ``stdout``, ``stderr``, ``poll``, ``wait``, ``kill``, ``pid``)."""

    def __init__(self, client: paramiko.SSHClient, command: str, timeout: float) -> None:
        transport = client.get_transport()
        if transport is None:
            raise ConnectionError("not connected")
        self.channel = transport.open_session(timeout=timeout)
        self.channel.exec_command(command)  # no pty: stdin EOF reaches the agent as EOF
        self.stdin = self.channel.makefile_stdin("wb")
        self.stdout = self.channel.makefile("rb")
        self.stderr = self.channel.makefile_stderr("rb")
        self.pid: int | None = None  # the remote agent reports its pid in "hello"

    def poll(self) -> int | None:
        """The exit status once the remote command ended (or the channel closed), else None."""
        if self.channel.exit_status_ready() or self.channel.closed:
            return self.channel.recv_exit_status()
        return None

    def wait(self) -> int:
        """Block until the remote command ends; -1 when the connection was lost first."""
        return self.channel.recv_exit_status()

    def kill(self) -> None:
        """Close the channel: the agent sees stdin EOF and stops its process groups."""
        self.channel.close()


@dataclass(frozen=True)
class RemoteHost:
    """A host the SSH transport starts an agent on: target, its python, project and cwd."""

    name: str
    target: SSHTarget
    python: str
    workdir: str | None  # the project's folder there (PYTHONPATH); None: installed there
    cwd: str
    run_dir: str | None = None  # the run directory's path there; None: the same as here


def python_command(host: RemoteHost, args: str, env: str = "") -> str:
    """The shell command that runs ``python ARGS`` (already quoted) on ``host``: in the launch
    directory, with the project's folder there on PYTHONPATH (if it has one) and ``env``.
    PYTHONSAFEPATH=1 keeps the launch directory off the module path (as ``-P`` does) and is
    ignored by a Python older than 3.11, so the pre-flight can still report its version."""
    q = shlex.quote
    path = f"PYTHONPATH={q(host.workdir)} " if host.workdir else ""
    return f"cd {q(host.cwd)} && exec env PYTHONSAFEPATH=1 {path}{env}{q(host.python)} {args}"


def agent_command(host: RemoteHost) -> str:
    """The shell command that runs the node agent on ``host`` (no secrets in it, ever)."""
    return python_command(host, "-P -m launcher.agent", "PYTHONUNBUFFERED=1 ")


class SSHBackend(Backend):
    """Agents on other hosts, each in a channel of a verified SSH connection.

    The connections (one per host, opened by the pre-flight) live as long as the run: every
    attempt's agents are channels of the same connections. One found dead when an agent is
    spawned is re-made once (same target, same host-key checks); if that fails, the spawn raises
    ``BackendError`` naming the host and the cause.
    """

    local = False

    def __init__(self, hosts: dict[str, RemoteHost], clients: dict[str, paramiko.SSHClient],
                 settings: SSHSettings | None = None, sftp: Mapping[str, bool] | None = None) -> None:
        self.hosts = hosts
        self.clients = clients
        self.sftp = dict(sftp or {})  # host -> whether its sshd serves SFTP (default: yes)
        self.settings = settings or SSHSettings()
        self._procs: list[ChannelProcess] = []
        self._lock = threading.Lock()

    def client(self, host: str) -> paramiko.SSHClient:
        """The live connection to ``host``, re-made if it was lost; ``BackendError`` if it
        cannot be."""
        with self._lock:
            client = self.clients.get(host)
            transport = client.get_transport() if client is not None else None
            if transport is not None and transport.is_active():
                return client
            if client is not None:
                client.close()
            try:
                client = connect(self.hosts[host].target, self.settings)
            except SSHError as exc:
                raise BackendError(host, f"the SSH connection to {host} was lost and cannot be "
                                         f"re-made: {exc}") from None
            self.clients[host] = client
            return client

    def agent_cmd(self, host: str) -> list[str]:
        """The agent's argv on ``host`` (run there through ``agent_command``)."""
        return module_argv(self.hosts[host].python, "launcher.agent")

    def spawn_agent(self, host: str) -> ChannelProcess:
        """Start the agent of ``host`` in a new SSH channel."""
        try:
            proc = ChannelProcess(self.client(host), agent_command(self.hosts[host]),
                                  self.settings.timeout)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise BackendError(host, f"cannot start the node agent on {host} over SSH "
                                     f"({type(exc).__name__}: {exc})") from None
        self._procs.append(proc)
        return proc

    def files(self, host: str) -> "SFTPFiles | ExecFiles":
        """File operations on ``host``: over SFTP, or exec channels where the pre-flight found
        no SFTP server there."""
        client = self.client(host)
        if self.sftp.get(host, True):
            return SFTPFiles(client)
        return ExecFiles(client, self.hosts[host].python, max(self.settings.timeout, 30.0))

    def files_via(self, host: str) -> str:
        return self.files(host).how

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        self._on(host, f"copy into {remote_dir}", lambda f: f.put_files(remote_dir, files))

    def get(self, host: str, remote: str, local: str) -> None:
        """Copy ``remote`` to ``local`` atomically (temporary name, then rename);
        ``FileNotFoundError`` when ``remote`` does not exist."""
        tmp = f"{local}.{os.getpid()}.part"
        try:
            self._on(host, f"copy {remote}", lambda f: f.get(remote, tmp))
            os.replace(tmp, local)
        finally:
            if os.path.exists(tmp):  # a failed copy leaves no partial file behind
                os.unlink(tmp)

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        return self._on(host, f"list {path}", lambda f: f.list_dir(path))

    def read_text(self, host: str, path: str) -> str:
        """The text of ``path`` on ``host``; ``FileNotFoundError`` if it is missing."""
        return self._on(host, f"read {path}", lambda f: f.read_text(path))

    def same_file(self, host: str, path: str, content: str) -> bool:
        try:
            return self.read_text(host, path) == content
        except (FileNotFoundError, BackendError):
            return False

    def _on(self, host: str, what: str, action):
        """``action(files of host)``; a missing file stays ``FileNotFoundError``, any other
        failure becomes ``BackendError`` naming the host, the operation and the cause."""
        files = self.files(host)
        try:
            return action(files)
        except FileNotFoundError:
            raise
        except (OSError, paramiko.SSHException, EOFError) as exc:
            raise BackendError(host, f"cannot {what} on {host} over {files.how} "
                                     f"({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc})") from None

    def port_free(self, host: str, port: int) -> bool:
        """Asks the host's python whether ``port`` can be bound there (the pre-flight's test)."""
        code = f"from launcher.backends.ports import port_is_free; print(port_is_free({int(port)}))"
        command = python_command(self.hosts[host], f"-c {shlex.quote(code)}")
        try:
            status, out, err = run_command(self.client(host), command, max(self.settings.timeout, 30.0))
        except (TimeoutError, OSError, paramiko.SSHException) as exc:
            raise BackendError(host, f"cannot check port {port} on {host} ({exc})") from None
        if status != 0 or out.strip() not in ("True", "False"):
            raise BackendError(host, f"cannot check port {port} on {host} (exit {status}: "
                                     f"{(err or out).strip()[-200:]})")
        return out.strip() == "True"

    def forget(self, host: str) -> None:
        """Leave ``host`` out from now on (a restart dropped it): its connection is closed."""
        with self._lock:
            self.hosts.pop(host, None)
            client = self.clients.pop(host, None)
        if client is not None:
            client.close()

    def stop_agents(self, agents: Collection[Any] | None = None) -> None:
        """Close the agent channels of ``agents`` (None: every one; remote agents then stop
        their workers)."""
        stopping = [p for p in self._procs if agents is None or p in agents]
        self._procs = [p for p in self._procs if p not in stopping]
        for proc in stopping:
            proc.kill()

    def close(self) -> None:
        """``stop_agents`` and drop the SSH connections (the run is over)."""
        self.stop_agents()
        for client in self.clients.values():
            client.close()
