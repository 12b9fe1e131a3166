"""SSH connections with paramiko: targets after ~/.ssh/config, host-key checks, commands, and the
remote node agent's channel. ``launcher.backends.ssh`` builds the SSH backend on these.

* ``~/.ssh/config`` (``HostName``, ``User``, ``Port``, ``IdentityFile``, ``IdentitiesOnly``,
  ``UserKnownHostsFile``), the ssh-agent and the default keys are honoured; the launcher never
  asks for or passes a password.
* Host keys are checked against known_hosts (paramiko ``RejectPolicy``); an unknown host is
  refused with the command that trusts it, unless ``--ssh-accept-new`` opts in (the key is then
  appended to the known_hosts file, like OpenSSH's ``StrictHostKeyChecking=accept-new``).
* ``ChannelProcess`` runs ``python -m launcher.agent`` on the host in an SSH channel without a
  pty. Closing the channel (``kill``), losing the connection, or the launcher dying closes the
  agent's stdin, and the agent then stops its process groups (see ``launcher.agent``); its
  PR_SET_PDEATHSIG also fires when the sshd session process dies.
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import threading
from dataclasses import dataclass
from typing import Any

import paramiko

from cluster.errors import PlanError
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
    except TimeoutError:
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
    except TimeoutError:
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
        self.stdin = ChannelStdin(self.channel)
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
        self.stdin.close()


class ChannelStdin:
    """The stdin of a remote command: ``write`` sends straight into the channel. Not paramiko's
    own file object: that one flushes in ``__del__``, and one still open at interpreter exit
    (an agent that ended by itself, never killed) printed "Exception ignored in ...
    BufferedFile.__del__" with a traceback when its buffer had been collected first."""

    def __init__(self, channel: paramiko.Channel) -> None:
        self._channel = channel
        self.closed = False

    def write(self, data: bytes) -> int:
        """Send ``data``; OSError when the channel is gone, ValueError once closed."""
        if self.closed:
            raise ValueError("write to a closed remote stdin")
        self._channel.sendall(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: ``write`` sends at once."""

    def close(self) -> None:
        """EOF for the remote command (once); a channel already gone needs none."""
        if self.closed:
            return
        self.closed = True
        try:
            self._channel.shutdown_write()
        except Exception:  # a closed socket, a lost transport: nothing to send
            pass


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
