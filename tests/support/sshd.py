"""A real OpenSSH server for the multi-host tests, on 127.0.0.1 and 127.0.0.2 (two "hosts").

``serve`` starts ``sshd -D -f CONFIG -e`` on a free port with a temporary host key and a
generated user key in a temporary authorized_keys file, plus a client side: an ssh_config
(port, user, key, known_hosts) and a known_hosts file trusting both addresses. The ``sshd``
session fixture in ``tests/conftest.py`` runs it once per test session, and decides what a
machine without OpenSSH means (skip; fail under CI=true).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port

HOSTS = ("127.0.0.1", "127.0.0.2")


def sshd_binary() -> str | None:
    """The OpenSSH server binary, None if there is none (or no ssh-keygen to make its keys)."""
    if shutil.which("ssh-keygen") is None:
        return None
    found = shutil.which("sshd")
    if found:
        return found
    return "/usr/sbin/sshd" if os.access("/usr/sbin/sshd", os.X_OK) else None


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@dataclass
class SSHD:
    """A running test sshd and the client files that reach it."""

    dir: Path
    port: int
    user: str
    ssh_config: Path
    known_hosts: Path
    user_key: Path
    other_key: Path
    popen: subprocess.Popen

    def write_config(self, name: str, key: Path | None = None, known_hosts: Path | None = None) -> Path:
        """Another ssh_config (e.g. with a key the server refuses)."""
        path = self.dir / name
        path.write_text(f"Host *\n  Port {self.port}\n  User {self.user}\n"
                        f"  IdentityFile {key or self.user_key}\n  IdentitiesOnly yes\n"
                        f"  UserKnownHostsFile {known_hosts or self.known_hosts}\n")
        return path

    def known_hosts_for(self, name: str, hosts: tuple[str, ...]) -> Path:
        """A known_hosts file trusting only ``hosts``."""
        path = self.dir / name
        key = (self.dir / "host_key.pub").read_text().split()
        path.write_text("".join(f"[{h}]:{self.port} {key[0]} {key[1]}\n" for h in hosts))
        return path


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def serve(binary: str, root: Path, hosts: tuple[str, ...] = HOSTS,
          sftp: bool = True, own_tmp: bool = False) -> Iterator[SSHD]:
    """A fixture body (``yield from serve(...)``): starts sshd (``binary``) with its keys and
    configuration in ``root``, listening on ``hosts``, yields it, and stops it when resumed.
    Fails if it does not start. ``sftp=False`` leaves out the SFTP subsystem, as hardened
    servers do. ``own_tmp=True`` gives every session ``TMPDIR=root/tmp``, a temporary folder of
    the host's own, for a host the test kills (whose processes clean up nothing), as a real
    lost host takes its /tmp with it."""
    os.chmod(root, 0o700)
    tmp = root / "tmp"
    if own_tmp:
        tmp.mkdir()
    _keygen(root / "host_key")
    _keygen(root / "user_key")
    _keygen(root / "other_key")
    (root / "authorized_keys").write_text((root / "user_key.pub").read_text())
    port = free_port()
    config = root / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", *(f"ListenAddress {h}" for h in hosts),
        f"HostKey {root / 'host_key'}", f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {root / 'authorized_keys'}", "UsePAM no", "StrictModes no",
        "PermitRootLogin yes", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes", "MaxStartups 100", "MaxSessions 100", "LogLevel ERROR",
        *(["Subsystem sftp internal-sftp"] if sftp else []),
        *([f"SetEnv TMPDIR={tmp}"] if own_tmp else []), ""]))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    log = open(root / "sshd.log", "w")
    popen = subprocess.Popen([binary, "-D", "-f", str(config), "-e"], stdout=log,
                             stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 10
    while not all(_listening(h, port) for h in hosts):
        if popen.poll() is not None or time.monotonic() > deadline:
            popen.kill()
            pytest.fail(f"sshd did not start: {(root / 'sshd.log').read_text()}")
        time.sleep(0.05)
    server = SSHD(root, port, getpass.getuser(), root / "ssh_config", root / "known_hosts",
                  root / "user_key", root / "other_key", popen)
    server.known_hosts_for("known_hosts", hosts)
    server.write_config("ssh_config")
    yield server
    popen.terminate()
    try:
        popen.wait(5)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
    log.close()


def hostfile_launch(hostfile: Path, ssh_config: Path, run_dir: Path, home: Path,
                    *args: str) -> tuple[list[str], dict[str, str]]:
    """(argv, environment) of ``wrn-launch --hostfile`` over the test sshd with the real worker,
    in a bare environment as a user would run it (``--plain``; oneDNN held to AVX2, which both
    test "hosts" of this machine have)."""
    from tests.support import REPO

    argv = [sys.executable, "-m", "launcher.cli", "--hostfile", str(hostfile), "--ssh-config",
            str(ssh_config), "--run-dir", str(run_dir), "--plain", *args,
            "--env", "ONEDNN_MAX_CPU_ISA=AVX2"]
    return argv, {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(home)}
