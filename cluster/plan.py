"""The launch plan: which processes run where, with which ranks, environment and argv.

Everything here is a pure function of a ``PlanRequest`` (hosts, device ids, cores, command
lines, options) to a ``LaunchPlan`` (ranks, one ``ProcessSpec`` per process, rank table);
both are frozen dataclasses that validate themselves, so a plan that exists is consistent.
The launcher writes the plan into the run directory and hands each host its processes; a
``--dry-run`` prints it and stops.

Rules (each has a test):

* Ranks are numbered 0..N-1 host by host in the order the hosts are given, so every host's
  ranks are contiguous (HCCL refuses interleaved servers); ``local_rank`` counts within a host.
* Every backend uses MindSpore's dynamic cluster by default: one scheduler
  (``MS_ROLE=MS_SCHED``) on the first host plus one ``MS_WORKER`` per device, all pointed at
  ``MS_SCHED_HOST:MS_SCHED_PORT`` (what msrun does). A single worker runs standalone (no
  scheduler, no cluster variables, no ``init()``). On Ascend the HCCL rank table is also
  written and handed over as ``RANK_TABLE_FILE`` when the launch gives one (``--rank-table``)
  or asks for one (``hccl_rank_table``, msrun's ``--rank_table_file``).
  ``ascend_startup="ranktable"`` is the older rank-table startup (MindSpore before 2.4, the
  ModelZoo scripts): ``RANK_TABLE_FILE`` for every worker and no scheduler.
* Thread budget: N workers on a host with C usable cores get ``max(1, C // N)`` threads each
  (``OMP_NUM_THREADS`` and ``WRN_NUM_THREADS``), unless overridden; ``bind_cores`` gives each
  worker its own disjoint set of cores. By default (``bind_cores=None``) CPU workers are bound
  when a host runs several of them and their threads fit its cores: MindSpore's CPU runtime
  keeps every core busy whatever its thread setting, so unbound workers compete for all cores
  (measured: 2 workers on 2 cores, 279 images/s bound vs 272 unbound, medians of 5, and a
  narrower spread; see BENCHMARKS.md). Ascend workers whose devices' NUMA CPUs are known
  (``device_cpus``) are bound to an even share of those (msrun's ``--bind_core``), with no
  more threads than that share has cores (unless ``threads_per_worker`` says), unless
  ``bind_cores`` is False.
"""

from __future__ import annotations

import os
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster.devices import ASCEND_STARTUPS, BACKENDS, backend_label, format_ids
from cluster.errors import PlanError
from cluster.numa import numa_core_sets
from cluster.ranktable.table import RankTable, TableDevice, TableServer, build_rank_table, rank_table_text
from wrn.contract import (
    BIND_CPUS_ENV,
    DEVICE_ID_ENV,
    LOCAL_RANK_ENV,
    MS_NODE_ID_ENV,
    MS_ROLE_ENV,
    MS_SCHED_HOST_ENV,
    MS_SCHED_PORT_ENV,
    MS_WORKER_NUM_ENV,
    NUM_THREADS_ENV,
    RANK_ID_ENV,
    RANK_SIZE_ENV,
    RANK_TABLE_FILE_ENV,
    ROLE_SCHEDULER,
    ROLE_WORKER,
    RUN_DIR_ENV,
)

#: Variables that would confuse a worker of the *other* launch style if inherited from the
#: caller's shell (e.g. a leftover MS_ROLE from an msrun session): removed from its environment.
DYNAMIC_CLUSTER_VARS = (MS_ROLE_ENV, MS_SCHED_HOST_ENV, MS_SCHED_PORT_ENV, MS_WORKER_NUM_ENV,
                        MS_NODE_ID_ENV)
RANK_TABLE_VARS = (RANK_TABLE_FILE_ENV, "MINDSPORE_HCCL_CONFIG_PATH")


CONFIG_NAME = "config.yaml"
RANK_TABLE_NAME = "rank_table.json"
LOG_DIR = "logs"
SCHEDULER_NAME = "scheduler"


@dataclass(frozen=True)
class Node:
    """One host of a launch: its name, the address others reach it at, devices and cores, and
    how processes run there: ``python`` (its interpreter; None: the launcher's), ``pythonpath``
    (the project's folder there, exported as PYTHONPATH; None: the launch's own) and
    ``run_dir`` (the run directory's path there; None: the same path as the launcher's)."""

    host: str
    address: str
    device_ids: tuple[int, ...]
    cpus: tuple[int, ...]
    python: str | None = None
    pythonpath: str | None = None
    run_dir: str | None = None

    def __post_init__(self) -> None:
        if not self.host or "/" in self.host or self.host.startswith("."):
            raise PlanError(f"host name {self.host!r} is not usable in a log file name")
        if not self.device_ids:
            raise PlanError(f"host {self.host}: no devices to run on")
        if len(set(self.device_ids)) != len(self.device_ids):
            raise PlanError(f"host {self.host}: device ids repeat: {list(self.device_ids)}")
        if not self.cpus:
            raise PlanError(f"host {self.host}: no usable CPU cores")


@dataclass(frozen=True)
class RankInfo:
    """One training process: global rank, rank on its host, host index, device, host name."""

    rank: int
    local_rank: int
    node_rank: int
    device_id: int
    host: str

    def __post_init__(self) -> None:
        for name in ("rank", "local_rank", "node_rank", "device_id"):
            if getattr(self, name) < 0:
                raise PlanError(f"rank {self.rank}: {name} must be >= 0")


@dataclass(frozen=True)
class ProcessSpec:
    """One process to start: what a node agent needs, and nothing about how it got there.

    ``env`` holds only the variables the launch sets (added to the host's environment);
    ``unset`` names variables removed from it; ``log`` is relative to the run directory;
    ``cpus`` (or None) is the core set the process is pinned to.
    """

    name: str
    role: str
    host: str
    rank: int | None
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    log: str
    cpus: tuple[int, ...] | None = None
    unset: tuple[str, ...] = ()
    threads: int = 1

    def __post_init__(self) -> None:
        if self.role not in ("worker", "scheduler"):
            raise PlanError(f"process {self.name}: unknown role {self.role!r}")
        if (self.rank is None) != (self.role == "scheduler"):
            raise PlanError(f"process {self.name}: workers have a rank, the scheduler has none")
        if not self.argv:
            raise PlanError(f"process {self.name}: empty command line")
        bad = [k for k, v in self.env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise PlanError(f"process {self.name}: environment values must be strings: {bad}")
        object.__setattr__(self, "argv", tuple(self.argv))
        object.__setattr__(self, "env", types.MappingProxyType(dict(self.env)))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also the node agent's per-process spec)."""
        return {"name": self.name, "role": self.role, "host": self.host, "rank": self.rank,
                "argv": list(self.argv), "env": dict(self.env), "unset": list(self.unset),
                "cwd": self.cwd, "log": self.log,
                "cpus": list(self.cpus) if self.cpus is not None else None,
                "threads": self.threads}


@dataclass(frozen=True)
class PlanRequest:
    """Everything a plan is computed from. Validated on construction.

    ``worker_cmd`` is the worker command without its arguments (the plan appends
    ``--config <run_dir>/config.yaml --output-dir <run_dir>``); ``scheduler_cmd`` None starts
    no scheduler even on CPU/GPU. ``device_ips`` maps host -> device id -> RoCE IP (Ascend).
    ``extra_env`` is added to every process (e.g. PYTHONPATH). ``worker_args`` are appended
    to every worker's argv (e.g. ``--resume-from DIR``).

    ``python`` is the launcher's interpreter: a command whose first word it is runs with each
    node's own ``python``. ``resume`` adds ``--resume-from <run dir there>/checkpoints`` to every
    worker (a restart, or ``--resume``). ``secret_names`` are variables whose values are shown
    masked wherever the plan is shown or stored (the names from ``--env-file``).

    ``rank_table`` (``--rank-table``): the launch runs this host's share of that table: the
    single node is server ``table_server`` of the table, its ranks and device ids are the
    table's, and RANK_SIZE / MS_WORKER_NUM are the table's total. With a dynamic cluster the
    scheduler runs on the server holding rank 0 (its ``server_id``, or this host's address for
    a one-server table) and is started only by that server's launch.

    ``ascend_startup`` (``ASCEND_STARTUPS``) says how Ascend workers meet; ``hccl_rank_table``
    asks a dynamic-cluster Ascend launch to generate the rank table from ``device_ips`` and hand
    it to HCCL too. ``device_cpus`` maps host -> device id -> the CPUs near that device (its
    NUMA node's); Ascend workers are bound to a share of them (see ``numa_core_sets``).
    """

    backend: str
    nodes: tuple[Node, ...]
    run_dir: str
    cwd: str
    worker_cmd: tuple[str, ...]
    scheduler_cmd: tuple[str, ...] | None = None
    sched_port: int | None = None
    threads_per_worker: int | None = None
    bind_cores: bool | None = None  # None: automatic (see the module doc)
    verbose_mindspore: bool = False
    device_ips: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    worker_args: tuple[str, ...] = ()
    rank_table: RankTable | None = None
    table_server: int = 0
    python: str | None = None
    resume: bool = False
    secret_names: frozenset[str] = frozenset()
    ascend_startup: str = "dynamic"
    hccl_rank_table: bool = False
    device_cpus: Mapping[str, Mapping[int, tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "worker_args", tuple(self.worker_args))
        if self.ascend_startup not in ASCEND_STARTUPS:
            raise PlanError(f"--ascend-startup {self.ascend_startup!r}: use one of "
                            f"{', '.join(ASCEND_STARTUPS)}")
        if self.rank_table is not None:
            servers = self.rank_table.servers
            if not 0 <= self.table_server < len(servers):
                raise PlanError(f"rank table: no server {self.table_server} (it has {len(servers)})")
            if len(self.nodes) != 1:
                raise PlanError("a launch from a rank table runs one host's share of it; give "
                                "exactly one node")
            want = servers[self.table_server].device_ids
            if tuple(self.nodes[0].device_ids) != want:
                raise PlanError(f"host {self.nodes[0].host}: devices {list(self.nodes[0].device_ids)} "
                                f"differ from the rank table's {list(want)} for server "
                                f"{servers[self.table_server].server_id}")
        if self.backend not in BACKENDS:
            raise PlanError(f"unknown backend {self.backend!r}; use one of {', '.join(BACKENDS)}")
        if not self.nodes:
            raise PlanError("a launch needs at least one host")
        hosts = [n.host for n in self.nodes]
        if len(set(hosts)) != len(hosts):
            raise PlanError(f"a host is listed twice: {hosts}")
        if not os.path.isabs(self.run_dir) or not os.path.isabs(self.cwd):
            raise PlanError("run_dir and cwd must be absolute paths")
        if not self.worker_cmd:
            raise PlanError("the worker command is empty")
        if self.threads_per_worker is not None and self.threads_per_worker < 1:
            raise PlanError(f"--threads-per-worker must be 1 or more, got {self.threads_per_worker}")
        if self.sched_port is not None and not 0 < self.sched_port < 65536:
            raise PlanError(f"scheduler port {self.sched_port} is not a TCP port (1-65535)")
        if self.uses_scheduler and self.sched_port is None:
            raise PlanError(f"{backend_label(self.backend)} with several workers needs a scheduler port")
        if self.hands_rank_table:
            for node in self.nodes:
                ips = self.device_ips.get(node.host, {})
                missing = [d for d in node.device_ids if d not in ips]
                if missing:
                    raise PlanError(f"host {node.host}: no device IP for Ascend device(s) "
                                    f"{format_ids(missing)} (needed for the rank table)")

    @property
    def world_size(self) -> int:
        """Ranks in the whole job: the rank table's total, else every node's devices."""
        if self.rank_table is not None:
            return self.rank_table.world_size
        return sum(len(n.device_ids) for n in self.nodes)

    @property
    def uses_scheduler(self) -> bool:
        """True for a dynamic cluster: more than one worker, unless Ascend starts from a rank
        table alone."""
        return self.world_size > 1 and not self.rank_table_startup

    @property
    def rank_table_startup(self) -> bool:
        """True for the older Ascend startup: HCCL rank table, no scheduler."""
        return self.backend == "ascend" and self.ascend_startup == "ranktable"

    @property
    def hands_rank_table(self) -> bool:
        """True when Ascend workers get RANK_TABLE_FILE: the rank-table startup, a given
        ``--rank-table``, or a dynamic cluster that asked for one."""
        return self.backend == "ascend" and (self.rank_table_startup or self.hccl_rank_table
                                             or self.rank_table is not None)

    @property
    def startup(self) -> str:
        """How the workers meet, in words (the plan view's ``startup:`` line)."""
        if self.rank_table_startup:
            return "HCCL rank table (RANK_TABLE_FILE, no scheduler)"
        if not self.uses_scheduler:
            return "standalone (one worker, no cluster)"
        extra = " + HCCL rank table (RANK_TABLE_FILE)" if self.hands_rank_table else ""
        return f"dynamic cluster (scheduler + MS_WORKER per device){extra}"


@dataclass(frozen=True)
class LaunchPlan:
    """The result: ranks, processes (scheduler first), the rank table text, and warnings.

    ``total_ranks`` is set when the plan runs only part of a bigger job (this host's share of
    a rank table): its ranks are then one contiguous block inside 0..total_ranks-1.
    """

    backend: str
    run_dir: str
    ranks: tuple[RankInfo, ...]
    processes: tuple[ProcessSpec, ...]
    scheduler: tuple[str, int] | None = None
    rank_table: str | None = None
    warnings: tuple[str, ...] = ()
    total_ranks: int | None = None
    secret_names: frozenset[str] = frozenset()
    startup: str = ""

    def __post_init__(self) -> None:
        first = self.ranks[0].rank if self.ranks and self.total_ranks is not None else 0
        numbers = [r.rank for r in self.ranks]
        if numbers != list(range(first, first + len(numbers))):
            raise PlanError("ranks must be numbered 0..N-1 in order")
        if self.total_ranks is not None and first + len(numbers) > self.total_ranks:
            raise PlanError(f"ranks {first}..{first + len(numbers) - 1} do not fit a job of "
                            f"{self.total_ranks}")
        names = [p.name for p in self.processes]
        if len(set(names)) != len(names):
            raise PlanError(f"process names repeat: {names}")
        workers = [p.rank for p in self.processes if p.role == "worker"]
        if sorted(workers) != numbers:
            raise PlanError("every rank needs exactly one worker process")

    @property
    def world_size(self) -> int:
        """Number of training processes in the whole job (here and on other hosts)."""
        return self.total_ranks if self.total_ranks is not None else len(self.ranks)

    @property
    def hosts(self) -> tuple[str, ...]:
        """Hosts in node order."""
        return tuple(dict.fromkeys(r.host for r in self.ranks))

    def processes_on(self, host: str) -> tuple[ProcessSpec, ...]:
        """The processes the agent of ``host`` starts."""
        return tuple(p for p in self.processes if p.host == host)

    def worker(self, rank: int) -> ProcessSpec:
        """The worker process of ``rank``."""
        return next(p for p in self.processes if p.rank == rank)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in run.json."""
        return {
            "backend": self.backend,
            "device_target": backend_label(self.backend),
            "world_size": self.world_size,
            "hosts": list(self.hosts),
            "run_dir": self.run_dir,
            "scheduler": ({"host": self.scheduler[0], "port": self.scheduler[1]}
                          if self.scheduler else None),
            "ranks": [vars(r).copy() for r in self.ranks],
            "processes": [p.to_dict() for p in self.processes],
            "warnings": list(self.warnings),
            "secret_names": sorted(self.secret_names),
            "startup": self.startup,
        }


def assign_ranks(nodes: Sequence[Node], first_rank: int = 0,
                 first_node: int = 0) -> tuple[RankInfo, ...]:
    """Number ranks host by host (contiguous per host), devices in the order given, starting
    at ``first_rank`` on node ``first_node`` (both 0 unless planning a share of a rank table)."""
    ranks: list[RankInfo] = []
    for node_rank, node in enumerate(nodes, first_node):
        for local_rank, device in enumerate(node.device_ids):
            ranks.append(RankInfo(first_rank + len(ranks), local_rank, node_rank, device, node.host))
    return tuple(ranks)


def thread_budget(cores: int, workers: int, override: int | None = None) -> int:
    """Threads per worker: ``override`` if given, else ``max(1, cores // workers)``."""
    if cores < 1 or workers < 1:
        raise PlanError(f"thread budget needs cores >= 1 and workers >= 1 (got {cores}, {workers})")
    return override if override is not None else max(1, cores // workers)


def core_sets(cpus: Sequence[int], workers: int, threads: int) -> list[tuple[int, ...]]:
    """Cores for each worker with ``--bind-cores``: consecutive disjoint blocks of ``threads``.

    When there are fewer cores than ``workers * threads`` the blocks wrap around, so cores are
    shared as evenly as possible (the plan warns about that case).
    """
    cpus = list(cpus)
    out = []
    for i in range(workers):
        block = [cpus[(i * threads + j) % len(cpus)] for j in range(min(threads, len(cpus)))]
        out.append(tuple(sorted(set(block))))
    return out


def _oversubscription(node: Node, threads: int, backend: str, overridden: bool) -> list[str]:
    workers, cores = len(node.device_ids), len(node.cpus)
    if workers > cores and backend == "cpu":
        return [f"{node.host}: {workers} CPU workers on {cores} core(s): each worker gets 1 thread "
                f"and they share cores, which is slower than {cores} worker(s)"]
    if overridden and workers * threads > cores:
        return [f"{node.host}: {workers} workers x {threads} threads (--threads-per-worker) = "
                f"{workers * threads} threads on {cores} core(s): oversubscribed"]
    return []


#: A worker of MindSpore's dynamic cluster that registered early only learns from a heartbeat
#: that every worker has joined; with the default intervals that came 3-4 s after the last one
#: joined (2 CPU workers, MindSpore 2.10). 1 s bounds that wait.
CLUSTER_RETRY_ENV = {"MS_RETRY_INTERVAL_LOWER": "1", "MS_RETRY_INTERVAL_UPPER": "1"}


def fast_start_env(req: PlanRequest) -> dict[str, str]:
    """What makes a worker (and the scheduler) start sooner, under the user's own variables:
    the cluster's shorter waits.

    Not MindSpore's compile cache (``MS_COMPILER_CACHE_ENABLE``): in 2.10 it files a process's
    graphs by the order they were compiled in (``compile_cache_<n>.mindir``), so an attempt
    that compiles them in another order (a resume mid-epoch, a restart) loads the wrong graph."""
    return dict(CLUSTER_RETRY_ENV) if req.uses_scheduler else {}


class _NodeView:
    """How one node's processes are spelled: its run directory, interpreter and PYTHONPATH."""

    def __init__(self, req: PlanRequest, node: Node) -> None:
        self.node = node
        self.run_dir = node.run_dir or req.run_dir
        self._req = req

    def command(self, cmd: tuple[str, ...]) -> tuple[str, ...]:
        """``cmd`` with the launcher's interpreter replaced by this node's."""
        if self.node.python and self._req.python and cmd and cmd[0] == self._req.python:
            return (self.node.python,) + tuple(cmd[1:])
        return tuple(cmd)

    def worker_argv(self) -> tuple[str, ...]:
        argv = self.command(self._req.worker_cmd) + (
            "--config", os.path.join(self.run_dir, CONFIG_NAME), "--output-dir", self.run_dir)
        if self._req.resume:
            argv += ("--resume-from", os.path.join(self.run_dir, "checkpoints"))
        return argv + self._req.worker_args

    def env(self, req: PlanRequest) -> dict[str, str]:
        """The variables every process of this node gets."""
        env = {**fast_start_env(req), **req.extra_env}
        if self.node.pythonpath:
            env["PYTHONPATH"] = self.node.pythonpath
        env.update({"PYTHONUNBUFFERED": "1", RUN_DIR_ENV: self.run_dir})
        if not req.verbose_mindspore:
            env["GLOG_v"] = "3"
        return env


def _rank_table_text(req: PlanRequest, ranks: Sequence[RankInfo]) -> str:
    """The HCCL rank table the Ascend workers read: the given one, else one generated from
    every node's device IPs (its server ids are the nodes' addresses)."""
    if req.rank_table is not None:
        return req.rank_table.text()
    servers = [TableServer(node.address, tuple(
        TableDevice(r.device_id, req.device_ips[node.host][r.device_id], r.rank)
        for r in ranks if r.host == node.host)) for node in req.nodes]
    return rank_table_text(build_rank_table(servers))


def _cluster_setup(req: PlanRequest, ranks: Sequence[RankInfo], views: Mapping[str, _NodeView]):
    """How the workers meet: (variables every worker gets, variables removed, the scheduler's
    (host, port) or None, the scheduler's process or None, the rank table's text or None)."""
    table = req.rank_table
    text = _rank_table_text(req, ranks) if req.hands_rank_table else None
    # RANK_TABLE_FILE itself is set per node (its run directory there)
    keep_table = ("MINDSPORE_HCCL_CONFIG_PATH",) if text is not None else RANK_TABLE_VARS
    if not req.uses_scheduler:  # the rank-table startup, or a single worker
        return {}, DYNAMIC_CLUSTER_VARS + keep_table, None, None, text
    sched_host, sched_here = req.nodes[0].address, True
    if table is not None and len(table.servers) > 1:
        # the scheduler lives with rank 0; only that server's launch starts it
        holder = min(range(len(table.servers)), key=table.first_rank)
        sched_host, sched_here = table.servers[holder].server_id, holder == req.table_server
    scheduler = (sched_host, int(req.sched_port))
    launch_env = {MS_SCHED_HOST_ENV: scheduler[0], MS_SCHED_PORT_ENV: str(scheduler[1]),
                  MS_WORKER_NUM_ENV: str(req.world_size)}
    process = None
    if req.scheduler_cmd is not None and sched_here:
        first = views[req.nodes[0].host]
        process = ProcessSpec(
            name=SCHEDULER_NAME, role="scheduler", host=req.nodes[0].host, rank=None,
            argv=first.command(tuple(req.scheduler_cmd)), cwd=req.cwd,
            log=f"{LOG_DIR}/scheduler.log",
            env={**first.env(req), **launch_env, MS_ROLE_ENV: ROLE_SCHEDULER, "OMP_NUM_THREADS": "1",
                 NUM_THREADS_ENV: "1"},
            unset=RANK_TABLE_VARS)
    return launch_env, keep_table, scheduler, process, text


def _worker_cores(req: PlanRequest, node: Node, devices: Sequence[int],
                  threads: int) -> list[tuple[int, ...] | None]:
    """Each worker's cores on ``node`` (None: unbound). Ascend workers with a known topology
    get a share of their device's NUMA CPUs unless ``bind_cores`` is False; otherwise
    ``bind_cores`` (None: automatic, see the module doc) gives consecutive blocks."""
    near = req.device_cpus.get(node.host) if req.backend == "ascend" else None
    if near and req.bind_cores is not False:
        return numa_core_sets(devices, near, node.cpus)
    bind = req.bind_cores
    if bind is None:
        bind = req.backend == "cpu" and 1 < len(devices) and len(devices) * threads <= len(node.cpus)
    return core_sets(node.cpus, len(devices), threads) if bind else [None] * len(devices)


def make_plan(req: PlanRequest) -> LaunchPlan:
    """Compute the launch plan for ``req`` (pure: reads nothing, starts nothing). The plan is
    complete: every process carries its node's interpreter, PYTHONPATH and run directory."""
    table = req.rank_table
    if table is not None:
        ranks = assign_ranks(req.nodes, table.first_rank(req.table_server),
                             table.node_rank(req.table_server))
    else:
        ranks = assign_ranks(req.nodes)
    world = req.world_size
    views = {node.host: _NodeView(req, node) for node in req.nodes}
    launch_env, unset, scheduler, sched_process, rank_table = _cluster_setup(req, ranks, views)
    processes: list[ProcessSpec] = [sched_process] if sched_process is not None else []
    warnings: list[str] = []
    for node in req.nodes:
        view = views[node.host]
        node_env = view.env(req)
        if rank_table is not None:
            node_env[RANK_TABLE_FILE_ENV] = os.path.join(view.run_dir, RANK_TABLE_NAME)
        worker_argv = view.worker_argv()
        on_node = [r for r in ranks if r.host == node.host]
        threads = thread_budget(len(node.cpus), len(on_node), req.threads_per_worker)
        warnings += _oversubscription(node, threads, req.backend, req.threads_per_worker is not None)
        cores = _worker_cores(req, node, [r.device_id for r in on_node], threads)
        for r, cpus in zip(on_node, cores):
            rank_threads = threads
            if req.backend == "ascend" and cpus and req.threads_per_worker is None:
                rank_threads = min(threads, len(cpus))  # no more threads than its NUMA share
            env = {**node_env, **launch_env,
                   RANK_ID_ENV: str(r.rank), RANK_SIZE_ENV: str(world),
                   LOCAL_RANK_ENV: str(r.local_rank), DEVICE_ID_ENV: str(r.device_id),
                   "OMP_NUM_THREADS": str(rank_threads), NUM_THREADS_ENV: str(rank_threads)}
            if scheduler is not None:
                env.update({MS_ROLE_ENV: ROLE_WORKER, MS_NODE_ID_ENV: str(r.rank)})
            if cpus is not None:  # the worker binds itself once it has joined (wrn.dist.bind_to_cores):
                # pinned at exec time, MindSpore's cluster start-up is 10x slower on one core
                env[BIND_CPUS_ENV] = ",".join(map(str, cpus))
            processes.append(ProcessSpec(
                name=f"rank{r.rank}", role="worker", host=r.host, rank=r.rank, argv=worker_argv,
                env=env, cwd=req.cwd, log=f"{LOG_DIR}/{r.host}-rank{r.rank}.log", cpus=cpus,
                unset=unset, threads=rank_threads))

    if table is not None and rank_table is None:
        rank_table = table.text()  # kept in the run directory as a record (workers do not read it)
    return LaunchPlan(backend=req.backend, run_dir=req.run_dir, ranks=ranks,
                      processes=tuple(processes), scheduler=scheduler, rank_table=rank_table,
                      warnings=tuple(warnings),
                      total_ranks=world if table is not None else None,
                      secret_names=frozenset(req.secret_names), startup=req.startup)
