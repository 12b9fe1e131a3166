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
from cluster.ranktable import DEFAULT_HCCN_CONF, device_ips, read_hccn_conf
from launcher.ports import DEFAULT_PORT_RANGE, PortReservation, reserve_port
from launcher.progress import RunSummary
from launcher.render import Renderer, make_renderer
from launcher.rundir import RunFiles, check_run_dir, check_run_name, create_run_dir, default_run_dir
from launcher.supervisor import Supervisor, SupervisorOptions
from launcher.transport import LocalTransport, python_path
from wrn.config import ConfigError, TrainConfig, dump_config, load_config

#: Backend choices of ``--backend``.
BACKEND_CHOICES = ("auto", "ascend", "gpu", "cpu")


class LaunchError(Exception):
    """Bad input found before anything started; ``str()`` is one paragraph (what, where, fix)."""

    exit_code = 2


@dataclass(frozen=True)
class LaunchOptions:
    """Everything ``launch`` accepts; mirrors the ``wrn-launch`` flags."""

    devices: str = "1"
    config: str | None = None
    overrides: tuple[str, ...] = ()
    backend: str = "auto"
    run_dir: str | None = None
    name: str | None = None
    runs_root: str = "runs"
    dry_run: bool = False
    grace: float = 3.0
    threads_per_worker: int | None = None
    bind_cores: bool = False
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

    def __post_init__(self) -> None:
        for name in ("overrides", "worker_cmd", "scheduler_cmd", "command", "port_range"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.backend not in BACKEND_CHOICES:
            raise LaunchError(f"--backend {self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.run_dir is not None and self.name is not None:
            raise LaunchError("--run-dir and --name both name the run directory; give only one")

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

    def plan_for(self, run_dir: Path) -> LaunchPlan:
        """The same plan for another run directory (a default name that was taken meanwhile)."""
        plan = make_plan(dataclasses.replace(self.request, run_dir=str(run_dir)))
        return dataclasses.replace(plan, warnings=self.warnings + plan.warnings)

    def release(self) -> None:
        if self.port is not None:
            self.port.release()


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


def local_address() -> str:
    """This host's primary IPv4 address (the rank table's server_id), else 127.0.0.1."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))  # no packet is sent; this only picks a route
            return sock.getsockname()[0]
    except OSError:
        pass
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


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
    return detect_backend(opts.dev_dir), "detected"


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


def _prepare(opts: LaunchOptions) -> Prepared:
    sup = opts.supervisor_options()  # validates the timings
    cfg = load_config(opts.config, opts.overrides)
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
    device_ids = wanted.resolve(available, backend)
    cfg = cfg.replace(device_target=DEVICE_TARGET[backend])
    _check_data(cfg, opts.dry_run, warnings)

    explicit = opts.run_dir is not None
    if explicit:
        run_dir = Path(opts.run_dir).expanduser().resolve()
        check_run_dir(run_dir)
    else:
        run_dir = default_run_dir(opts.runs_root, check_run_name(opts.name or cfg.checkpoint_name))

    host = local_host_name()
    ips: dict[str, dict[int, str]] = {}
    port = None
    if backend == "ascend":
        conf = read_hccn_conf(opts.hccn_conf)
        ips[host], ip_warnings = device_ips(device_ids, conf, opts.hccn_conf, opts.dry_run)
        warnings += ip_warnings
        address = local_address()
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
            extra_env={"PYTHONPATH": python_path(os.environ.get("PYTHONPATH"))})
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
    return Prepared(opts, cfg, plan, run_dir, explicit, request, tuple(warnings), notes, port)


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
        try:
            run_dir = create_run_dir(prepared.run_dir, prepared.explicit_run_dir)
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
        run_info = {"format": 1, "command": list(opts.command) or None, "cwd": os.getcwd(),
                    "versions": versions(), "backend": plan.backend, "plan": plan.to_dict(),
                    "config": str(run_dir / CONFIG_NAME),
                    "rank_table": str(run_dir / RANK_TABLE_NAME) if plan.rank_table else None}
        files = RunFiles(run_dir)
        try:
            supervisor = Supervisor(plan, files, ui, LocalTransport(), opts.supervisor_options(),
                                    run_info, prepared.notes)
            summary = supervisor.run()
        finally:
            files.close()
            ui.close()
        return LaunchResult(summary.exit_code, summary.status, str(run_dir), plan, summary)
    finally:
        prepared.release()

