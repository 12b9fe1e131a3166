"""From a ``LaunchConfig`` to a checked launch: ``prepare(config) -> Prepared``.

Every check that can fail on bad input runs here and raises one ``LaunchError`` (a paragraph)
before anything is created or started: the training config, the resume source, the backend,
the devices or hosts (a parallel SSH pre-flight for ``--hostfile``/``--hosts``), the data path,
rank-table inputs, the scheduler port, the run directory. The result holds what does not change
between attempts: the resolved training config, the complete nodes (each host's address,
devices, cores, interpreter, project path and run-directory path), the backend with its live
connections, and the plan request. ``Prepared.plan(attempt)`` turns that into a fresh, complete
``LaunchPlan`` for each attempt: a restart is a new plan from the same inputs, never a patched one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.devices import DEVICE_TARGET, backend_label, detect_backend, format_ids, \
    gpu_problem, list_devices, parse_devices
from cluster.errors import PlanError
from cluster.hosts import HostSpec, forwarded_env, mask_env, \
    parse_env_assignments, parse_env_file, parse_hosts_flag, read_hostfile, select_hosts
from cluster.plan import CONFIG_NAME, LaunchPlan, Node, PlanRequest, make_plan
from cluster.hccl_env import hccl_timeout_env
from cluster.numa import read_topology
from cluster.ranktable.check import read_table
from cluster.ranktable.hccn import device_ips, read_hccn_conf
from cluster.ranktable.host import find_local_server, local_ips, primary_ip
from cluster.ranktable.table import RankTable
from launcher.backends.base import Backend, BackendError, module_argv, python_path
from launcher.backends.local import LocalBackend
from launcher.config import LaunchConfig, LaunchError
from launcher.backends.ports import PortReservation, reserve_port
from launcher.rundir.record import RunRecord
from launcher.rundir.layout import RunDirBusy, RunDirLock, check_run_dir, check_run_name, default_run_dir
from launcher.backends.slurm import SlurmBackend
from wrn.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config
from wrn.hostname import host_name
from wrn.contract import ATTEMPT_ENV, FAULT_ENV, STOP_ON_SIGNAL_ENV
from wrn.faults import check_ranks, parse_faults
from launcher.installation import versions

#: The host list of a multi-host run, kept in its run directory for ``--resume``.
HOSTFILE_NAME = "hostfile"
#: How many ports a restart tries before it gives up on finding one free on the master host.
PORT_TRIES = 20


@dataclass
class Prepared:
    """A checked launch: everything that stays the same across its attempts."""

    config: LaunchConfig
    train: TrainConfig
    request: PlanRequest
    backend: Backend
    run_dir: Path
    explicit_run_dir: bool
    port: PortReservation | None = None
    previous: RunRecord | None = None
    hosts: tuple[HostSpec, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)
    lock: RunDirLock | None = None
    #: With --rescan: the token that makes the first attempt's workers scan the data again.
    rescan_token: str | None = None

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.request.nodes

    def plan(self, attempt: int = 0) -> LaunchPlan:
        """The complete plan of attempt ``attempt`` (0: the first). Every attempt after the
        first (and every attempt of ``--resume``) continues from the run's newest valid
        checkpoint; the first one starts from ``--resume-ckpt``/``--pretrained`` if given."""
        request = dataclasses.replace(
            self.request, run_dir=str(self.run_dir),
            extra_env={**self.request.extra_env, ATTEMPT_ENV: str(self.attempt_number(attempt))},
            sched_port=self.port.port if self.port else None,
            resume=attempt > 0 or self.config.resume is not None,
            worker_args=_worker_args(self.config, first=attempt == 0, rescan=self.rescan_token))
        plan = make_plan(request)
        return dataclasses.replace(plan, warnings=self.warnings + plan.warnings)

    def attempt_number(self, attempt: int = 0) -> int:
        """The run's attempt number (1-based, counting a resumed run's earlier attempts) of
        this launch's attempt ``attempt`` (0: the first)."""
        return (self.previous.attempt + 1 if self.previous is not None else 1) + attempt

    def moved_to(self, run_dir: Path) -> None:
        """Use ``run_dir`` (a default name that was taken got a suffix when it was created)."""
        self.run_dir = run_dir
        self.notes["run dir"] = str(run_dir)

    def renew_port(self, release_first: bool = True) -> str | None:
        """For a restart: a scheduler port that is free on the master host now (checked there,
        through the backend). Returns a problem (one line) when none could be found.

        ``release_first``: the held port is let go before a new one is looked for (a cold
        restart: the old scheduler has ended, and the same port may be taken again). False
        (a standby, next to the running scheduler): the new port is reserved first and the
        held one is kept when none is found."""
        if self.port is None or self.request.rank_table is not None:
            return None  # no scheduler, or a rank table's port shared with other servers
        master = self.nodes[0].host
        tries = 1 if self.config.port is not None else PORT_TRIES
        if release_first:
            self.port.release()
        for _ in range(tries):
            try:
                port = reserve_port(self.config.port, self.config.port_range)
            except PlanError as exc:
                if release_first:
                    self.port = None
                return str(exc)
            try:
                free = self.backend.port_free(master, port.port)
            except BackendError as exc:
                port.release()
                return str(exc)
            if free:
                if not release_first:
                    self.port.release()
                self.port = port
                return None
            port.release()
        return (f"no free scheduler port on the master host {master} after {tries} tries; free "
                f"ports of --port-range there or pass another --port")

    def drop_lost_hosts(self) -> tuple[dict[str, Any] | None, str | None]:
        """For a restart under ``--min-devices``: every host's pre-flight again (over the run's
        connections); hosts that fail it are left out while at least ``--min-devices`` devices
        remain. Returns (what was left out, as run.json's ``shrinks`` entry, or None; a problem
        that stops the restart, or None). The next ``plan()`` runs on the hosts kept."""
        if self.config.min_devices is None or self.backend.local:
            return None, None
        from launcher.backends.preflight import recheck_hosts

        checks = recheck_hosts(self.backend, self.nodes, self.config.ssh, versions(),
                               self.request.backend, self.train.data_path, self.config.dev_dir)
        lost = {c.host: "; ".join(c.problems) for c in checks if not c.ok}
        if not lost:
            return None, None
        kept = tuple(n for n in self.nodes if n.host not in lost)
        before, after = self.request.world_size, sum(len(n.device_ids) for n in kept)
        shrink = {"dropped": [{"host": n.host, "devices": len(n.device_ids), "reason": lost[n.host]}
                              for n in self.nodes if n.host in lost],
                  "world_size_before": before, "world_size_after": after}
        if after < self.config.min_devices:
            return shrink, (f"the pre-flight failed on {', '.join(lost)} ({'; '.join(f'{h}: {why}' for h, why in lost.items())}) "
                            f"and {after} device(s) would remain, fewer than --min-devices "
                            f"{self.config.min_devices}")
        for host in lost:
            self.backend.forget(host)
        self.request = dataclasses.replace(self.request, nodes=kept)
        self.hosts = tuple(h for h in self.hosts if h.name not in lost)
        if self.port is not None and self.request.world_size == 1:
            self.port.release()  # a single CPU/GPU worker runs without a scheduler
            self.port = None
        self.notes["hosts"] = ", ".join(f"{n.host} ({len(n.device_ids)})" for n in kept)
        return shrink, None

    def close(self) -> None:
        """Free the held port and the run directory, and close the backend's connections (the
        launch is over)."""
        if self.port is not None:
            self.port.release()
        if self.lock is not None:
            self.lock.release()
        self.backend.close()


def _worker_args(config: LaunchConfig, first: bool, rescan: str | None = None) -> tuple[str, ...]:
    """Worker flags besides ``--resume-from``: the first attempt of a new run starts from
    ``--resume-ckpt``/``--pretrained`` if given; ``--force`` on every attempt; ``--rescan``
    (the data scanned again, not taken from the run's index) on the first attempt only."""
    args: list[str] = []
    if first and rescan:
        args += ["--rescan", rescan]
    if first and config.resume is None:
        if config.resume_ckpt:
            args += ["--resume-ckpt", str(Path(config.resume_ckpt).resolve())]
        if config.pretrained:
            args += ["--pretrained", str(Path(config.pretrained).resolve())]
    if config.force:
        args.append("--force")
    return tuple(args)


# -- inputs ------------------------------------------------------------------------------------------
def _resume_source(config: LaunchConfig, holder: dict[str, Any]) -> tuple[Path | None, RunRecord | None]:
    """The run directory to resume, locked for this launcher, and its run record (None, None
    when not resuming). A run whose run.json still says "running" while no launcher holds its
    lock lost its launcher (killed, or its machine rebooted): it is resumed like any other."""
    if config.resume is None:
        return None, None
    from launcher.rundir.reading import RunDirError, read_run_record

    try:
        run_dir, previous = read_run_record(config.resume)
    except RunDirError as exc:
        raise LaunchError(f"--resume: {exc}") from None
    try:
        holder["lock"] = RunDirLock(run_dir).acquire()
    except RunDirBusy as exc:
        raise LaunchError(f"--resume {config.resume}: {exc}") from None
    except OSError as exc:
        raise LaunchError(f"--resume {config.resume}: cannot lock the run directory "
                          f"({exc.strerror}); it must be writable by you") from None
    if previous.status == "running":
        previous.status = "lost"  # its launcher is gone: the lock was free
    return run_dir.resolve(), previous


def _check_same_maths(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse, before anything starts, a resume whose config changes the maths of the run."""
    from wrn.checkpoint import MATH_FIELDS, config_hash

    try:
        latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no checkpoint yet: the run starts from scratch
    saved = latest.get("config_hash") if isinstance(latest, dict) else None
    if saved and saved != config_hash(cfg.to_dict()):
        raise LaunchError(f"--resume {run_dir}: the config differs from the one its checkpoints "
                          f"were trained with in fields that change the maths (any of "
                          f"{', '.join(MATH_FIELDS)}); drop those --set overrides, or add --force "
                          f"to continue with the new values anyway")


def _check_named_ranks(config: LaunchConfig, env: dict[str, str], world: int) -> None:
    """--tail-ranks and ``WRN_FAULT`` (from --env/--env-file, or this environment for a local
    run, whose workers inherit it) name ranks of this run, and the fault text is well formed."""
    if config.tail_ranks and config.tail_ranks[-1] >= world:
        raise LaunchError(f"--tail-ranks names rank {config.tail_ranks[-1]}, but this run has "
                          f"{world} rank(s) (0-{world - 1}); pick ranks from those")
    source, text = f"{FAULT_ENV} (--env/--env-file)", env.get(FAULT_ENV)
    if text is None and not config.multi_host:
        source, text = f"{FAULT_ENV} (in the environment)", os.environ.get(FAULT_ENV)
    if text:
        try:
            check_ranks(parse_faults(text, source), world, source)
        except ConfigError as exc:
            raise LaunchError(str(exc)) from None


def _launch_env(config: LaunchConfig) -> tuple[dict[str, str], frozenset[str]]:
    """Environment the launch adds to every worker: allow-listed variables of this shell (for
    remote hosts), then ``--env-file``, then ``--env`` (later wins); and the names whose values
    are secret whatever they are called (every name of the env file)."""
    env = forwarded_env(os.environ) if config.multi_host else {}
    if config.env_file:
        try:
            text = Path(config.env_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise LaunchError(f"--env-file {config.env_file}: cannot read it ({exc.strerror}); "
                              f"pass a file of NAME=VALUE lines") from None
        from_file = parse_env_file(text, config.env_file)
        env.update(from_file)
    env.update(parse_env_assignments(config.env))
    return env, frozenset(from_file if config.env_file else ())


def _resolve_backend(config: LaunchConfig, cfg: TrainConfig) -> tuple[str, str]:
    """(backend, how it was chosen); a GPU only when the installed MindSpore can use one."""
    backend, how = _chosen_backend(config, cfg)
    if backend == "gpu":
        problem = gpu_problem()
        if problem is not None:
            raise LaunchError(f"the GPU backend was chosen ({how}) but {problem}. Use --backend "
                              f"cpu (or ascend on an Ascend host), or install a MindSpore build "
                              f"with GPU support")
    return backend, how


def _chosen_backend(config: LaunchConfig, cfg: TrainConfig) -> tuple[str, str]:
    wanted = cfg.device_target
    if config.backend != "auto":
        if wanted != "auto" and wanted != DEVICE_TARGET[config.backend]:
            raise LaunchError(f"--backend {config.backend} contradicts device_target: {wanted} in "
                              f"the config; drop one of them, or set --set device_target=auto")
        return config.backend, "--backend"
    if wanted != "auto":
        return {v: k for k, v in DEVICE_TARGET.items()}[wanted], "device_target in the config"
    if config.rank_table is not None:
        return "ascend", "--rank-table"  # an HCCL table means Ascend unless told otherwise
    return detect_backend(config.dev_dir), "detected"


def _host_specs(config: LaunchConfig, resume_dir: Path | None) -> list[HostSpec] | None:
    """The hosts of a multi-host launch: --hostfile, --hosts, or the resumed run's hostfile."""
    if config.hostfile:
        return select_hosts(read_hostfile(config.hostfile), config.include, config.exclude)
    if config.hosts:
        return select_hosts(parse_hosts_flag(config.hosts), config.include, config.exclude)
    if resume_dir is not None and (resume_dir / HOSTFILE_NAME).is_file():
        return read_hostfile(str(resume_dir / HOSTFILE_NAME))
    return None


def _check_data(cfg: TrainConfig, dry_run: bool, warnings: list[str], world: int) -> None:
    from wrn.config import BUILTIN_DATA
    from wrn.datapath import check_data_path, count_images

    try:
        check_data_path(cfg.data_path)
    except ConfigError as exc:
        if not dry_run:
            raise LaunchError(str(exc)) from None
        warnings.append(str(exc))
        return
    if cfg.data_path == BUILTIN_DATA:
        return
    train = Path(cfg.data_path).expanduser() / "train"
    try:
        images = count_images(train.parent, enough=world * cfg.batch_size)
    except ConfigError as exc:
        raise LaunchError(str(exc)) from None
    except OSError as exc:
        raise LaunchError(f"data_path {train.parent}: cannot list {train} ({exc.strerror}); check "
                          f"its permissions") from None
    if images < world * cfg.batch_size:
        raise LaunchError(f"data_path {train.parent}: {train} has {images} images, fewer than "
                          f"{world} worker(s) x batch_size={cfg.batch_size} = "
                          f"{world * cfg.batch_size}, so not one training step fits in an epoch; "
                          f"lower batch_size (--set batch_size=N), use fewer devices or more data")


# -- the one entry point -----------------------------------------------------------------------------
def prepare(config: LaunchConfig) -> Prepared:
    """Check everything and compute what the plan is made from; raises ``LaunchError`` and
    creates nothing. A dry run is lenient where the host differs from the target (no such
    devices here, no hccn.conf, data path missing): those become warnings and placeholders."""
    holder: dict[str, Any] = {}
    try:
        return _prepare(config, holder)
    except BaseException as exc:
        if holder.get("port") is not None:
            holder["port"].release()
        if holder.get("lock") is not None:
            holder["lock"].release()
        if holder.get("backend") is not None:
            holder["backend"].close()
        if isinstance(exc, (PlanError, ConfigError)):
            raise LaunchError(str(exc)) from None
        raise


def _prepare(config: LaunchConfig, holder: dict[str, Any]) -> Prepared:
    resume_dir, previous = _resume_source(config, holder)
    for flag, path in (("--resume-ckpt", config.resume_ckpt), ("--pretrained", config.pretrained)):
        if path and not Path(path).is_file():
            raise LaunchError(f"{flag} {path}: no such checkpoint file; pass the path of a .ckpt "
                              f"file (e.g. RUN_DIR/checkpoints/<name>.ckpt)")
        if path:
            from wrn.checkpoint import scan_checkpoint

            try:
                scan_checkpoint(path)  # structure and CRC, in constant memory, no MindSpore
            except OSError as exc:
                raise LaunchError(f"{flag} {path}: not a readable checkpoint ({exc}); pass a "
                                  f"complete .ckpt file written with a CRC (as every run's "
                                  f"RUN_DIR/checkpoints/<name>.ckpt is), e.g. an earlier one of "
                                  f"that run if this one was cut short") from None
    config_file = config.config_file
    if resume_dir is not None and config_file is None:
        config_file = str(resume_dir / CONFIG_NAME)
    cfg = load_config(config_file, config.overrides)
    if resume_dir is not None and not config.force:
        _check_same_maths(resume_dir, cfg)
    backend_name, how = _resolve_backend(config, cfg)
    if config.standby and backend_name != "cpu":
        raise LaunchError(f"--standby runs a second set of workers next to the running ones, "
                          f"which is built and tested for CPU workers only; the backend is "
                          f"{backend_label(backend_name)} ({how}): pass --backend cpu, or drop "
                          f"--standby")
    if config.standby and config.launcher == "auto" and config.slurm(os.environ):
        raise LaunchError(f"--standby is not built for a launch through Slurm, and this one "
                          f"is (SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID')} is set and no "
                          f"--devices or --hosts says otherwise): drop --standby, or give "
                          f"--devices N (this node only) or --hosts to launch without Slurm")
    cfg = cfg.replace(device_target=DEVICE_TARGET[backend_name])
    env, secret_names = _launch_env(config)
    specs = _host_specs(config, resume_dir)

    explicit = config.run_dir is not None or resume_dir is not None
    if resume_dir is not None:
        run_dir = resume_dir
    elif config.run_dir is not None:
        run_dir = Path(config.run_dir).expanduser().resolve()
        check_run_dir(run_dir)
    else:
        run_dir = default_run_dir(config.runs_root, check_run_name(config.name or cfg.checkpoint_name))

    warnings: list[str] = []
    if backend_name == "ascend":
        hccl_env, hccl_warnings = hccl_timeout_env(config.hccl_connect_timeout,
                                                   config.hccl_exec_timeout)
        warnings += hccl_warnings
    else:
        hccl_env = {}
        if config.hccl_connect_timeout is not None or config.hccl_exec_timeout is not None:
            warnings.append(f"--hccl-connect-timeout / --hccl-exec-timeout only apply to Ascend; "
                            f"ignored on {backend_label(backend_name)}")
        if config.hccl_rank_table or config.ascend_startup != "dynamic":
            warnings.append(f"--hccl-rank-table / --ascend-startup only apply to Ascend; "
                            f"ignored on {backend_label(backend_name)}")
    if specs is not None:
        nodes, ips, backend, port, share, notes = _remote_nodes(config, cfg, specs, backend_name,
                                                                warnings, holder, run_dir)
    elif config.slurm(os.environ):
        nodes, ips, backend, port, share, notes = _slurm_nodes(config, cfg, backend_name, holder)
    else:
        config = _with_devices(config, previous)
        nodes, ips, backend, port, share, notes = _local_nodes(config, cfg, backend_name, how,
                                                               warnings, holder)
        _check_data(cfg, config.dry_run, warnings, sum(len(n.device_ids) for n in nodes))
    device_cpus = _device_cpus(config, backend_name, nodes, specs is not None, warnings, notes)
    worker_cmd = config.worker_cmd or module_argv(sys.executable, "wrn.train")
    scheduler_cmd = None
    if config.start_scheduler:
        scheduler_cmd = config.scheduler_cmd or tuple(module_argv(sys.executable, "wrn.scheduler"))
    extra_env = {**hccl_env, **env}
    if isinstance(backend, SlurmBackend):  # preemption: finish the step, checkpoint, stop
        extra_env[STOP_ON_SIGNAL_ENV] = "1"
    if specs is None and python_path(os.environ.get("PYTHONPATH")):
        extra_env = {"PYTHONPATH": python_path(os.environ.get("PYTHONPATH")), **extra_env}
    request = PlanRequest(
        backend=backend_name, nodes=nodes, run_dir=str(run_dir), cwd=os.getcwd(),
        worker_cmd=tuple(worker_cmd), scheduler_cmd=scheduler_cmd,
        sched_port=port.port if port else None, threads_per_worker=config.threads_per_worker,
        bind_cores=config.bind_cores, verbose_mindspore=config.verbose_mindspore,
        device_ips=ips, extra_env=extra_env, python=sys.executable, secret_names=secret_names,
        rank_table=share[0] if share else None, table_server=share[1] if share else 0,
        ascend_startup=config.ascend_startup, hccl_rank_table=config.hccl_rank_table,
        device_cpus=device_cpus)
    prepared = Prepared(config, cfg, request, backend, run_dir, explicit, port, previous,
                        tuple(specs or ()), env, tuple(warnings), {"chosen": how, **notes},
                        holder.get("lock"), rescan_token=f"{time.time_ns():x}" if config.rescan else None)
    plan = prepared.plan(0)  # every plan-level check runs now, before anything starts
    _check_named_ranks(config, env, plan.world_size)
    prepared.notes.update(_notes(prepared, plan, config_file, resume_dir))
    return prepared


def _device_cpus(config: LaunchConfig, backend_name: str, nodes: tuple[Node, ...], remote: bool,
                 warnings: list[str], notes: dict[str, str]) -> dict[str, dict[int, tuple[int, ...]]]:
    """host -> device -> the CPUs near it, for binding Ascend workers (this host's topology;
    none with --no-bind-cores, on other backends, or for hosts reached over SSH)."""
    if backend_name != "ascend" or config.bind_cores is False:
        return {}
    if remote:
        notes["core binding"] = "off: the NUMA topology of other hosts is not read"
        return {}
    try:
        topology = read_topology(config.sys_dir)
    except PlanError as exc:
        if config.bind_cores:
            raise LaunchError(f"--bind-cores: {exc}; fix that, or pass --no-bind-cores") from None
        warnings.append(f"Ascend workers are not bound to cores: {exc}")
        return {}
    if topology is None:
        how = "consecutive blocks of the usable cores" if config.bind_cores else "off"
        notes["core binding"] = (f"{how}: no device-to-NUMA topology found (npu-smi info -t "
                                 f"topo, {config.sys_dir}/bus/pci/devices)")
        return {}
    node = nodes[0]
    missing = [d for d in node.device_ids if d not in topology.cpus]
    notes["core binding"] = (f"each rank on its device's NUMA CPUs ({topology.source})"
                             + (f"; unknown for device(s) {format_ids(missing)}" if missing else ""))
    return {node.host: dict(topology.cpus)}


def _notes(prepared: Prepared, plan: LaunchPlan, config_file: str | None,
           resume_dir: Path | None) -> dict[str, str]:
    """The lines the plan view shows besides the plan: run dir, config, timings, restarts."""
    config, sup = prepared.config, prepared.config.supervisor
    notes = {"run dir": str(prepared.run_dir) + ("" if prepared.explicit_run_dir else " (default)"),
             "config": f"{config_file or DEFAULT_CONFIG} -> {prepared.run_dir / CONFIG_NAME}",
             "grace": f"{sup.grace:g} s, {sup.stall_text()}, startup {sup.startup_timeout:g} s, "
                      f"heartbeat {sup.heartbeat_timeout:g} s"}
    if prepared.hosts:
        shown = mask_env(prepared.env, prepared.request.secret_names)
        notes["env"] = ", ".join(f"{k}={v}" for k, v in shown.items()) or "-"
    if resume_dir is not None:
        notes["resume"] = f"continuing {resume_dir} from its newest valid checkpoint"
    if config.max_restarts:
        notes["restarts"] = f"up to {config.max_restarts}, each from the newest valid checkpoint"
    if plan.rank_table and prepared.hosts:
        notes["rank table"] = (f"merged from each host's {config.hccn_conf}: "
                               f"{len(prepared.nodes)} servers, {plan.world_size} ranks; placed "
                               f"in every host's run directory")
    return notes


def _with_devices(config: LaunchConfig, previous: RunRecord | None) -> LaunchConfig:
    """A resume without --devices runs on the resumed run's device count."""
    if config.devices is not None or config.rank_table is not None:
        return config
    if previous is not None:
        size = previous.plan.get("world_size")
        return config.replace(devices=str(size if isinstance(size, int) and size > 0 else 1))
    return config.replace(devices="1")


def _usable_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def _local_nodes(config: LaunchConfig, cfg: TrainConfig, backend_name: str, how: str,
                 warnings: list[str], holder: dict[str, Any]):
    """This host as the launch's one node: devices (``--devices`` or its share of
    ``--rank-table``), device IPs (Ascend), the scheduler port (held)."""
    holder["backend"] = backend = LocalBackend()
    available = list_devices(backend_name, config.dev_dir)
    label = backend_label(backend_name)
    if available is not None and not available:
        node_glob = {"ascend": "/dev/davinci<N>", "gpu": "/dev/nvidia<N> or nvidia-smi -L"}[backend_name]
        if not config.dry_run:
            raise LaunchError(f"the {label} backend was chosen ({how}) but this host has no "
                              f"{label} devices (looked for {node_glob}); run on a host that has "
                              f"them, use --backend cpu, or add --dry-run to only see the plan")
        warnings.append(f"this host has no {label} devices; the plan uses the device ids as "
                        f"asked (dry run)")
        available = None
    share = _rank_table_share(config) if config.rank_table else None
    if share is not None:
        device_ids = _table_devices(*share, available, backend_name, config.rank_table)
    else:
        device_ids = parse_devices(config.devices).resolve(available, backend_name)
    host = host_name()
    ips: dict[str, dict[int, str]] = {}
    port = None
    ranktable_startup = backend_name == "ascend" and config.ascend_startup == "ranktable"
    if backend_name == "ascend" and share is not None:
        server = share[0].servers[share[1]]
        ips[host] = {d.device_id: d.device_ip for d in server.devices}
    if share is not None and ranktable_startup:
        address = share[0].servers[share[1]].server_id
    elif share is not None:
        port, address = _table_scheduler_port(config, *share)
    else:
        address = "127.0.0.1"
        if backend_name == "ascend" and (ranktable_startup or config.hccl_rank_table):
            conf = read_hccn_conf(config.hccn_conf)
            ips[host], ip_warnings = device_ips(device_ids, conf, config.hccn_conf, config.dry_run)
            warnings += ip_warnings
            address = primary_ip()  # the rank table's server_id
        if len(device_ids) > 1 and not ranktable_startup:  # one worker runs standalone
            port = reserve_port(config.port, config.port_range)
    holder["port"] = port
    cpus = _usable_cpus()
    notes = {"devices": f"{format_ids(device_ids)} ({len(device_ids)} worker(s))",
             "cores": f"{len(cpus)} usable"}
    if share is not None:
        table, index = share
        first = table.first_rank(index)
        notes["rank table"] = (f"{config.rank_table}: this host is server "
                               f"{table.servers[index].server_id} ({index + 1} of "
                               f"{len(table.servers)}), ranks {first}-{first + len(device_ids) - 1} "
                               f"of {table.world_size}")
    node = Node(host, address, tuple(device_ids), cpus)
    return (node,), ips, backend, port, share, notes


def _remote_nodes(config: LaunchConfig, cfg: TrainConfig, specs: list[HostSpec],
                  backend_name: str, warnings: list[str], holder: dict[str, Any], run_dir: Path):
    """The hosts of ``--hostfile``/``--hosts``, pre-flighted over SSH in parallel (versions,
    imports, data, devices, the scheduler port on the master); Ascend: one merged rank table's
    device IPs from every host's hccn.conf."""
    from cluster.ranktable.build import merged_rank_table
    from launcher.backends.multihost import prepare_hosts, read_remote_hccn

    world = sum(s.slots for s in specs)
    port = None
    ranktable_startup = backend_name == "ascend" and config.ascend_startup == "ranktable"
    if world > 1 and not ranktable_startup:
        holder["port"] = port = reserve_port(config.port, config.port_range)
    ready = prepare_hosts(specs, config.ssh, versions(), backend_name, cfg.data_path,
                          port.port if port else None, os.getcwd(),
                          remote_run_dir=config.remote_run_dir, dev_dir=config.dev_dir,
                          run_dir=str(run_dir), resume=config.resume is not None)
    holder["backend"] = backend = ready.backend
    nodes = ready.nodes
    ips: dict[str, dict[int, str]] = {}
    if backend_name == "ascend" and (ranktable_startup or config.hccl_rank_table):
        # every host's hccn.conf over SFTP -> one merged rank table
        confs = {n.host: read_remote_hccn(backend, n.host, config.hccn_conf) for n in nodes}
        servers, _text, table_warnings = merged_rank_table(nodes, confs, config.hccn_conf,
                                                           config.dry_run)
        warnings += table_warnings
        ips = {n.host: {d.device_id: d.device_ip for d in server.devices}
               for n, server in zip(nodes, servers)}
        # the table's server ids are the hosts' resolved IPs
        nodes = tuple(dataclasses.replace(n, address=server.server_id)
                      for n, server in zip(nodes, servers))
    notes = {"hosts": ", ".join(f"{n.host} ({len(n.device_ids)})" for n in nodes),
             "master": f"{nodes[0].host} (scheduler {nodes[0].address}:"
                       f"{port.port if port else '-'})"}
    return nodes, ips, backend, port, None, notes


def _slurm_nodes(config: LaunchConfig, cfg: TrainConfig, backend_name: str,
                 holder: dict[str, Any]):
    """The nodes of the Slurm job this launcher runs in, pre-flighted in one step (versions,
    imports, data, devices, the scheduler port on the first node)."""
    from launcher.backends.slurm import slurm_nodes

    if backend_name == "ascend":
        raise LaunchError("--launcher slurm runs CPU and GPU workers; an Ascend run inside an "
                          "allocation needs a rank table per node: use --launcher local with "
                          "--rank-table on each node (srun wrn-launch ...)")
    port = None
    ready = slurm_nodes(os.environ, versions(), backend_name, cfg.data_path,
                        config.devices_per_node, config.dev_dir, config.supervisor.grace + 5.0)
    holder["backend"] = ready.backend
    if sum(len(n.device_ids) for n in ready.nodes) > 1:
        holder["port"] = port = reserve_port(config.port, config.port_range)
        if not ready.backend.port_free(ready.nodes[0].host, port.port):
            raise LaunchError(f"scheduler port {port.port} is in use on the first node "
                              f"{ready.nodes[0].host} of Slurm job {ready.job}; pass another "
                              f"--port")
    nodes = ready.nodes
    notes = {"slurm": f"job {ready.job}, " + ", ".join(f"{n.host} {n.address} "
                                                        f"({len(n.device_ids)})" for n in nodes),
             "master": f"{nodes[0].host} (scheduler {nodes[0].address}:"
                       f"{port.port if port else '-'})"}
    return nodes, {}, ready.backend, port, None, notes


def _rank_table_share(config: LaunchConfig) -> tuple[RankTable, int]:
    """Read ``--rank-table`` (every problem reported at once) and find this host's server in
    it: ``--server-ip``, else this host's addresses, else the device IPs of its hccn.conf."""
    table = read_table(config.rank_table)
    conf = None
    if config.server_ip is None:
        try:
            conf = read_hccn_conf(config.hccn_conf)
        except PlanError:
            conf = None  # a broken hccn.conf only matters if the table's IPs do not match
    index = find_local_server(table, server_ip=config.server_ip, host_ips=local_ips(),
                              hccn_ips=conf, hccn_source=config.hccn_conf)
    return table, index


def _table_scheduler_port(config: LaunchConfig, table: RankTable,
                          index: int) -> tuple[PortReservation | None, str]:
    """CPU/GPU run of a rank table: (scheduler port, this host's address).

    One server: like ``--devices``, a free port on 127.0.0.1. Several servers: every server's
    launch must name the same ``--port``; the server holding rank 0 starts the scheduler there
    (its port is checked and held), the others only connect to it.
    """
    server = table.servers[index]
    if len(table.servers) == 1:
        port = reserve_port(config.port, config.port_range) if table.world_size > 1 else None
        return port, "127.0.0.1"
    if config.port is None:
        raise LaunchError(f"--rank-table {config.rank_table} lists {len(table.servers)} servers: "
                          f"in a dynamic cluster their workers meet at one scheduler on the "
                          f"server with rank 0, so pass the same --port P to the launch on every "
                          f"server (or --ascend-startup ranktable on Ascend)")
    if table.first_rank(index) == 0:
        return reserve_port(config.port, config.port_range), server.server_id
    return PortReservation(config.port), server.server_id  # the scheduler is elsewhere: hold nothing


def _table_devices(table: RankTable, index: int, available: list[int] | None, backend: str,
                   source: str) -> tuple[int, ...]:
    """This server's device ids from the table, checked against the devices this host has."""
    server = table.servers[index]
    if available is not None:
        missing = [d for d in server.device_ids if d not in available]
        if missing:
            label = backend_label(backend)
            raise LaunchError(f"rank table {source}: server {server.server_id} lists {label} "
                              f"device(s) {format_ids(missing)}, but this host has "
                              f"{format_ids(available) or 'none'}; fix the table (wrn-launch "
                              f"ranktable --devices ... writes one for this host) or run on the "
                              f"server it describes")
    return server.device_ids
