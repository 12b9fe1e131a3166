"""The Python API: ``launch(...)`` runs N data-parallel workers and returns a ``LaunchResult``.

``wrn-launch`` (``launcher.cli``) is a thin wrapper over this module. The steps:

1. ``prepare(options)``: every check that can fail on bad input (config, backend, devices,
   data path, rank-table inputs, scheduler port, run directory) runs here and raises one
   ``LaunchError`` (a one-paragraph message) before anything is created or started; the result
   is the plan (``cluster.plan.make_plan``) and the resolved config.
2. dry run: the plan is shown and nothing else happens.
3. otherwise: the run directory is created (config.yaml, rank_table.json, run.json) and a
   ``Supervisor`` runs the plan until the end.

``worker_cmd`` / ``scheduler_cmd`` replace the real ``python -m wrn.train`` / ``python -m
wrn.scheduler`` commands (tests use a fake worker); ``start_scheduler=False`` starts none.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster.devices import DEVICE_TARGET, backend_label, detect_backend, format_ids, \
    list_devices, parse_devices
from cluster.errors import PlanError
from cluster.plan import CONFIG_NAME, RANK_TABLE_NAME, LaunchPlan, Node, PlanRequest, make_plan
from cluster.hccl_env import hccl_timeout_env
from cluster.ranktable.check import read_table
from cluster.ranktable.hccn import DEFAULT_HCCN_CONF, device_ips, read_hccn_conf
from cluster.ranktable.host import find_local_server, local_ips, primary_ip
from cluster.ranktable.table import RankTable
from launcher.ports import DEFAULT_PORT_RANGE, PortReservation, reserve_port
from launcher.progress import RunSummary
from launcher.render import Renderer, make_renderer
from launcher.rundir import RUN_JSON, RunFiles, check_run_dir, check_run_name, create_run_dir, default_run_dir
from launcher.supervisor import Supervisor, SupervisorOptions
from launcher.transport import LocalTransport, python_path
from cluster.hosts import mask_command, mask_env
from launcher.multihost import masked_plan
from wrn.config import ConfigError, TrainConfig, dump_config, load_config

#: Backend choices of ``--backend``.
BACKEND_CHOICES = ("auto", "ascend", "gpu", "cpu")


class LaunchError(Exception):
    """Bad input found before anything started; ``str()`` is one paragraph (what, where, fix)."""

    exit_code = 2


@dataclass(frozen=True)
class LaunchOptions:
    """Everything ``launch`` accepts; mirrors the ``wrn-launch`` flags."""

    devices: str | None = None
    config: str | None = None
    overrides: tuple[str, ...] = ()
    backend: str = "auto"
    run_dir: str | None = None
    name: str | None = None
    runs_root: str = "runs"
    dry_run: bool = False
    grace: float = 3.0
    threads_per_worker: int | None = None
    bind_cores: bool | None = None
    verbose_mindspore: bool = False
    stall_timeout: float = 300.0
    stall_kill: float | None = None
    startup_timeout: float = 600.0
    scheduler_wait: float = 15.0
    hccn_conf: str = DEFAULT_HCCN_CONF
    port: int | None = None
    port_range: tuple[int, int] = DEFAULT_PORT_RANGE
    worker_cmd: tuple[str, ...] | None = None
    scheduler_cmd: tuple[str, ...] | None = None
    start_scheduler: bool = True
    dev_dir: str = "/dev"
    command: tuple[str, ...] = ()
    resume: str | None = None
    resume_ckpt: str | None = None
    pretrained: str | None = None
    force: bool = False
    max_restarts: int = 0
    rank_table: str | None = None
    server_ip: str | None = None
    hccl_connect_timeout: int | None = None
    hccl_exec_timeout: int | None = None
    hostfile: str | None = None
    hosts: str | None = None
    ssh_config: str = "~/.ssh/config"
    ssh_known_hosts: str | None = None
    ssh_accept_new: bool = False
    ssh_timeout: float = 10.0
    env: tuple[str, ...] = ()
    env_file: str | None = None
    remote_run_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("overrides", "worker_cmd", "scheduler_cmd", "command", "port_range", "env"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.backend not in BACKEND_CHOICES:
            raise LaunchError(f"--backend {self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.server_ip is not None and self.rank_table is None:
            raise LaunchError(f"--server-ip {self.server_ip} picks this host's server in a rank "
                              f"table; use it together with --rank-table FILE")
        if self.run_dir is not None and self.name is not None:
            raise LaunchError("--run-dir and --name both name the run directory; give only one")
        if self.resume is not None and (self.run_dir is not None or self.name is not None):
            raise LaunchError("--resume RUN_DIR continues that run in place; it cannot be combined "
                              "with --run-dir or --name")
        if self.resume is not None and self.resume_ckpt is not None:
            raise LaunchError("--resume continues a run from its own newest checkpoint and "
                              "--resume-ckpt starts a new run from a file; give only one")
        if self.max_restarts < 0:
            raise LaunchError(f"--max-restarts must be 0 or more, got {self.max_restarts}")
        if self.hostfile is not None and self.hosts is not None:
            raise LaunchError("--hostfile and --hosts both list the hosts; give only one")
        if (self.hostfile or self.hosts) and (self.devices is not None or self.rank_table):
            raise LaunchError("with --hostfile/--hosts each host's devices come from its slots= "
                              "(or devices=, or host:N); drop --devices/--rank-table")
        if self.ssh_timeout <= 0:
            raise LaunchError(f"--ssh-timeout must be more than 0 seconds, got {self.ssh_timeout}")

    @property
    def multi_host(self) -> bool:
        """True when the hosts come from --hostfile or --hosts (launched over SSH)."""
        return bool(self.hostfile or self.hosts)

    def supervisor_options(self) -> SupervisorOptions:
        return SupervisorOptions(grace=self.grace, stall_timeout=self.stall_timeout,
                                 stall_kill=self.stall_kill if self.stall_kill is not None
                                 else 2 * self.stall_timeout,
                                 startup_timeout=self.startup_timeout,
                                 scheduler_wait=self.scheduler_wait)


@dataclass
class Prepared:
    """A checked launch: the plan, the resolved config, notes and warnings, the held port."""

    options: LaunchOptions
    config: TrainConfig
    plan: LaunchPlan
    run_dir: Path
    explicit_run_dir: bool
    request: PlanRequest | None = None
    warnings: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)
    port: PortReservation | None = None
    previous: dict[str, Any] = field(default_factory=dict)
    transport: Any = None
    remote: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    def plan_for(self, run_dir: Path, attempt: int = 0) -> LaunchPlan:
        """The same plan for another run directory (a default name that was taken meanwhile)
        or for a restart (``attempt`` > 0: a fresh scheduler port, resume flags)."""
        changes: dict[str, Any] = {"run_dir": str(run_dir),
                                   "worker_args": _worker_args(self.options, run_dir, attempt)}
        if attempt > 0 and self.request.sched_port is not None:
            self.release()
            self.port = reserve_port(None, self.options.port_range)
            changes["sched_port"] = self.port.port
        plan = make_plan(dataclasses.replace(self.request, **changes))
        if self.remote:
            from launcher.multihost import adjust_plan
            plan = adjust_plan(plan, self.remote)
            if self.plan.rank_table and plan.backend == "ascend":  # the merged table of all hosts
                plan = dataclasses.replace(plan, rank_table=self.plan.rank_table)
        return dataclasses.replace(plan, warnings=self.warnings + plan.warnings)

    def release(self) -> None:
        """Free the held port and close SSH connections."""
        if self.port is not None:
            self.port.release()
        if self.transport is not None and hasattr(self.transport, "shutdown"):
            self.transport.shutdown()


@dataclass(frozen=True)
class LaunchResult:
    """What ``launch`` returns; ``exit_code`` is the CLI's exit status."""

    exit_code: int
    status: str
    run_dir: str
    plan: LaunchPlan
    summary: RunSummary | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def versions() -> dict[str, str | None]:
    """Python, MindSpore (read from package metadata; MindSpore is not imported) and wrn-launch."""
    def dist(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None
    import wrn
    return {"python": platform.python_version(), "mindspore": dist("mindspore"),
            "wrn-launch": dist("wrn-launch") or wrn.__version__}


def local_host_name() -> str:
    """This host's short name as used in log file names."""
    name = socket.gethostname().split(".")[0] or "localhost"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def _usable_cpus() -> tuple[int, ...]:
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return tuple(range(os.cpu_count() or 1))


def _resolve_backend(opts: LaunchOptions, cfg: TrainConfig) -> tuple[str, str]:
    """(backend, how it was chosen)."""
    wanted = cfg.device_target
    if opts.backend != "auto":
        if wanted != "auto" and wanted != DEVICE_TARGET[opts.backend]:
            raise LaunchError(f"--backend {opts.backend} contradicts device_target: {wanted} in the "
                              f"config; drop one of them, or set --set device_target=auto")
        return opts.backend, "--backend"
    if wanted != "auto":
        return {v: k for k, v in DEVICE_TARGET.items()}[wanted], "device_target in the config"
    if opts.rank_table is not None:
        return "ascend", "--rank-table"  # an HCCL table means Ascend unless told otherwise
    return detect_backend(opts.dev_dir), "detected"


def _rank_table_share(opts: LaunchOptions) -> tuple[RankTable, int]:
    """Read ``--rank-table`` (every problem reported at once) and find this host's server in
    it: ``--server-ip``, else this host's addresses, else the device IPs of its hccn.conf."""
    table = read_table(opts.rank_table)
    conf = None
    if opts.server_ip is None:
        try:
            conf = read_hccn_conf(opts.hccn_conf)
        except PlanError:
            conf = None  # a broken hccn.conf only matters if the table's IPs do not match
    index = find_local_server(table, server_ip=opts.server_ip, host_ips=local_ips(),
                              hccn_ips=conf, hccn_source=opts.hccn_conf)
    return table, index


def _table_scheduler_port(opts: LaunchOptions, table: RankTable,
                          index: int) -> tuple[PortReservation | None, str]:
    """CPU/GPU run of a rank table: (scheduler port, this host's address).

    One server: like ``--devices``, a free port on 127.0.0.1. Several servers: every server's
    launch must name the same ``--port``; the server holding rank 0 starts the scheduler there
    (its port is checked and held), the others only connect to it.
    """
    server = table.servers[index]
    if len(table.servers) == 1:
        port = reserve_port(opts.port, opts.port_range) if table.world_size > 1 else None
        return port, "127.0.0.1"
    if opts.port is None:
        raise LaunchError(f"--rank-table {opts.rank_table} lists {len(table.servers)} servers: on "
                          f"CPU/GPU their workers meet at one scheduler on the server with rank 0, "
                          f"so pass the same --port P to the launch on every server")
    if table.first_rank(index) == 0:
        return reserve_port(opts.port, opts.port_range), server.server_id
    return PortReservation(opts.port), server.server_id  # the scheduler is elsewhere: hold nothing


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


def _check_data(cfg: TrainConfig, dry_run: bool, warnings: list[str]) -> None:
    try:
        from wrn.data import check_data_path
    except ImportError:
        return  # the data module is optional for the launcher; the worker checks again
    try:
        check_data_path(cfg.data_path)
    except ConfigError as exc:
        if not dry_run:
            raise LaunchError(str(exc)) from None
        warnings.append(str(exc))


def prepare(opts: LaunchOptions) -> Prepared:
    """Check everything and compute the plan; raises ``LaunchError``, creates nothing.

    A dry run is lenient where the host differs from the target (no such devices here, no
    hccn.conf, data path missing): those become warnings and placeholders.
    """
    try:
        return _prepare(opts)
    except (PlanError, ConfigError) as exc:
        raise LaunchError(str(exc)) from None


def _resume_source(opts: LaunchOptions) -> tuple[Path | None, dict[str, Any]]:
    """The run directory to resume and its run.json (empty when not resuming)."""
    if opts.resume is None:
        return None, {}
    from launcher.runs import RunDirError, read_run_info

    try:
        run_dir, previous = read_run_info(opts.resume)
    except RunDirError as exc:
        raise LaunchError(f"--resume: {exc}") from None
    run_dir = run_dir.resolve()
    if previous.get("status") == "running":
        raise LaunchError(f"--resume {opts.resume}: run.json says the run is still running; stop it "
                          f"first (or, if its launcher was killed, check that none of the pids in "
                          f"run.json is alive and set \"status\" to \"failed\")")
    return run_dir, previous


def _check_same_maths(run_dir: Path, cfg: TrainConfig) -> None:
    """Refuse, before anything starts, a resume whose config changes the maths of the run."""
    from wrn.checkpoint import MATH_FIELDS, config_hash

    try:
        latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no checkpoint yet: the run starts from scratch
    saved = latest.get("config_hash")
    if saved and saved != config_hash(cfg.to_dict()):
        raise LaunchError(f"--resume {run_dir}: the config differs from the one its checkpoints "
                          f"were trained with in fields that change the maths (any of "
                          f"{', '.join(MATH_FIELDS)}); drop those --set overrides, or add --force "
                          f"to continue with the new values anyway")


def _launch_env(opts: LaunchOptions) -> dict[str, str]:
    """Environment the launch adds to every worker: allow-listed variables of this shell (for
    remote hosts), then ``--env-file``, then ``--env`` (later wins)."""
    from cluster.hosts import forwarded_env, parse_env_assignments, parse_env_file

    env = forwarded_env(os.environ) if opts.multi_host else {}
    if opts.env_file:
        try:
            text = Path(opts.env_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise LaunchError(f"--env-file {opts.env_file}: cannot read it ({exc.strerror}); pass "
                              f"a file of NAME=VALUE lines") from None
        env.update(parse_env_file(text, opts.env_file))
    env.update(parse_env_assignments(opts.env))
    return env


def _prepare(opts: LaunchOptions) -> Prepared:
    sup = opts.supervisor_options()  # validates the timings
    if opts.multi_host:
        return _prepare_hosts(opts, sup)
    if opts.rank_table is not None and opts.devices is not None:
        raise LaunchError(f"--rank-table {opts.rank_table} already says which devices this host "
                          f"runs; drop --devices {opts.devices}")
    resume_dir, previous = _resume_source(opts)
    for flag, path in (("--resume-ckpt", opts.resume_ckpt), ("--pretrained", opts.pretrained)):
        if path and not Path(path).is_file():
            raise LaunchError(f"{flag} {path}: no such checkpoint file; pass the path of a .ckpt "
                              f"file (e.g. RUN_DIR/checkpoints/<name>.ckpt)")
    config_path = opts.config
    if resume_dir is not None and config_path is None:
        config_path = str(resume_dir / CONFIG_NAME)
    cfg = load_config(config_path, opts.overrides)
    if resume_dir is not None and not opts.force:
        _check_same_maths(resume_dir, cfg)
    if resume_dir is not None and opts.devices is None:
        devices = str((previous.get("plan") or {}).get("world_size") or 1)
    else:
        devices = opts.devices or "1"
    opts = dataclasses.replace(opts, devices=devices, config=config_path)
    backend, how = _resolve_backend(opts, cfg)
    wanted = parse_devices(opts.devices)
    warnings: list[str] = []
    available = list_devices(backend, opts.dev_dir)
    label = backend_label(backend)
    if available is not None and not available:
        node_glob = {"ascend": "/dev/davinci<N>", "gpu": "/dev/nvidia<N> or nvidia-smi -L"}[backend]
        if not opts.dry_run:
            raise LaunchError(f"the {label} backend was chosen ({how}) but this host has no {label} "
                              f"devices (looked for {node_glob}); run on a host that has them, use "
                              f"--backend cpu, or add --dry-run to only see the plan")
        warnings.append(f"this host has no {label} devices; the plan uses the device ids as asked "
                        f"(dry run)")
        available = None
    share = _rank_table_share(opts) if opts.rank_table else None
    if share is not None:
        device_ids = _table_devices(*share, available, backend, opts.rank_table)
    else:
        device_ids = wanted.resolve(available, backend)
    cfg = cfg.replace(device_target=DEVICE_TARGET[backend])
    _check_data(cfg, opts.dry_run, warnings)

    explicit = opts.run_dir is not None or resume_dir is not None
    if resume_dir is not None:
        run_dir = resume_dir
    elif explicit:
        run_dir = Path(opts.run_dir).expanduser().resolve()
        check_run_dir(run_dir)
    else:
        run_dir = default_run_dir(opts.runs_root, check_run_name(opts.name or cfg.checkpoint_name))

    host = local_host_name()
    ips: dict[str, dict[int, str]] = {}
    port = None
    hccl_env: dict[str, str] = {}
    if backend == "ascend":
        hccl_env, hccl_warnings = hccl_timeout_env(opts.hccl_connect_timeout, opts.hccl_exec_timeout)
        warnings += hccl_warnings
    elif opts.hccl_connect_timeout is not None or opts.hccl_exec_timeout is not None:
        warnings.append(f"--hccl-connect-timeout / --hccl-exec-timeout only apply to Ascend; "
                        f"ignored on {label}")
    if backend == "ascend" and share is not None:
        server = share[0].servers[share[1]]
        ips[host] = {d.device_id: d.device_ip for d in server.devices}
        address = server.server_id
    elif backend == "ascend":
        conf = read_hccn_conf(opts.hccn_conf)
        ips[host], ip_warnings = device_ips(device_ids, conf, opts.hccn_conf, opts.dry_run)
        warnings += ip_warnings
        address = primary_ip()
    elif share is not None:
        port, address = _table_scheduler_port(opts, *share)
    else:
        if len(device_ids) > 1:  # a single CPU/GPU worker runs standalone, without a scheduler
            port = reserve_port(opts.port, opts.port_range)
        address = "127.0.0.1"
    try:
        worker_cmd = opts.worker_cmd or (sys.executable, "-m", "wrn.train")
        scheduler_cmd = None
        if opts.start_scheduler:
            scheduler_cmd = opts.scheduler_cmd or (sys.executable, "-m", "wrn.scheduler")
        cpus = _usable_cpus()
        request = PlanRequest(
            backend=backend, nodes=(Node(host, address, device_ids, cpus),), run_dir=str(run_dir),
            cwd=os.getcwd(), worker_cmd=worker_cmd, scheduler_cmd=scheduler_cmd,
            sched_port=port.port if port else None, threads_per_worker=opts.threads_per_worker,
            bind_cores=opts.bind_cores, verbose_mindspore=opts.verbose_mindspore, device_ips=ips,
            extra_env={"PYTHONPATH": python_path(os.environ.get("PYTHONPATH")), **hccl_env,
                       **_launch_env(opts)},
            worker_args=_worker_args(opts, run_dir, attempt=0),
            rank_table=share[0] if share else None, table_server=share[1] if share else 0)
        plan = make_plan(request)
    except BaseException:
        if port is not None:
            port.release()
        raise
    plan = dataclasses.replace(plan, warnings=tuple(warnings) + plan.warnings)
    notes = {"chosen": how, "devices": f"{format_ids(device_ids)} ({len(device_ids)} worker(s))",
             "cores": f"{len(cpus)} usable", "run dir": str(run_dir) + ("" if explicit else " (default)"),
             "config": f"{opts.config or 'configs/default.yaml'} -> {run_dir / CONFIG_NAME}",
             "grace": f"{sup.grace:g} s, stall warning {sup.stall_timeout:g} s, stall kill "
                      f"{sup.stall_kill:g} s, startup {sup.startup_timeout:g} s"}
    if resume_dir is not None:
        notes["resume"] = f"continuing {resume_dir} from its newest valid checkpoint"
    if share is not None:
        table, index = share
        first = table.first_rank(index)
        notes["rank table"] = (f"{opts.rank_table}: this host is server "
                               f"{table.servers[index].server_id} ({index + 1} of "
                               f"{len(table.servers)}), ranks {first}-{first + len(device_ids) - 1} "
                               f"of {table.world_size}")
    if opts.max_restarts:
        notes["restarts"] = f"up to {opts.max_restarts}, each from the newest valid checkpoint"
    return Prepared(opts, cfg, plan, run_dir, explicit, request, tuple(warnings), notes, port,
                    previous)


def _prepare_hosts(opts: LaunchOptions, sup: SupervisorOptions) -> Prepared:
    """``_prepare`` for --hostfile/--hosts: parse hosts, pre-flight all of them over SSH in
    parallel, plan; raises ``LaunchError`` (after closing every connection) on any failure."""
    from cluster.hosts import mask_env, parse_hosts_flag, read_hostfile
    from cluster.ranktable.build import merged_rank_table
    from launcher.multihost import adjust_plan, prepare_hosts, read_remote_hccn
    from launcher.ssh import SSHSettings

    specs = read_hostfile(opts.hostfile) if opts.hostfile else parse_hosts_flag(opts.hosts)
    env = _launch_env(opts)
    cfg = load_config(opts.config, opts.overrides)
    backend, how = _resolve_backend(opts, cfg)
    cfg = cfg.replace(device_target=DEVICE_TARGET[backend])
    world = sum(s.slots for s in specs)
    if opts.run_dir is not None:
        run_dir = Path(opts.run_dir).expanduser().resolve()
        check_run_dir(run_dir)
    else:
        run_dir = default_run_dir(opts.runs_root, check_run_name(opts.name or cfg.checkpoint_name))
    port = reserve_port(opts.port, opts.port_range) if world > 1 and backend != "ascend" else None
    settings = SSHSettings(config_path=opts.ssh_config, known_hosts=opts.ssh_known_hosts,
                           accept_new=opts.ssh_accept_new, timeout=opts.ssh_timeout)
    try:
        ready = prepare_hosts(specs, settings, versions(), backend, cfg.data_path,
                              port.port if port else None, os.getcwd(),
                              remote_run_dir=opts.remote_run_dir, dev_dir=opts.dev_dir)
    except PlanError as exc:
        if port is not None:
            port.release()
        raise LaunchError(str(exc)) from None
    except BaseException:
        if port is not None:
            port.release()
        raise
    warnings: list[str] = []
    try:
        table, ips, hccl_env = None, {}, {}
        if backend == "ascend":  # every host's hccn.conf over SFTP -> one merged rank table
            confs = {n.host: read_remote_hccn(ready.transport.clients[n.host], n.host,
                                              opts.hccn_conf) for n in ready.nodes}
            servers, table, warnings = merged_rank_table(ready.nodes, confs, opts.hccn_conf,
                                                         opts.dry_run)
            ips = {n.host: {d.device_id: d.device_ip for d in server.devices}
                   for n, server in zip(ready.nodes, servers)}
            hccl_env, hccl_warnings = hccl_timeout_env(opts.hccl_connect_timeout,
                                                       opts.hccl_exec_timeout)
            warnings += hccl_warnings
        worker_cmd = opts.worker_cmd or (sys.executable, "-m", "wrn.train")
        scheduler_cmd = None
        if opts.start_scheduler:
            scheduler_cmd = opts.scheduler_cmd or (sys.executable, "-m", "wrn.scheduler")
        request = PlanRequest(
            backend=backend, nodes=ready.nodes, run_dir=str(run_dir), cwd=os.getcwd(),
            worker_cmd=worker_cmd, scheduler_cmd=scheduler_cmd,
            sched_port=port.port if port else None, threads_per_worker=opts.threads_per_worker,
            bind_cores=opts.bind_cores, verbose_mindspore=opts.verbose_mindspore,
            device_ips=ips, extra_env={**hccl_env, **env},
            worker_args=_worker_args(opts, run_dir, attempt=0))
        plan = adjust_plan(make_plan(request), ready.hosts)
        if table is not None:  # the merged table (server ids resolved to IPs) is the one used
            plan = dataclasses.replace(plan, rank_table=table)
        plan = dataclasses.replace(plan, warnings=tuple(warnings) + plan.warnings)
    except PlanError as exc:
        ready.transport.shutdown()
        if port is not None:
            port.release()
        raise LaunchError(str(exc)) from None
    except BaseException:
        ready.transport.shutdown()
        if port is not None:
            port.release()
        raise
    notes = {"chosen": how, "hosts": ", ".join(f"{n.host} ({len(n.device_ids)})" for n in ready.nodes),
             "master": f"{ready.nodes[0].host} (scheduler {ready.nodes[0].address}:"
                       f"{port.port if port else '-'})",
             "run dir": str(run_dir), "env": ", ".join(f"{k}={v}" for k, v in mask_env(env).items())
             or "-",
             "grace": f"{sup.grace:g} s"}
    if table is not None:
        notes["rank table"] = (f"merged from each host's {opts.hccn_conf}: {len(ready.nodes)} "
                               f"servers, {plan.world_size} ranks; placed in every host's run "
                               f"directory")
    return Prepared(opts, cfg, plan, run_dir, opts.run_dir is not None, request, tuple(warnings),
                    notes, port, {}, ready.transport, ready.hosts, env)


def _failure_reason(summary: RunSummary) -> str:
    cause = summary.root_cause
    if cause is None:
        return summary.note or "a worker failed"
    return f"{cause.who} on {cause.host}: {cause.reason}"


def _attempt_record(run_json: dict[str, Any], number: int, outcome: str,
                    reason: str | None = None) -> dict[str, Any]:
    """What run.json keeps of an earlier attempt: times, status, processes, root cause."""
    keep = ("status", "start_time", "end_time", "exit_code", "processes", "root_cause", "summary")
    record = {"attempt": number, "outcome": outcome, "logs": f"logs/attempt-{number}"}
    record.update({k: run_json.get(k) for k in keep if k in run_json})
    if reason:
        record["restart_reason"] = reason
    return record


def _archive_logs(run_dir: Path, number: int) -> None:
    """Move the logs of attempt ``number`` to logs/attempt-<number>/ (kept, never overwritten)."""
    logs = run_dir / "logs"
    if not logs.is_dir():
        return
    target = logs / f"attempt-{number}"
    target.mkdir(exist_ok=True)
    for item in logs.iterdir():
        if item.is_file():
            os.replace(item, target / item.name)


def _worker_args(opts: LaunchOptions, run_dir: Path, attempt: int) -> tuple[str, ...]:
    """Worker flags for an attempt: the first starts from --resume-ckpt/--pretrained (or, for
    --resume, from the run's checkpoints); a restart continues from the newest valid one."""
    args: list[str] = []
    if attempt > 0 or opts.resume is not None:
        args += ["--resume-from", str(run_dir / "checkpoints")]
    elif opts.resume_ckpt:
        args += ["--resume-ckpt", str(Path(opts.resume_ckpt).resolve())]
    if opts.pretrained and attempt == 0 and opts.resume is None:
        args += ["--pretrained", str(Path(opts.pretrained).resolve())]
    if opts.force:
        args.append("--force")
    return tuple(args)


def launch(options: LaunchOptions | None = None, *, renderer: Renderer | None = None,
           **kwargs: Any) -> LaunchResult:
    """Launch a run (or show its plan) and return when it is over.

    Pass a ``LaunchOptions`` or its fields as keyword arguments, e.g.
    ``launch(devices="2", overrides=("epoch_size=1",))``. Raises ``LaunchError`` on bad input
    (nothing started then); every other outcome is in the result.
    """
    opts = options if options is not None else LaunchOptions(**kwargs)
    if options is not None and kwargs:
        raise TypeError("pass either a LaunchOptions or keyword arguments, not both")
    ui = renderer or make_renderer()
    prepared = prepare(opts)
    try:
        plan = prepared.plan
        if opts.dry_run:
            ui.show_plan(plan, prepared.notes)
            return LaunchResult(0, "dry-run", str(prepared.run_dir), plan)
        resuming = opts.resume is not None
        try:
            run_dir = prepared.run_dir if resuming else create_run_dir(prepared.run_dir,
                                                                       prepared.explicit_run_dir)
        except PlanError as exc:
            raise LaunchError(str(exc)) from None
        except OSError as exc:
            raise LaunchError(f"cannot create the run directory {prepared.run_dir}: {exc.strerror}; "
                              f"pass a writable --run-dir") from None
        if run_dir != prepared.run_dir:  # a default name that was taken got a suffix
            plan = prepared.plan_for(run_dir)
        dump_config(prepared.config, run_dir / CONFIG_NAME)
        if plan.rank_table:
            (run_dir / RANK_TABLE_NAME).write_text(plan.rank_table, encoding="utf-8")
        fetcher = None
        if prepared.transport is not None:
            from launcher.multihost import output_fetcher, share_run_dir
            shared = share_run_dir(run_dir, prepared.transport)
            prepared.notes["run dir on hosts"] = ", ".join(f"{h}: {how}" for h, how in shared.items())
            fetcher = output_fetcher(plan, run_dir, prepared.transport, shared)
            if fetcher is not None:
                prepared.notes["rank 0 outputs"] = f"copied back from {fetcher.host} over SFTP"
        attempts: list[dict[str, Any]] = list(prepared.previous.get("attempts") or [])
        if resuming:
            attempts.append(_attempt_record(prepared.previous, len(attempts) + 1, "ended"))
            _archive_logs(run_dir, len(attempts))
        try:
            restarts = 0
            while True:
                run_info = {"format": 1, "command": mask_command(opts.command) or None, "cwd": os.getcwd(),
                            "versions": versions(), "backend": plan.backend,
                            "plan": masked_plan(plan.to_dict()), "env": mask_env(prepared.env),
                            "config": str(run_dir / CONFIG_NAME),
                            "rank_table": str(run_dir / RANK_TABLE_NAME) if plan.rank_table else None,
                            "attempt": len(attempts) + 1, "attempts": attempts,
                            "max_restarts": opts.max_restarts}
                files = RunFiles(run_dir)
                try:
                    supervisor = Supervisor(plan, files, ui, prepared.transport or LocalTransport(),
                                            opts.supervisor_options(), run_info, prepared.notes,
                                            fetcher)
                    summary = supervisor.run()
                finally:
                    files.close()
                if summary.status != "failed" or restarts >= opts.max_restarts:
                    break
                restarts += 1
                reason = _failure_reason(summary)
                attempts.append(_attempt_record(json.loads((run_dir / RUN_JSON).read_text("utf-8")),
                                                len(attempts) + 1, "restarted", reason))
                _archive_logs(run_dir, len(attempts))
                ui.message("warning", f"restart {restarts} of {opts.max_restarts} from the newest "
                                      f"valid checkpoint: {reason}")
                plan = prepared.plan_for(run_dir, attempt=len(attempts))
        finally:
            if fetcher is not None:
                fetcher.close()  # every pending copy is done before the launcher returns
            ui.close()
        return LaunchResult(summary.exit_code, summary.status, str(run_dir), plan, summary)
    finally:
        prepared.release()

