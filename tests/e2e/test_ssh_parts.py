"""The pieces of the SSH launch path against the real test sshd: commands and SFTP, detecting a
shared run directory, connection errors, copying rank 0's outputs back, the merged rank table.
The pieces that need no server are in unit/test_ssh_parts.py."""

from __future__ import annotations

import sys

import pytest

from cluster.errors import PlanError
from cluster.hosts import HostSpec
from cluster.plan import Node
from launcher.backends.preflight import run_preflight
from launcher.backends.remotefiles import ExecFiles, SFTPFiles
from launcher.backends.ssh import SSHBackend, remote_hosts
from launcher.backends.sshclient import RemoteHost, SSHError, SSHTarget, connect, resolve_target, run_command
from launcher.config import SSHSettings
from launcher.rundir.remote import OutputFetcher, share_run_dir

WANT = {"python": "3.11.9", "mindspore": "2.10.0"}


def _host(name="h1", python="/py", workdir="/proj", cwd="/launch dir") -> RemoteHost:
    return RemoteHost(name, SSHTarget(name, name, 22, "u"), python, workdir, cwd)


def test_connect_and_run_command(sshd):
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=5)
    client = connect(resolve_target("127.0.0.2", settings), settings)
    try:
        assert run_command(client, "echo hi; echo err >&2; exit 3", 5) == (3, "hi\n", "err\n")
        assert run_command(client, "cat", 5, b"piped") == (0, "piped", "")
        with pytest.raises(TimeoutError):
            run_command(client, "sleep 5", 0.5)
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["sftp", "exec"])
def test_remote_files_over_sftp_and_exec_channels(sshd, tmp_path, kind):
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=5)
    client = connect(resolve_target("127.0.0.2", settings), settings)
    files = SFTPFiles(client) if kind == "sftp" else ExecFiles(client, sys.executable, 5)
    try:
        local = tmp_path / "src"
        local.mkdir()
        (local / "config.yaml").write_text("a: 1\n")
        (local / "weights.ckpt").write_bytes(bytes(range(256)) * 1000)  # binary, 256 kB
        remote = tmp_path / "elsewhere" / "deep dir"
        files.put_files(str(remote), {"config.yaml": str(local / "config.yaml"),
                                      "weights.ckpt": str(local / "weights.ckpt")})
        assert (remote / "config.yaml").read_text() == "a: 1\n"
        assert files.read_text(str(remote / "config.yaml")) == "a: 1\n"
        files.get(str(remote / "weights.ckpt"), str(tmp_path / "back.ckpt"))
        assert (tmp_path / "back.ckpt").read_bytes() == (local / "weights.ckpt").read_bytes()
        assert sorted(files.list_dir(str(remote))) == [("config.yaml", 5, True),
                                                       ("weights.ckpt", 256000, True)]
        for missing in (lambda: files.read_text(str(remote / "nope")),
                        lambda: files.list_dir(str(remote / "nope")),
                        lambda: files.get(str(remote / "nope"), str(tmp_path / "x"))):
            with pytest.raises(FileNotFoundError):
                missing()
        (tmp_path / "a-file").write_text("")
        with pytest.raises(OSError):  # a parent that is a file
            files.put_files(str(tmp_path / "a-file" / "run"), {"config.yaml": str(local / "config.yaml")})
    finally:
        client.close()


def test_share_run_dir_detects_the_shared_path(sshd, tmp_path):
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=5)
    hosts = remote_hosts([HostSpec("127.0.0.1", 1), HostSpec("127.0.0.2", 1)], settings, "/")
    checks, clients = run_preflight(list(hosts.values()), settings,
                                    {"python": sys.version.split()[0],
                                     "mindspore": WANT["mindspore"]}, "cpu", "builtin:rp2k-sample", {}, None)
    backend = SSHBackend(hosts, clients, settings)
    nodes = [Node(h, h, (0,), (0,)) for h in hosts]
    try:
        assert [c.ok for c in checks] == [True, True], [c.problems for c in checks]
        (tmp_path / "config.yaml").write_text("x: 1\n")
        assert share_run_dir(tmp_path, backend, nodes) == {"127.0.0.1": "shared", "127.0.0.2": "shared"}
        assert backend.port_free("127.0.0.2", sshd.port) is False  # sshd itself holds that one
    finally:
        backend.close()


def test_connect_errors_are_one_paragraph(sshd):
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=2)
    bad = SSHTarget("x", "127.0.0.1", 1, "root", known_hosts=str(sshd.known_hosts))
    with pytest.raises(SSHError, match="cannot connect .* port 1 right"):
        connect(bad, settings)


def test_output_fetcher_copies_rank0_outputs_back(sshd, tmp_path):
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=5)
    hosts = remote_hosts([HostSpec("127.0.0.2", 1)], settings, "/", str(tmp_path / "there"))
    client = connect(hosts["127.0.0.2"].target, settings)
    backend = SSHBackend(hosts, {"127.0.0.2": client}, settings)
    there, here = tmp_path / "there", tmp_path / "here"
    (there / "checkpoints").mkdir(parents=True)
    here.mkdir()
    for name, text in (("checkpoints/a.ckpt", "A"), ("checkpoints/b.ckpt", "B"),
                       ("checkpoints/.b.1.part.ckpt", "partial"), ("checkpoints/latest.json", "{}"),
                       ("classes.json", "[]")):
        (there / name).write_text(text)
    fetcher = OutputFetcher(backend, "127.0.0.2", str(there), here)
    try:
        fetcher.fetch(str(there / "checkpoints" / "a.ckpt"))
        fetcher.fetch("/somewhere/else.ckpt")
        fetcher.fetch("checkpoints/gone.ckpt")
        problems = fetcher.finish()
        assert (here / "checkpoints" / "a.ckpt").read_text() == "A"
        assert (here / "checkpoints" / "b.ckpt").read_text() == "B"  # the final copy
        assert (here / "checkpoints" / "latest.json").exists()
        assert (here / "classes.json").exists()
        assert not (here / "checkpoints" / ".b.1.part.ckpt").exists()
        assert not (here / "eval.json").exists()  # none there: not a problem
        assert len(problems) == 2
        assert "outside the run directory" in problems[0]
        assert "gone.ckpt is gone" in problems[1]
        assert not list((here / "checkpoints").glob("*.part"))
        assert fetcher.finish() == []
    finally:
        fetcher.close()
        backend.close()


def test_merged_rank_table_rules(sshd, tmp_path):
    from cluster.ranktable.build import merged_rank_table, server_address
    from launcher.backends.ssh import read_remote_hccn

    nodes = (Node("a", "10.0.0.1", (0, 1), (0,)), Node("b", "127.0.0.2", (0,), (0,)))
    confs = {"a": {0: "192.168.1.1", 1: "192.168.1.2"}, "b": {0: "192.168.1.3"}}
    with pytest.raises(PlanError, match="loopback"):  # b is unreachable from a
        merged_rank_table(nodes, confs, "/etc/hccn.conf", dry_run=False)
    servers, text, warnings = merged_rank_table(nodes, confs, "/etc/hccn.conf", dry_run=True)
    assert [d.rank_id for s in servers for d in s.devices] == [0, 1, 2]
    assert "loopback" in warnings[0]
    assert '"server_count": "2"' in text
    assert server_address(nodes[0]) == "10.0.0.1"
    with pytest.raises(PlanError, match="192.168.1.1 is in both a:/h"):
        merged_rank_table(nodes[:1] + (Node("c", "10.0.0.3", (0,), (0,)),),
                          {**confs, "c": {0: "192.168.1.1"}}, "/h", dry_run=False)
    settings = SSHSettings(config_path=str(sshd.ssh_config), timeout=5)
    client = connect(resolve_target("127.0.0.2", settings), settings)
    backend = SSHBackend({"h": _host("h")}, {"h": client}, settings)
    try:
        (tmp_path / "hccn.conf").write_text("address_0=192.168.9.9\n")
        assert read_remote_hccn(backend, "h", str(tmp_path / "hccn.conf")) == {0: "192.168.9.9"}
        assert read_remote_hccn(backend, "h", str(tmp_path / "none.conf")) is None
    finally:
        backend.close()
