"""HCCL rank tables: generation from hccn.conf / hccn_tool, merging, validation of existing
tables (hccl_tools- and merge_hccl-style), finding this host in a table, HCCL timeouts, and
the plan of a launch from a table. Pure functions and fixture files; nothing is started."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
import sys

import pytest

from cluster.errors import PlanError
from cluster.hccl_env import hccl_timeout_env
from cluster.plan import LaunchPlan, Node, PlanRequest, RankInfo, make_plan
from cluster.ranktable.build import default_merged_name, default_table_name, generate_table, merge_tables
from cluster.ranktable.check import (
    Problem,
    RankTableError,
    check_table,
    format_problems,
    load_table_json,
    read_table,
    table_from_data,
)
from cluster.ranktable.hccn import (
    gather_device_ips,
    parse_hccn_conf,
    parse_hccn_tool_output,
    query_hccn_tool,
    read_hccn_conf,
)
from cluster.ranktable.host import find_local_server, local_ips, primary_ip
from cluster.ranktable.table import RankTable, TableDevice, TableServer, build_rank_table, is_loopback
from tests.support import FIXTURES

HCCN_CONF = FIXTURES / "hccn.conf"
HCCL_TOOLS_8P = FIXTURES / "hccl_8p_01234567_10.155.111.140.json"
MERGE_HCCL_16P = FIXTURES / "hccl_2s_16p_merge_hccl.json"
#: device IPs of the hccn.conf fixture, by device id
CONF_IPS = {0: "192.98.92.100", 1: "192.98.93.100", 2: "192.98.94.100", 3: "192.98.95.100",
            4: "192.98.92.101", 5: "192.98.93.101", 6: "192.98.94.101", 7: "192.98.95.101"}


def table_data(servers=1, per_server=8, rank_type=str) -> dict:
    """A valid table dict: servers 10.0.0.1.., devices 0..per_server-1 with distinct IPs."""
    server_list = []
    for s in range(servers):
        server_list.append({"server_id": f"10.0.0.{s + 1}", "host_nic_ip": "reserve", "device": [
            {"device_id": str(d), "device_ip": f"192.168.{s}.{d + 10}",
             "rank_id": rank_type(s * per_server + d)} for d in range(per_server)]})
    return {"version": "1.0", "server_count": str(servers), "server_list": server_list,
            "status": "completed"}


def problems_of(data, **kw) -> list[Problem]:
    return check_table(data, **kw)[0]


# -- device IPs ----------------------------------------------------------------------------------
def test_hccn_conf_fixture_has_eight_devices():
    assert read_hccn_conf(HCCN_CONF) == CONF_IPS
    with pytest.raises(PlanError, match=r"x.conf line 1: '192.98.92' is not an IP"):
        parse_hccn_conf("address_0=192.98.92\n", "x.conf")


def test_parse_hccn_tool_output():
    real = (FIXTURES / "hccn_tool_ip_g.txt").read_text()  # hccn_tool -i 0 -ip -g
    assert parse_hccn_tool_output(real) == "192.98.92.100"
    assert parse_hccn_tool_output("ipaddr: 192.98.92.100\n") == "192.98.92.100"
    assert parse_hccn_tool_output("Get ip failed, device id 3\n") is None
    assert parse_hccn_tool_output("ipaddr:none\n") is None


@pytest.fixture
def fake_hccn_tool(tmp_path, monkeypatch):
    """An ``hccn_tool`` on PATH that answers like the real one for devices 0-7 except 3."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "hccn_tool"
    tool.write_text("#!/bin/sh\n"
                    "[ \"$2\" = 3 ] && { echo 'Get ip failed' >&2; exit 1; }\n"
                    "echo \"ipaddr:10.20.0.$2\"\necho 'netmask:255.255.255.0'\n")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tool


def test_query_hccn_tool(fake_hccn_tool):
    assert query_hccn_tool([0, 1, 3]) == {0: "10.20.0.0", 1: "10.20.0.1"}  # 3 failed: left out
    assert query_hccn_tool([0], tool="no-such-hccn-tool") is None


def test_gather_device_ips_sources(fake_hccn_tool, tmp_path, monkeypatch):
    ips, source = gather_device_ips([0, 1, 2], str(HCCN_CONF))  # explicit file: only that
    assert ips == {d: CONF_IPS[d] for d in (0, 1, 2)}
    assert source == str(HCCN_CONF)
    # default: hccn_tool first, /etc/hccn.conf for what it did not answer
    monkeypatch.setattr("cluster.ranktable.hccn.DEFAULT_HCCN_CONF", str(HCCN_CONF))
    ips, source = gather_device_ips([2, 3])
    assert ips == {2: "10.20.0.2", 3: CONF_IPS[3]}
    assert source == f"hccn_tool -i <n> -ip -g and {HCCN_CONF}"
    monkeypatch.setattr("cluster.ranktable.hccn.DEFAULT_HCCN_CONF", str(tmp_path / "none.conf"))
    with pytest.raises(PlanError, match=r"no IP address for device\(s\) 3 in hccn_tool .* or "
                                        r".*none.conf \(missing\).*--hccn-conf"):
        gather_device_ips([2, 3])
    with pytest.raises(PlanError, match=r"--hccn-conf .*nope.conf: no such file"):
        gather_device_ips([0], str(tmp_path / "nope.conf"))
    with pytest.raises(PlanError, match=r"no IP address for device\(s\) 8-9 in .*hccn.conf"):
        gather_device_ips([7, 8, 9], str(HCCN_CONF))


# -- generate ------------------------------------------------------------------------------------
def test_generate_from_hccn_conf_fixture_8_devices():
    ids = list(range(8))
    table = generate_table(ids, read_hccn_conf(HCCN_CONF), "10.155.111.140")
    data = table.to_dict()
    assert data == json.loads(HCCL_TOOLS_8P.read_text())  # exactly what hccl_tools.py writes
    assert all(isinstance(v, str) for s in data["server_list"] for d in s["device"] for v in d.values())
    assert json.loads(table.text()) == data
    assert table.world_size == 8
    assert default_table_name(ids, "10.155.111.140") == HCCL_TOOLS_8P.name
    assert default_table_name([4, 5, 6, 7], "10.0.0.1") == "hccl_4p_4567_10.0.0.1.json"
    assert table.describe() == "10.155.111.140: ranks 0-7 on device(s) 0-7"
    sub = generate_table([4, 5], CONF_IPS, "10.0.0.1").to_dict()["server_list"][0]["device"]
    assert sub == [{"device_id": "4", "device_ip": CONF_IPS[4], "rank_id": "0"},
                   {"device_id": "5", "device_ip": CONF_IPS[5], "rank_id": "1"}]


def test_generate_errors():
    with pytest.raises(PlanError, match="--server-ip 'host-a' is not an IP address"):
        generate_table([0], CONF_IPS, "host-a")
    with pytest.raises(PlanError, match=r"no device IP for device\(s\) 9"):
        generate_table([0, 9], CONF_IPS, "10.0.0.1")
    with pytest.raises(PlanError, match="names no device"):
        generate_table([], CONF_IPS, "10.0.0.1")


# -- merge -----------------------------------------------------------------------------------------
def server_table(server_ip: str, offset: int, source: str) -> RankTable:
    ips = {d: f"192.98.{92 + d % 4}.{100 + offset + d // 4}" for d in range(8)}
    return RankTable(generate_table(range(8), ips, server_ip).servers, source)


def test_merge_two_servers_16_ranks():
    a, b = server_table("10.0.0.1", 0, "a.json"), server_table("10.0.0.2", 10, "b.json")
    merged = merge_tables([a, b])
    data = merged.to_dict()
    assert data["server_count"] == "2"
    assert merged.world_size == 16
    assert [s["server_id"] for s in data["server_list"]] == ["10.0.0.1", "10.0.0.2"]
    assert [d["rank_id"] for s in data["server_list"] for d in s["device"]] == [str(r) for r in range(16)]
    assert [d["device_id"] for d in data["server_list"][1]["device"]] == [str(d) for d in range(8)]
    assert default_merged_name(merged) == "hccl_2s_16p.json"
    assert check_table(data) == ([], [])
    reverse = merge_tables([b, a])  # the stated order decides the ranks
    assert reverse.servers[0].server_id == "10.0.0.2"
    assert reverse.servers[0].ranks == tuple(range(8))


def test_merge_errors():
    a = server_table("10.0.0.1", 0, "a.json")
    with pytest.raises(PlanError, match="server 10.0.0.1 is in both a.json and a2.json"):
        merge_tables([a, server_table("10.0.0.1", 10, "a2.json")])
    with pytest.raises(PlanError, match=r"device IP 192.98.92.100 belongs to both device 0 of server "
                                        r"10.0.0.1 \(a.json\) and device 0 of server 10.0.0.2"):
        merge_tables([a, server_table("10.0.0.2", 0, "b.json")])
    with pytest.raises(PlanError, match="loop.json has server_id 127.0.0.1, a loopback address"):
        merge_tables([a, server_table("127.0.0.1", 10, "loop.json")])
    with pytest.raises(PlanError, match="at least one"):
        merge_tables([])
    assert merge_tables([server_table("127.0.0.1", 0, "one.json")]).world_size == 8  # alone: fine


def test_merge_renumbers_broken_inputs(tmp_path):
    data = table_data(1, 4)
    data["server_list"][0]["device"][2]["rank_id"] = "0"  # duplicate rank: merge renumbers
    path = tmp_path / "dup.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RankTableError):
        read_table(path)
    table = read_table(path, check_ranks=False)
    assert merge_tables([table]).servers[0].ranks == (0, 1, 2, 3)


# -- reading existing tables ------------------------------------------------------------------------
def test_accepts_hccl_tools_style():
    table = read_table(HCCL_TOOLS_8P)
    assert table.world_size == 8
    assert table.servers[0].server_id == "10.155.111.140"
    assert check_table(json.loads(HCCL_TOOLS_8P.read_text())) == ([], [])


def test_accepts_merge_hccl_style_integer_ranks():
    data = json.loads(MERGE_HCCL_16P.read_text())
    assert isinstance(data["server_list"][0]["device"][0]["rank_id"], int)
    problems, notes = check_table(data)
    assert problems == []
    assert any("rank_id values are numbers" in n for n in notes)
    table = read_table(MERGE_HCCL_16P)
    assert table.world_size == 16
    assert table.first_rank(1) == 8
    assert table.node_rank(1) == 1
    written = json.loads(table.text())
    assert written["server_list"][1]["device"][0] == {"device_id": "0", "device_ip": "192.98.92.110",
                                                      "rank_id": "8"}  # strings again
    assert check_table(written) == ([], [])


def mutate(path_fn, servers=1, per_server=8):
    data = table_data(servers, per_server)
    path_fn(data)
    return data


def _set(keys, value):
    def apply(data):
        target = data
        for k in keys[:-1]:
            target = target[k]
        if value is _DELETE:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value
    return apply


_DELETE = object()
SL = "server_list"


@pytest.mark.parametrize("change, servers, path, words", [
    # duplicate rank
    (_set([SL, 0, "device", 3, "rank_id"], "2"), 1, "server_list[0].device[3].rank_id",
     "rank 2 is used twice (also server_list[0].device[2].rank_id)"),
    # missing rank (one out of range)
    (_set([SL, 0, "device", 7, "rank_id"], "9"), 1, "server_list[0].device[7].rank_id",
     "rank 9 is out of range: 8 devices are listed"),
    (_set([SL, 0, "device", 7, "rank_id"], _DELETE), 1, "server_list[0].device[7].rank_id", "missing"),
    (_set([SL, 0, "device", 1, "rank_id"], "one"), 1, "server_list[0].device[1].rank_id",
     "\"one\" is not a rank number"),
    # duplicate device ids on a server
    (_set([SL, 1, "device", 5, "device_id"], "4"), 2, "server_list[1].device[5].device_id",
     "device 4 is listed twice on this server (also server_list[1].device[4].device_id)"),
    (_set([SL, 0, "device", 0, "device_id"], "-1"), 1, "server_list[0].device[0].device_id",
     "is not a device number"),
    # bad IPs
    (_set([SL, 1, "device", 3, "device_ip"], "192.168.1.300"), 2, "server_list[1].device[3].device_ip",
     "\"192.168.1.300\" is not a usable IP address"),
    (_set([SL, 0, "device", 3, "device_ip"], "192.168.0.10"), 1, "server_list[0].device[3].device_ip",
     "192.168.0.10 is used twice (also server_list[0].device[0].device_ip)"),
    (_set([SL, 0, "server_id"], "node-a"), 1, "server_list[0].server_id",
     "\"node-a\" is not an IP address"),
    (_set([SL, 1, "server_id"], "127.0.0.1"), 2, "server_list[1].server_id",
     "127.0.0.1 is a loopback address"),
    (_set([SL, 1, "server_id"], "10.0.0.1"), 2, "server_list[1].server_id",
     "10.0.0.1 is listed twice (also server_list[0].server_id)"),
    # wrong server_count, unknown version, status
    (_set(["server_count"], "2"), 1, "server_count", "says 2 but server_list has 1 server(s)"),
    (_set(["server_count"], "two"), 1, "server_count", "\"two\" is not a whole number"),
    (_set(["version"], "1.2"), 1, "version", "\"1.2\" is not a version this launcher knows"),
    (_set(["version"], _DELETE), 1, "version", "missing"),
    (_set(["status"], "initializing"), 1, "status", "is \"initializing\""),
    # structure
    (_set([SL], []), 1, "server_list", "empty"),
    (_set([SL, 0, "device"], {}), 1, "server_list[0].device", "a dict, not a list"),
    (_set([SL, 0, "device", 2], "0"), 1, "server_list[0].device[2]", "is str, not an object"),
])
def test_every_validation_error_has_its_json_path(change, servers, path, words):
    problems = problems_of(mutate(change, servers))
    hit = [p for p in problems if p.path == path and words in p.message]
    assert hit, problems
    assert hit[0].fix  # every problem says how to fix it


def test_non_contiguous_ranks_per_server():
    data = table_data(2, 4)  # interleave: server 0 gets 0,2,4,6 and server 1 gets 1,3,5,7
    for s in range(2):
        for d in range(4):
            data[SL][s]["device"][d]["rank_id"] = str(2 * d + s)
    problems = problems_of(data)
    assert [p.path for p in problems] == ["server_list[0].device[1].rank_id",
                                          "server_list[1].device[1].rank_id"]
    assert "server_list[0] holds ranks 0,2,4,6, not one contiguous block" in problems[0].message
    assert "merge" in problems[0].fix
    # contiguous blocks in any order (server 1 holds 0-3) are fine
    for s in range(2):
        for d in range(4):
            data[SL][s]["device"][d]["rank_id"] = str((1 - s) * 4 + 3 - d)
    assert problems_of(data) == []
    table = table_from_data(data, "t.json")
    assert table.first_rank(1) == 0
    assert table.node_rank(1) == 0
    assert table.node_rank(0) == 1
    assert table.servers[0].ranks == (4, 5, 6, 7)
    assert table.servers[0].device_ids == (3, 2, 1, 0)


def test_missing_rank_reported_once_on_server_list():
    data = table_data(1, 4)
    data[SL][0]["device"][3]["rank_id"] = "4"
    problems = problems_of(data)
    assert [str(p).split(":")[0] for p in problems] == ["server_list[0].device[3].rank_id", "server_list"]
    assert "rank(s) 3 are missing (ranks must be 0..3)" in problems[1].message


def test_all_problems_in_one_message(tmp_path):
    data = table_data(2, 2)
    data["version"] = "2.0"
    data["server_count"] = "3"
    data[SL][1]["device"][1]["device_ip"] = "x"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(RankTableError) as info:
        read_table(path)
    msg = str(info.value)
    assert msg.startswith(f"rank table {path} has 3 problems: (1) version: ")
    assert "(2) server_count: says 3" in msg
    assert "(3) server_list[1].device[1].device_ip: " in msg
    assert "\n" not in msg
    assert len(info.value.problems) == 3
    assert format_problems("t.json", info.value.problems[:1]).startswith("rank table t.json: version:")


def test_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0",\n "server_count": "1" "server_list": []}')
    with pytest.raises(RankTableError, match=r"is not valid JSON at line 2 column 22"):
        load_table_json(bad)
    with pytest.raises(RankTableError, match="no such file"):
        read_table(tmp_path / "none.json")
    with pytest.raises(RankTableError, match="the top level is list"):
        table_from_data([1, 2], "l.json")


def test_rank_table_objects_validate_themselves():
    dev = lambda d, r: TableDevice(d, f"192.168.0.{d + 10}", r)  # noqa: E731
    with pytest.raises(PlanError, match="exactly 0..1"):
        RankTable((TableServer("10.0.0.1", (dev(0, 0), dev(1, 2))),))
    with pytest.raises(PlanError, match="not one contiguous block"):
        RankTable((TableServer("10.0.0.1", (dev(0, 0), dev(1, 2))),
                   TableServer("10.0.0.2", (dev(0, 1), dev(1, 3)))))
    with pytest.raises(PlanError, match="loopback"):
        RankTable((TableServer("127.0.0.1", (dev(0, 0),)), TableServer("10.0.0.2", (dev(0, 1),))))
    with pytest.raises(PlanError, match="listed twice"):
        RankTable((TableServer("10.0.0.1", (dev(0, 0),)), TableServer("10.0.0.1", (dev(0, 1),))))
    table = RankTable((TableServer("10.0.0.2", (dev(0, 1),)), TableServer("10.0.0.1", (dev(0, 0),))))
    assert table.index_of("10.0.0.1") == 1
    assert table.index_of("10.9.9.9") is None
    assert table.describe().splitlines() == ["10.0.0.2: rank 1 on device(s) 0",
                                             "10.0.0.1: rank 0 on device(s) 0"]



def test_one_builder_writes_every_table():
    dev = lambda d, r: TableDevice(d, f"192.168.0.{d + 10}", r)  # noqa: E731
    servers = (TableServer("10.0.0.2", (dev(0, 1),)), TableServer("10.0.0.1", (dev(0, 0),)))
    assert RankTable(servers).to_dict() == build_rank_table(servers)  # servers in file order
    assert [s["server_id"] for s in build_rank_table(servers)["server_list"]] == ["10.0.0.2", "10.0.0.1"]
    local = (TableServer("127.0.0.1", (dev(0, 0),)), TableServer("127.0.0.2", (dev(1, 1),)))
    assert build_rank_table(local)["server_count"] == "2"  # every host this machine: allowed here
    with pytest.raises(PlanError, match="loopback"):
        RankTable(local)
    with pytest.raises(PlanError, match="not one contiguous block"):
        build_rank_table((TableServer("10.0.0.1", (dev(0, 1), dev(1, 0))),))

# -- this host in a table -----------------------------------------------------------------------------
def test_find_local_server():
    table = read_table(MERGE_HCCL_16P)
    assert find_local_server(table, server_ip="10.155.111.141") == 1
    with pytest.raises(PlanError, match=r"--server-ip 10.0.0.9: .* has no server .* 10.155.111.140, "
                                        r"10.155.111.141"):
        find_local_server(table, server_ip="10.0.0.9")
    assert find_local_server(table, host_ips=["127.0.0.1", "10.155.111.141"]) == 1
    with pytest.raises(PlanError, match="several servers.*--server-ip"):
        find_local_server(table, host_ips=["10.155.111.140", "10.155.111.141"])
    # no host IP matches: the device IPs of this host's hccn.conf decide
    theirs = {d["device_id"]: d["device_ip"] for d in table.to_dict()[SL][1]["device"]}
    assert find_local_server(table, host_ips=["192.0.2.2"], hccn_ips=theirs) == 1
    assert find_local_server(table, host_ips=["192.0.2.2"], hccn_ips=CONF_IPS) == 0
    with pytest.raises(PlanError, match=r"this host is none of its servers .* its addresses \(192.0.2.2\)"
                                        r".*matches /x/hccn.conf.*--server-ip"):
        find_local_server(table, host_ips=["192.0.2.2"], hccn_ips={}, hccn_source="/x/hccn.conf")
    lone = RankTable((TableServer("127.0.0.1", (TableDevice(0, "192.168.0.1", 0),)),))
    assert find_local_server(lone, host_ips=[]) == 0  # a one-server loopback table is this host


def test_local_ips_and_primary_ip():
    ips = local_ips()
    assert "127.0.0.1" in ips
    assert all(ipaddress.ip_address(ip) for ip in ips)
    assert ipaddress.ip_address(primary_ip())
    assert is_loopback("127.0.1.1")
    assert is_loopback("::1")
    assert not is_loopback("10.0.0.1")
    assert not is_loopback("host")


# -- HCCL timeouts --------------------------------------------------------------------------------------
def test_hccl_timeouts():
    assert hccl_timeout_env(env={}) == ({"HCCL_CONNECT_TIMEOUT": "120", "HCCL_EXEC_TIMEOUT": "1836"}, [])
    env, warnings = hccl_timeout_env(600, 3600, env={"HCCL_CONNECT_TIMEOUT": "900"})
    assert env == {"HCCL_CONNECT_TIMEOUT": "600", "HCCL_EXEC_TIMEOUT": "3600"}
    assert warnings == []
    assert hccl_timeout_env(env={"HCCL_CONNECT_TIMEOUT": "900"})[0]["HCCL_CONNECT_TIMEOUT"] == "900"
    with pytest.raises(PlanError, match="--hccl-connect-timeout 60: HCCL accepts 120-7200 seconds"):
        hccl_timeout_env(60, env={})
    with pytest.raises(PlanError, match="--hccl-connect-timeout 7201"):
        hccl_timeout_env(7201, env={})
    with pytest.raises(PlanError, match="environment variable HCCL_EXEC_TIMEOUT='soon' is not a whole"):
        hccl_timeout_env(env={"HCCL_EXEC_TIMEOUT": "soon"})
    with pytest.raises(PlanError, match="environment variable HCCL_CONNECT_TIMEOUT 30: HCCL accepts"):
        hccl_timeout_env(env={"HCCL_CONNECT_TIMEOUT": "30"})
    _, warnings = hccl_timeout_env(execute=0, env={})
    assert "Atlas A2" in warnings[0]
    assert "1-17340" in warnings[0]


# -- the plan of a launch from a table -------------------------------------------------------------------
RUN = "/runs/t1"


def table_request(backend, server, table=None, **kw):
    table = table or read_table(MERGE_HCCL_16P)
    s = table.servers[server]
    kw.setdefault("sched_port", None if kw.get("ascend_startup") == "ranktable" else 29500)
    ips = {"h": {d.device_id: d.device_ip for d in s.devices}} if backend == "ascend" else {}
    return PlanRequest(backend=backend, nodes=(Node("h", s.server_id, s.device_ids, (0, 1)),),
                       run_dir=RUN, cwd="/srv", worker_cmd=(sys.executable, "-m", "wrn.train"),
                       scheduler_cmd=(sys.executable, "-m", "wrn.scheduler"), device_ips=ips,
                       rank_table=table, table_server=server, **kw)


def test_ascend_plan_of_second_server():
    plan = make_plan(table_request("ascend", 1, ascend_startup="ranktable"))
    assert plan.world_size == 16
    assert [r.rank for r in plan.ranks] == list(range(8, 16))
    assert {r.node_rank for r in plan.ranks} == {1}
    assert [r.local_rank for r in plan.ranks] == list(range(8))
    for k, proc in enumerate(plan.processes):
        env = proc.env
        assert (env["RANK_ID"], env["DEVICE_ID"], env["RANK_SIZE"]) == (str(8 + k), str(k), "16")
        assert env["RANK_TABLE_FILE"] == f"{RUN}/rank_table.json"
        assert proc.name == f"rank{8 + k}"
    assert json.loads(plan.rank_table) == read_table(MERGE_HCCL_16P).to_dict()
    assert plan.to_dict()["world_size"] == 16


def test_ascend_dynamic_cluster_of_a_table_hands_hccl_the_table():
    first, second = make_plan(table_request("ascend", 0)), make_plan(table_request("ascend", 1))
    assert first.processes[0].role == "scheduler"  # with rank 0, as on CPU
    assert all(p.role == "worker" for p in second.processes)
    assert first.scheduler == second.scheduler == ("10.155.111.140", 29500)
    env = second.worker(9).env
    assert (env["MS_ROLE"], env["MS_WORKER_NUM"], env["MS_NODE_ID"], env["DEVICE_ID"]) == (
        "MS_WORKER", "16", "9", "1")
    assert env["RANK_TABLE_FILE"] == f"{RUN}/rank_table.json"
    assert json.loads(second.rank_table) == read_table(MERGE_HCCL_16P).to_dict()


def test_cpu_plan_of_a_table_scheduler_on_rank_0_server():
    first = make_plan(table_request("cpu", 0))
    assert first.processes[0].role == "scheduler"
    assert first.scheduler == ("10.155.111.140", 29500)
    second = make_plan(table_request("cpu", 1))
    assert all(p.role == "worker" for p in second.processes)  # the scheduler runs on server 0
    assert second.scheduler == ("10.155.111.140", 29500)
    env = second.worker(9).env
    assert (env["MS_WORKER_NUM"], env["MS_NODE_ID"], env["RANK_ID"], env["RANK_SIZE"]) == ("16", "9", "9", "16")
    assert "RANK_TABLE_FILE" in second.worker(9).unset
    assert json.loads(second.rank_table)["server_count"] == "2"  # kept as a record
    one = RankTable(generate_table(range(2), CONF_IPS, "127.0.0.1").servers)
    plan = make_plan(table_request("cpu", 0, one))
    assert plan.scheduler == ("127.0.0.1", 29500)
    assert plan.world_size == 2


def test_table_plan_validation():
    table = read_table(MERGE_HCCL_16P)
    s = table.servers[0]
    with pytest.raises(PlanError, match="no server 2"):
        PlanRequest(backend="cpu", nodes=(Node("h", s.server_id, s.device_ids, (0,)),), run_dir=RUN,
                    cwd="/srv", worker_cmd=("w",), sched_port=1234, rank_table=table, table_server=2)
    with pytest.raises(PlanError, match=r"differ from the rank table's \[0, 1, 2, 3, 4, 5, 6, 7\]"):
        PlanRequest(backend="cpu", nodes=(Node("h", s.server_id, (0, 1), (0,)),), run_dir=RUN, cwd="/srv",
                    worker_cmd=("w",), sched_port=1234, rank_table=table)
    with pytest.raises(PlanError, match="scheduler port"):
        table_request("cpu", 1, sched_port=None)
    plan = make_plan(table_request("cpu", 1))
    with pytest.raises(PlanError, match="do not fit a job of 12"):
        LaunchPlan("cpu", RUN, plan.ranks, plan.processes, total_ranks=12)
    with pytest.raises(PlanError, match="0..N-1"):
        LaunchPlan("cpu", RUN, (RankInfo(1, 0, 0, 0, "h"),), ())
