"""From a ``LaunchConfig`` to a checked launch: ``prepare(config) -> (LaunchInputs, HeldResources)``.

Every check that can fail on bad input runs here and raises one ``LaunchError`` (a paragraph)
before anything is created or started: the training config, the resume source, the device
backend, the nodes (found and pre-flighted by the chosen backend: ``launcher.backends``), the
data path, rank-table inputs, the scheduler port, the run directory, the first plan. The result
is a value (``LaunchInputs``: what every attempt's plan is made from) and what the launch holds
(``HeldResources``: the backend's connections, the scheduler port, the run directory's lock),
released at once when a check fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from cluster.devices import DEVICE_TARGET, backend_label, detect_backend, gpu_problem
from cluster.errors import PlanError
from cluster.hccl_env import hccl_timeout_env
from cluster.hosts import (
    HostSpec,
    forwarded_env,
    mask_env,
    parse_env_assignments,
    parse_env_file,
    parse_hosts_flag,
    read_hostfile,
    select_hosts,
)
from cluster.plan import CONFIG_NAME, LaunchPlan, PlanRequest
from launcher.backends import backend_class, chosen
from launcher.backends.base import DiscoveryRequest, module_argv, python_path
from launcher.config import LaunchConfig, LaunchError
from launcher.rundir.layout import RunDirBusy, RunDirLock, check_run_dir, check_run_name, default_run_dir
from launcher.rundir.record import RunRecord
from launcher.session.inputs import HOSTFILE_NAME, LaunchInputs
from launcher.session.resources import HeldResources
from wrn.config import DEFAULT_CONFIG, ConfigError, TrainConfig, load_config
from wrn.contract import FAULT_ENV
from wrn.faults import check_ranks, parse_faults
from wrn.fileio import expand_user


def prepare(config: LaunchConfig) -> tuple[LaunchInputs, HeldResources]:
    """Check everything and compute what the plans are made from; raises ``LaunchError`` and
    creates nothing (what was taken meanwhile is released). A dry run is lenient where the host
    differs from the target (no such devices here, no hccn.conf, data path missing): those
    become warnings and placeholders."""
    held = HeldResources()
    try:
        return _prepare(config, held), held
    except BaseException as exc:
        held.close()
        if isinstance(exc, (PlanError, ConfigError)):
            raise LaunchError(str(exc)) from None
        raise


def _prepare(config: LaunchConfig, held: HeldResources) -> LaunchInputs:
    resume_dir, previous = _resume_source(config, held)
    for flag, path in (("--resume-ckpt", config.resume_ckpt), ("--pretrained", config.pretrained)):
        if path:
            _check_checkpoint(flag, path)
    config_file = config.config_file
    if resume_dir is not None and config_file is None:
        config_file = str(resume_dir / CONFIG_NAME)
    cfg = load_config(config_file, config.overrides)
    if resume_dir is not None and not config.force:
        _check_same_maths(resume_dir, cfg)
    target, how = _resolve_backend(config, cfg)
    if config.standby and target != "cpu":
        raise LaunchError(f"--standby runs a second set of workers next to the running ones, "
                          f"which is built and tested for CPU workers only; the backend is "
                          f"{backend_label(target)} ({how}): pass --backend cpu, or drop "
                          f"--standby")
    if config.standby and config.launcher == "auto" and config.slurm(os.environ):
        raise LaunchError(f"--standby is not built for a launch through Slurm, and this one "
                          f"is (SLURM_JOB_ID={os.environ.get('SLURM_JOB_ID')} is set and no "
                          f"--devices or --hosts says otherwise): drop --standby, or give "
                          f"--devices N (this node only) or --hosts to launch without Slurm")
    cfg = cfg.replace(device_target=DEVICE_TARGET[target])
    env, secret_names = _launch_env(config)
    specs = _host_specs(config, resume_dir)

    explicit = config.run_dir is not None or resume_dir is not None
    if resume_dir is not None:
        run_dir = resume_dir
    elif config.run_dir is not None:
        run_dir = expand_user(config.run_dir).resolve()
        check_run_dir(run_dir)
    else:
        run_dir = default_run_dir(config.runs_root, check_run_name(config.name or cfg.checkpoint_name))

    warnings, hccl_env = _hccl(config, target)
    request = DiscoveryRequest(config, cfg, target, how, run_dir, tuple(specs or ()), previous)
    found = backend_class(chosen(config, os.environ, specs is not None)).discover(request, held)
    warnings += found.warnings
    worker_cmd = config.worker_cmd or module_argv(sys.executable, "wrn.train")
    scheduler_cmd = None
    if config.start_scheduler:
        scheduler_cmd = config.scheduler_cmd or tuple(module_argv(sys.executable, "wrn.scheduler"))
    extra_env = {**hccl_env, **env, **held.backend.worker_env()}
    if specs is None and python_path(os.environ.get("PYTHONPATH")):
        extra_env = {"PYTHONPATH": python_path(os.environ.get("PYTHONPATH")), **extra_env}
    share = found.rank_table
    plan_request = PlanRequest(
        backend=target, nodes=found.nodes, run_dir=str(run_dir), cwd=os.getcwd(),
        worker_cmd=tuple(worker_cmd), scheduler_cmd=scheduler_cmd, sched_port=held.port_number,
        threads_per_worker=config.threads_per_worker, bind_cores=config.bind_cores,
        verbose_mindspore=config.verbose_mindspore, device_ips=found.device_ips,
        extra_env=extra_env, python=sys.executable, secret_names=secret_names,
        rank_table=share[0] if share else None, table_server=share[1] if share else 0,
        ascend_startup=config.ascend_startup, hccl_rank_table=config.hccl_rank_table,
        device_cpus=found.device_cpus)
    inputs = LaunchInputs(config, cfg, plan_request, run_dir, explicit, previous, tuple(specs or ()),
                          env, tuple(warnings), {"chosen": how, **found.notes},
                          rescan_token=f"{time.time_ns():x}" if config.rescan else None)
    plan = inputs.plan(0, held.port_number)  # every plan-level check runs now, before anything starts
    _check_named_ranks(config, env, plan.world_size)
    return dataclasses.replace(inputs, notes={**inputs.notes,
                                              **_notes(inputs, plan, config_file, resume_dir)})


def _check_checkpoint(flag: str, path: str) -> None:
    """``--resume-ckpt``/``--pretrained`` name a whole checkpoint file."""
    if not Path(path).is_file():
        raise LaunchError(f"{flag} {path}: no such checkpoint file; pass the path of a .ckpt "
                          f"file (e.g. RUN_DIR/checkpoints/<name>.ckpt)")
    from wrn.checkpoint import scan_checkpoint

    try:
        scan_checkpoint(path)  # structure and CRC, in constant memory, no MindSpore
    except OSError as exc:
        raise LaunchError(f"{flag} {path}: not a readable checkpoint ({exc}); pass a "
                          f"complete .ckpt file written with a CRC (as every run's "
                          f"RUN_DIR/checkpoints/<name>.ckpt is), e.g. an earlier one of "
                          f"that run if this one was cut short") from None


def _hccl(config: LaunchConfig, target: str) -> tuple[list[str], dict[str, str]]:
    """(warnings, HCCL timeouts for the workers): Ascend's, or a warning that they are ignored."""
    if target == "ascend":
        hccl_env, warnings = hccl_timeout_env(config.hccl_connect_timeout, config.hccl_exec_timeout)
        return list(warnings), hccl_env
    warnings = []
    if config.hccl_connect_timeout is not None or config.hccl_exec_timeout is not None:
        warnings.append(f"--hccl-connect-timeout / --hccl-exec-timeout only apply to Ascend; "
                        f"ignored on {backend_label(target)}")
    if config.hccl_rank_table or config.ascend_startup != "dynamic":
        warnings.append(f"--hccl-rank-table / --ascend-startup only apply to Ascend; "
                        f"ignored on {backend_label(target)}")
    return warnings, {}


# -- inputs ------------------------------------------------------------------------------------------
def _resume_source(config: LaunchConfig, held: HeldResources) -> tuple[Path | None, RunRecord | None]:
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
        held.lock = RunDirLock(run_dir).acquire()
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


def _notes(prepared: LaunchInputs, plan: LaunchPlan, config_file: str | None,
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
