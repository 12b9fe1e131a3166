"""Hostfile / --hosts parsing, environment files and masking (cluster.hosts): pure, fast."""

from __future__ import annotations

import pytest

from cluster.errors import PlanError
from cluster.hosts import (
    HostSpec,
    forwarded_env,
    is_secret_name,
    mask_command,
    mask_env,
    parse_env_assignments,
    parse_env_file,
    parse_hostfile,
    parse_hosts_flag,
    read_hostfile,
)


def test_hostfile_full_syntax():
    hosts = parse_hostfile("# cluster\n\nnode1 slots=8\n"
                           "node2 slots=4 devices=4-7 user=alice port=2222 python=/opt/py "
                           "workdir=/srv/wrn   # trailing comment\nnode3 devices=3\n", "h.txt")
    assert [h.name for h in hosts] == ["node1", "node2", "node3"]
    assert hosts[0].slots == 8
    assert hosts[0].devices is None
    assert hosts[0].where == "h.txt:3"
    n2 = hosts[1]
    assert (n2.slots, n2.devices, n2.user, n2.port, n2.python, n2.workdir) == \
        (4, (4, 5, 6, 7), "alice", 2222, "/opt/py", "/srv/wrn")
    assert hosts[2].devices == (3,)  # devices=3 is device 3
    assert hosts[2].slots == 1
    assert hosts[0].device_request().count == 8
    assert n2.device_request().ids == (4, 5, 6, 7)


def test_host_without_slots_has_one():
    assert parse_hostfile("a\n")[0].slots == 1


@pytest.mark.parametrize("text, needle", [
    ("a slots=2\nb slots=1\na slots=1\n", "h.txt:3: duplicate host a (already on line 1)"),
    ("a slots=0\n", "h.txt:1: host a: bad slot count '0'"),
    ("a slots=x\n", "h.txt:1: host a: bad slot count 'x'"),
    ("a slots=-2\n", "bad slot count '-2'"),
    ("a slots=2 gpus=2\n", "h.txt:1: unknown key 'gpus'"),
    ("a slots\n", "h.txt:1: 'slots' is not key=value"),
    ("a slots=\n", "is not key=value"),
    ("a slots=1 slots=2\n", "slots= is given twice"),
    ("a slots=2 devices=0-3\n", "slots=2 but devices= names 4"),
    ("a devices=3-1\n", "h.txt:1: host a: devices=3-1"),
    ("a port=ssh\n", "port='ssh' is not a number"),
    ("a port=70000\n", "port=70000 is not a TCP port"),
    ("a/b slots=1\n", "is not a host name"),
    ("# nothing\n\n", "h.txt: no hosts"),
])
def test_hostfile_errors_name_file_and_line(text, needle):
    with pytest.raises(PlanError) as err:
        parse_hostfile(text, "h.txt")
    assert needle in str(err.value)


def test_read_hostfile(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("x slots=2\n")
    assert read_hostfile(str(path))[0].slots == 2
    with pytest.raises(PlanError, match="--hostfile .*missing: cannot read it"):
        read_hostfile(str(tmp_path / "missing"))


def test_hosts_flag():
    hosts = parse_hosts_flag("a:8,b:4,c")
    assert [(h.name, h.slots) for h in hosts] == [("a", 8), ("b", 4), ("c", 1)]
    for text, needle in [("a:8,a:2", "duplicate host a"), ("a:0", "bad slot count"),
                         ("a:x", "bad slot count"), (",", "names no host")]:
        with pytest.raises(PlanError, match=needle):
            parse_hosts_flag(text)


def test_hostspec_validates():
    with pytest.raises(PlanError, match="slots must be 1 or more"):
        HostSpec("a", 0)


def test_env_assignments_and_file():
    assert parse_env_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    for bad in ("NOEQUALS", "1A=2", "=v"):
        with pytest.raises(PlanError, match="expected NAME=VALUE"):
            parse_env_assignments([bad])
    env = parse_env_file("# c\nexport A=1\nB='two words'\n\nC=\"q\"\n", "e.env")
    assert env == {"A": "1", "B": "two words", "C": "q"}
    with pytest.raises(PlanError, match="e.env:2:"):
        parse_env_file("A=1\nnot an assignment\n", "e.env")


def test_masking():
    assert [is_secret_name(n) for n in ("API_KEY", "hf_token", "DB_PASSWORD", "MY_PASS",
                                        "AWS_SECRET_ACCESS_KEY", "GCP_CREDENTIALS", "PATH")] == \
        [True] * 6 + [False]
    assert mask_env({"API_KEY": "k", "LANG": "C"}) == {"API_KEY": "***", "LANG": "C"}
    assert mask_command(["wrn-launch", "--env", "TOKEN=abc", "--env=PASSWORD=x", "--env", "A=1",
                         "TOKEN=notenv"]) == \
        ["wrn-launch", "--env", "TOKEN=***", "--env=PASSWORD=***", "--env", "A=1", "TOKEN=notenv"]


def test_forwarded_env_is_an_allow_list():
    assert forwarded_env({"ONEDNN_MAX_CPU_ISA": "AVX2", "AWS_SECRET_ACCESS_KEY": "s", "LANG": "C"}) \
        == {"ONEDNN_MAX_CPU_ISA": "AVX2", "LANG": "C"}


def test_include_and_exclude_choose_hosts_and_devices():
    from cluster.hosts import select_hosts

    specs = parse_hosts_flag("a:2,b:2,c:4")
    assert select_hosts(specs) == specs
    picked = select_hosts(specs, include="a:1@c:0-1")
    assert [(s.name, s.slots, s.devices) for s in picked] == [("a", 1, (1,)), ("c", 2, (0, 1))]
    assert [s.name for s in select_hosts(specs, include="b")] == ["b"]
    left = select_hosts(specs, exclude="b@c:1,3")
    assert [(s.name, s.slots, s.devices) for s in left] == [("a", 2, None), ("c", 2, (0, 2))]


@pytest.mark.parametrize("include,exclude,needle", [
    ("x", None, "--include 'x': host\\(s\\) x are not in the host list \\(a, b\\)"),
    ("a:5", None, "host a has no device\\(s\\) 5"),
    ("a:", None, "'' is not a device id or range"),
    ("a@a", None, "host a is named twice"),
    (None, "a@b", "leaves no host to run on"),
    (None, "b:1-0", "'1-0' is not a device id or range"),
    ("", None, "--include is empty"),
])
def test_include_and_exclude_errors(include, exclude, needle):
    from cluster.hosts import select_hosts

    with pytest.raises(PlanError, match=needle):
        select_hosts(parse_hosts_flag("a:2,b:2"), include=include, exclude=exclude)
