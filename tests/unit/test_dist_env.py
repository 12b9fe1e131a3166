"""The worker reads its place in the job from the environment, as msrun/HCCL scripts set it."""

import pytest

from wrn.dist import prepare_process_env, thread_budget, world_from_env


def test_standalone():
    info = world_from_env({})
    assert (info.role, info.rank, info.world_size, info.distributed) == ("standalone", 0, 1, False)


def test_dynamic_cluster_worker():
    env = {"MS_ROLE": "MS_WORKER", "MS_SCHED_HOST": "127.0.0.1", "MS_SCHED_PORT": "8118",
           "MS_WORKER_NUM": "4", "MS_NODE_ID": "2", "LOCAL_RANK": "2", "DEVICE_ID": "2"}
    info = world_from_env(env)
    assert (info.role, info.rank, info.world_size, info.local_rank) == ("worker", 2, 4, 2)
    assert info.distributed
    assert info.backend_hint == "cluster"


def test_msrun_style_worker_without_ids_still_distributed():
    info = world_from_env({"MS_ROLE": "MS_WORKER", "MS_WORKER_NUM": "2"})
    assert info.world_size == 2
    assert info.distributed


def test_scheduler_role():
    assert world_from_env({"MS_ROLE": "MS_SCHED", "MS_WORKER_NUM": "2"}).role == "scheduler"


def test_ascend_rank_table_env():
    env = {"RANK_TABLE_FILE": "/x/rank_table.json", "RANK_SIZE": "8", "RANK_ID": "5", "DEVICE_ID": "5"}
    info = world_from_env(env)
    assert (info.rank, info.world_size, info.device_id, info.backend_hint) == (5, 8, 5, "ascend")


@pytest.mark.parametrize("env, words", [({"MS_ROLE": "MS_PSERVER"}, "MS_ROLE"),
                                        ({"RANK_SIZE": "eight"}, "RANK_SIZE")])
def test_bad_env_is_clear(env, words):
    with pytest.raises(ValueError, match=words):
        world_from_env(env)


def test_prepare_env_respects_user_choice_and_threads(monkeypatch):
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "WRN_NUM_THREADS": "3", "GLOG_v": "1"}
    changed = prepare_process_env(env)
    assert env["ONEDNN_MAX_CPU_ISA"] == "AVX512_CORE"
    assert changed == {"OMP_NUM_THREADS": "3"}
    env = {"WRN_ONEDNN_ISA": "SSE41"}
    assert prepare_process_env(env)["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    env = {"WRN_ONEDNN_ISA": "default"}
    assert "ONEDNN_MAX_CPU_ISA" not in prepare_process_env(env)
    assert thread_budget({"WRN_NUM_THREADS": "2"}) == 2
    assert thread_budget({}) is None


def test_avx512_cpu_gets_avx2_cap(monkeypatch):
    import wrn.dist as dist

    monkeypatch.setattr(dist, "cpu_has_avx512", lambda: True)
    monkeypatch.setattr(dist.platform, "machine", lambda: "x86_64")
    assert prepare_process_env({"GLOG_v": "2"}) == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    monkeypatch.setattr(dist, "cpu_has_avx512", lambda: False)
    assert prepare_process_env({"GLOG_v": "2"}) == {}


def test_mindspore_warnings_silenced_unless_asked():
    assert prepare_process_env({})["GLOG_v"] == "3"
    assert "GLOG_v" not in prepare_process_env({"WRN_VERBOSE_MINDSPORE": "1"})


def test_bind_to_cores_pins_every_thread_including_running_ones():
    import os
    import threading

    from wrn.dist import bind_to_cores

    usable = sorted(os.sched_getaffinity(0))
    started, stop = threading.Event(), threading.Event()
    tids = []

    def idle():
        tids.append(threading.get_native_id())
        started.set()
        stop.wait(10)

    t = threading.Thread(target=idle)
    t.start()
    started.wait(5)
    try:
        assert bind_to_cores({"WRN_BIND_CPUS": str(usable[-1])}) == (usable[-1],)
        assert os.sched_getaffinity(0) == {usable[-1]}
        assert os.sched_getaffinity(tids[0]) == {usable[-1]}  # a thread started before
        assert bind_to_cores({}) is None
        assert bind_to_cores({"WRN_BIND_CPUS": "99999"}) is None  # no such core: left alone
        assert bind_to_cores({"WRN_BIND_CPUS": "x"}) is None
    finally:
        stop.set()
        t.join()
        for tid in os.listdir("/proc/self/task"):
            try:
                os.sched_setaffinity(int(tid), usable)
            except ProcessLookupError:  # a thread (of another test) that ended meanwhile
                pass
