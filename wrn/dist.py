"""The worker's view of the distributed world: read from the environment, set up MindSpore.

A worker learns everything about its place in the job from environment variables, exactly as
MindSpore's own launchers set them, so the same worker runs under ``wrn-launch``, under
``msrun`` and by hand:

* Dynamic cluster (every backend; what msrun starts): ``MS_ROLE`` (``MS_WORKER`` /
  ``MS_SCHED``), ``MS_SCHED_HOST``, ``MS_SCHED_PORT``, ``MS_WORKER_NUM`` and optionally
  ``MS_NODE_ID``; the rank is assigned by the scheduler and read back after ``init()``. On
  Ascend, HCCL also reads ``RANK_TABLE_FILE`` when it is set.
* Ascend rank-table startup (MindSpore before 2.4): ``RANK_TABLE_FILE``, ``RANK_SIZE``,
  ``RANK_ID``, ``DEVICE_ID``.
* Nothing of that: a standalone single process.

``WRN_NUM_THREADS`` (set by the launcher's thread budget) caps MindSpore's runtime threads and
the input pipeline, so N workers on C cores do not oversubscribe them.

The CPU fast path: on CPUs with AVX-512, oneDNN's default convolution path in MindSpore 2.10 was
measured ~70x slower than its AVX2 path (WRN-16-4 step 40.6 s -> 0.56 s, same losses).
``prepare_process_env()`` therefore caps oneDNN at AVX2 on such CPUs unless the user has set
``ONEDNN_MAX_CPU_ISA`` (or ``WRN_ONEDNN_ISA``) already. It must run before MindSpore is imported.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass

from wrn.contract import (
    BIND_CPUS_ENV,
    DEVICE_ID_ENV,
    LOCAL_RANK_ENV,
    MS_NODE_ID_ENV,
    MS_ROLE_ENV,
    MS_WORKER_NUM_ENV,
    NUM_THREADS_ENV,
    ONEDNN_ISA_ENV,
    RANK_ID_ENV,
    RANK_SIZE_ENV,
    RANK_TABLE_FILE_ENV,
    ROLE_SCHEDULER,
    ROLE_WORKER,
    VERBOSE_MINDSPORE_ENV,
)


@dataclass(frozen=True)
class WorldInfo:
    """Where this process stands: rank/world_size before ``init()`` are the environment's view."""

    role: str            # "worker", "scheduler" or "standalone"
    rank: int
    world_size: int
    local_rank: int
    device_id: int
    backend_hint: str    # "ascend" when a rank table is given, "cluster" for dynamic cluster, else ""

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.backend_hint == "cluster"


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} must be an integer") from None


def world_from_env(env: Mapping[str, str] | None = None) -> WorldInfo:
    """Read the distributed setup from ``env`` (default ``os.environ``) without touching MindSpore."""
    env = os.environ if env is None else env
    role_raw = env.get(MS_ROLE_ENV, "")
    if role_raw == ROLE_SCHEDULER:
        return WorldInfo("scheduler", -1, _int_env(env, MS_WORKER_NUM_ENV, 1), 0, 0, "cluster")
    if role_raw == ROLE_WORKER:
        world = _int_env(env, MS_WORKER_NUM_ENV, _int_env(env, RANK_SIZE_ENV, 1))
        node_id = env.get(MS_NODE_ID_ENV, "")
        rank = _int_env(env, RANK_ID_ENV, int(node_id) if node_id.isdigit() else 0)
        return WorldInfo("worker", rank, world, _int_env(env, LOCAL_RANK_ENV, 0),
                         _int_env(env, DEVICE_ID_ENV, 0), "cluster")
    if role_raw:
        raise ValueError(f"MS_ROLE={role_raw!r} is not a role this worker knows; use MS_WORKER or MS_SCHED")
    world = _int_env(env, RANK_SIZE_ENV, 1)
    rank = _int_env(env, RANK_ID_ENV, 0)
    hint = "ascend" if env.get(RANK_TABLE_FILE_ENV) else ""
    role = "worker" if world > 1 else "standalone"
    return WorldInfo(role, rank, world, _int_env(env, LOCAL_RANK_ENV, 0), _int_env(env, DEVICE_ID_ENV, 0),
                     hint)


def cpu_has_avx512() -> bool:
    """True when /proc/cpuinfo lists AVX-512F (the oneDNN slow-path trigger)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return False


def prepare_process_env(env: os._Environ | dict | None = None) -> dict[str, str]:
    """Set process-wide variables that must exist before MindSpore loads; return what was set.

    * ``ONEDNN_MAX_CPU_ISA=AVX2`` on AVX-512 x86 CPUs (see module doc), unless already set;
      ``WRN_ONEDNN_ISA`` overrides the value (``WRN_ONEDNN_ISA=default`` leaves oneDNN alone).
    * ``OMP_NUM_THREADS`` from ``WRN_NUM_THREADS`` when only the latter is set.
    * ``GLOG_v=3`` (MindSpore errors only: distributed workers otherwise print ~18 WARNING
      lines each) unless ``GLOG_v`` is set or ``WRN_VERBOSE_MINDSPORE=1`` asks for them.
    """
    env = os.environ if env is None else env
    changed: dict[str, str] = {}
    wanted = env.get(ONEDNN_ISA_ENV, "")
    if "ONEDNN_MAX_CPU_ISA" not in env:
        if wanted and wanted.lower() != "default":
            changed["ONEDNN_MAX_CPU_ISA"] = wanted
        elif not wanted and platform.machine() in ("x86_64", "AMD64") and cpu_has_avx512():
            changed["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    threads = env.get(NUM_THREADS_ENV, "")
    if threads.isdigit() and int(threads) > 0 and "OMP_NUM_THREADS" not in env:
        changed["OMP_NUM_THREADS"] = threads
    if "GLOG_v" not in env and env.get(VERBOSE_MINDSPORE_ENV, "") not in ("1", "true", "yes"):
        changed["GLOG_v"] = "3"
    env.update(changed)
    return changed


def thread_budget(env: Mapping[str, str] | None = None) -> int | None:
    """Threads this worker may use (``WRN_NUM_THREADS``), or None when unconstrained."""
    env = os.environ if env is None else env
    raw = env.get(NUM_THREADS_ENV, "")
    return int(raw) if raw.isdigit() and int(raw) > 0 else None


def bind_to_cores(env: Mapping[str, str] | None = None) -> tuple[int, ...] | None:
    """Pin every thread of this process to the cores in ``WRN_BIND_CPUS``; return them.

    Called after MindSpore has joined the cluster rather than by the launcher at exec time:
    MindSpore's ``init()`` took 46-48 s on a single core against 3-5 s unbound (its threads
    spin while they wait), while training itself runs faster bound. Threads started later
    inherit the binding from the thread that starts them. Returns None when unset or when no
    listed core is usable (the binding is then left as it was).
    """
    env = os.environ if env is None else env
    raw = env.get(BIND_CPUS_ENV, "").strip()
    if not raw:
        return None
    try:
        wanted = {int(x) for x in raw.split(",") if x.strip()}
        cpus = wanted & os.sched_getaffinity(0) if wanted else set()
    except (ValueError, AttributeError, OSError):
        return None
    if not cpus:
        return None
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that has just ended
            pass
    return tuple(sorted(cpus))


def resolve_device_target(requested: str) -> str:
    """Map the config's ``device_target`` (auto|Ascend|GPU|CPU) to what MindSpore will use.

    ``auto`` picks Ascend when /dev/davinci* exists, GPU when /dev/nvidia0 exists and the
    installed MindSpore can use it (``mindspore_can_use_gpu``), else CPU.
    """
    if requested != "auto":
        return requested
    if any(name.startswith("davinci") and name[7:].isdigit() for name in _dev_entries()):
        return "Ascend"
    if "nvidia0" in _dev_entries() and mindspore_can_use_gpu():
        return "GPU"
    return "CPU"


def mindspore_can_use_gpu() -> bool:
    """True when this process's MindSpore loaded its GPU plugin (the pinned 2.10 does not:
    its releases after 2.3 support CPU and Ascend only). Imports MindSpore."""
    from mindspore import device_context

    return bool(device_context.gpu.is_available())


def _dev_entries() -> list[str]:
    try:
        return os.listdir("/dev")
    except OSError:
        return []


def setup_mindspore(device_target: str, mode: str, seed: int, info: WorldInfo) -> WorldInfo:
    """Configure MindSpore for this process and join the cluster when distributed.

    Returns the WorldInfo with the rank and world size that MindSpore actually assigned.
    The scheduler role never gets here (see ``wrn.scheduler``).
    """
    import mindspore as ms

    if device_target == "CPU":
        ms.set_device("CPU")
    else:
        ms.set_device(device_target, info.device_id)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    threads = thread_budget()
    if threads:
        ms.set_context(runtime_num_threads=max(1, threads))
    if info.distributed:
        from mindspore.communication import get_group_size, get_rank, init

        init()
        rank, world = get_rank(), get_group_size()
        ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL,
                                     gradients_mean=True, device_num=world)
        info = WorldInfo(info.role, rank, world, info.local_rank, info.device_id, info.backend_hint)
    ms.set_seed(seed)
    bind_to_cores()
    return info

