"""Files on another host over an SSH connection: over SFTP where the server offers it, else
over plain exec channels (hardened servers often have no ``Subsystem sftp``).

Both classes offer the same four operations the launcher needs (``put_files``, ``get``,
``list_dir``, ``read_text``) and raise ``OSError`` (``FileNotFoundError`` for a missing file)
or ``paramiko.SSHException``. The pre-flight decides per host which one a run uses
(``sftp_available``). The exec variant runs POSIX shell commands and, for listing, the host's
python (``-P``), which the pre-flight has already checked.
"""

from __future__ import annotations

import errno
import os
import shlex
import stat
from collections.abc import Mapping
from pathlib import Path

import paramiko

#: Exit status the exec commands use for "no such file" (distinct from other failures).
_MISSING = 3
_LIST = ("import json, os, stat, sys\n"
         "out = []\n"
         "for e in os.scandir(sys.argv[1]):\n"
         "    s = e.stat(follow_symlinks=False)\n"
         "    out.append([e.name, s.st_size, stat.S_ISREG(s.st_mode)])\n"
         "print(json.dumps(out))\n")


def sftp_available(client: paramiko.SSHClient) -> bool:
    """True when the host's sshd serves SFTP on this connection."""
    try:
        client.open_sftp().close()
    except (paramiko.SSHException, OSError, EOFError):
        return False
    return True


class SFTPFiles:
    """Files on the host over SFTP."""

    how = "SFTP"

    def __init__(self, client: paramiko.SSHClient) -> None:
        self.client = client

    def put_files(self, remote_dir: str, files: Mapping[str, str]) -> None:
        """Create ``remote_dir`` (and parents) and copy local ``files`` (name -> path) into it."""
        with self.client.open_sftp() as sftp:
            path = ""
            for part in remote_dir.strip("/").split("/"):
                path += "/" + part
                try:
                    sftp.stat(path)
                except FileNotFoundError:
                    sftp.mkdir(path)
            for name, local in files.items():
                sftp.put(local, f"{remote_dir.rstrip('/')}/{name}")

    def get(self, remote: str, local: str) -> None:
        """Copy ``remote`` to ``local`` (the caller makes it atomic)."""
        with self.client.open_sftp() as sftp:
            sftp.get(remote, local)

    def list_dir(self, path: str) -> list[tuple[str, int, bool]]:
        """(name, size, is a regular file) of each entry of ``path``."""
        with self.client.open_sftp() as sftp:
            return [(e.filename, e.st_size or 0, stat.S_ISREG(e.st_mode or 0))
                    for e in sftp.listdir_attr(path)]

    def read_text(self, path: str) -> str:
        """The text of ``path`` (UTF-8, undecodable bytes replaced)."""
        with self.client.open_sftp() as sftp, sftp.open(path, "r") as fh:
            return fh.read().decode("utf-8", "replace")


class ExecFiles:
    """Files on the host through commands in exec channels (no SFTP there)."""

    how = "exec channel"

    def __init__(self, client: paramiko.SSHClient, python: str, timeout: float) -> None:
        self.client = client
        self.python = python
        self.timeout = timeout

    def put_files(self, remote_dir: str, files: Mapping[str, str]) -> None:
        q = shlex.quote
        self._run(f"mkdir -p -- {q(remote_dir)}", remote_dir)
        for name, local in files.items():
            target = f"{remote_dir.rstrip('/')}/{name}"
            tmp = f"{remote_dir.rstrip('/')}/.{name}.part"
            self._run(f"cat > {q(tmp)} && mv -f -- {q(tmp)} {q(target)}", target,
                      Path(local).read_bytes())

    def get(self, remote: str, local: str) -> None:
        with open(local, "wb") as fh:
            self._run(self._cat(remote), remote, sink=fh)

    def list_dir(self, path: str) -> list[tuple[str, int, bool]]:
        import json

        q = shlex.quote
        out = self._run(f"test -d {q(path)} || exit {_MISSING}; "
                        f"exec {q(self.python)} -P -c {q(_LIST)} {q(path)}", path)
        return [(str(n), int(s), bool(r)) for n, s, r in json.loads(out.decode("utf-8"))]

    def read_text(self, path: str) -> str:
        return self._run(self._cat(path), path).decode("utf-8", "replace")

    @staticmethod
    def _cat(path: str) -> str:
        q = shlex.quote(path)
        return f"test -e {q} || exit {_MISSING}; exec cat -- {q}"

    def _run(self, command: str, path: str, stdin: bytes = b"", sink=None) -> bytes:
        """Run ``command`` with ``stdin``; its stdout (streamed into ``sink`` when given).
        ``FileNotFoundError`` for exit status ``_MISSING``, ``OSError`` for any other failure."""
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise OSError(errno.ENOTCONN, "not connected", path)
        chan = transport.open_session(timeout=self.timeout)
        chan.settimeout(self.timeout)
        out = bytearray()
        try:
            chan.exec_command(command)
            if stdin:
                chan.sendall(stdin)
            chan.shutdown_write()
            while True:
                data = chan.recv(1 << 16)
                if not data:
                    break
                if sink is not None:
                    sink.write(data)
                else:
                    out += data
            err = b""
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(1 << 16)
            status = chan.recv_exit_status()
        except OSError as exc:  # socket.timeout included
            raise OSError(errno.ETIMEDOUT, f"no answer within {self.timeout:g} s ({exc})",
                          path) from None
        finally:
            chan.close()
        if status == _MISSING:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if status != 0:
            detail = err.decode("utf-8", "replace").strip().splitlines()
            raise OSError(errno.EIO, f"exit {status}: {detail[-1] if detail else 'no message'}", path)
        return bytes(out)
