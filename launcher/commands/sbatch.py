"""``wrn-launch sbatch``: a run as a Slurm batch job.

    wrn-launch sbatch --nodes N [--devices-per-node K] [--partition P] [--time T] [--account A]
                      [--requeue] [--sbatch-arg ARG ...] [--no-submit] -- [launch args]

The run directory is chosen now (``--run-dir``/``--name`` among the launch args, else the default
``runs/<name>-<time>``) and gets the resolved training config (``config.yaml``) and a readable
batch script (``job.sbatch``): ``#SBATCH`` lines, then this shell's working directory and
interpreter running ``wrn-launch`` with the launch args inside the allocation (``--launcher
slurm``). A job that runs again (``--requeue``: preempted, requeued, node failure) finds the
run's ``run.json`` and continues that run (``--resume RUN``) from its newest checkpoint, so no
user action is needed. The job id goes into ``slurm.json`` (``wrn-launch runs`` shows it and the
job's state); the command prints the job id and the run directory and returns.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from launcher import PROG
from launcher.backends.base import source_root
from launcher.commands import COMMANDS, launch
from launcher.commands.common import Parser, error, positive_int
from launcher.rundir.layout import BATCH_SCRIPT, SLURM_JSON, check_run_dir, check_run_name, default_run_dir
from wrn.fileio import expand_user, write_atomic

HELP = "run as a Slurm batch job"
DESCRIPTION = ("Run a launch as a Slurm batch job: write RUN/job.sbatch (and the resolved "
               "config), submit it with sbatch, print the job id and the run directory. The "
               "launch args after -- are those of a plain wrn-launch.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch sbatch``."""
    p.add_argument("--nodes", type=positive_int, required=True, metavar="N",
                   help="nodes of the job (#SBATCH --nodes)")
    p.add_argument("--devices-per-node", type=positive_int, metavar="K",
                   help="devices (workers) per node (#SBATCH --ntasks-per-node; default 1)")
    p.add_argument("--partition", metavar="P", help="#SBATCH --partition")
    p.add_argument("--time", metavar="T", help="time limit (#SBATCH --time, e.g. 2:00:00)")
    p.add_argument("--account", metavar="A", help="#SBATCH --account")
    p.add_argument("--requeue", action="store_true", help="let Slurm requeue the job "
                   "(preemption, node failure); the requeued job continues the same run dir")
    p.add_argument("--sbatch-arg", action="append", default=[], metavar="ARG",
                   help="one more #SBATCH line, e.g. --sbatch-arg=--signal=B:USR1@120 "
                        "(repeatable)")
    p.add_argument("--no-submit", action="store_true", help="only write the script")
    p.add_argument("launch_args", nargs=argparse.REMAINDER, metavar="-- LAUNCH ARGS",
                   help="flags of the launch (as for wrn-launch itself)")


class SbatchError(Exception):
    """Bad input of ``wrn-launch sbatch``; ``str()`` is one paragraph."""


def _split_run_dir(args: Sequence[str]) -> tuple[list[str], str | None, str | None]:
    """(launch args without --run-dir/--name, the --run-dir, the --name)."""
    rest: list[str] = []
    found = {"--run-dir": None, "--name": None}
    it = iter(args)
    for arg in it:
        flag, eq, value = arg.partition("=")
        if flag in found:
            if not eq:
                value = next(it, None)
                if value is None:
                    raise SbatchError(f"{flag} needs a value among the launch args")
            found[flag] = value
        else:
            rest.append(arg)
    return rest, found["--run-dir"], found["--name"]


def _sbatch_lines(args: argparse.Namespace, run_dir: Path) -> list[str]:
    lines = [f"--job-name=wrn-{run_dir.name}", f"--nodes={args.nodes}",
             f"--ntasks-per-node={args.devices_per_node or 1}",
             f"--output={run_dir}/slurm-%j.out", "--open-mode=append",
             "--requeue" if args.requeue else "--no-requeue"]
    for flag in ("partition", "time", "account"):
        if getattr(args, flag):
            lines.append(f"--{flag}={getattr(args, flag)}")
    return lines + list(args.sbatch_arg)


def batch_script(args: argparse.Namespace, launch_args: Sequence[str], run_dir: Path,
                 config_text: str) -> str:
    """The text of ``job.sbatch``."""
    q = shlex.quote
    python = [sys.executable, "-P", "-m", "launcher.cli"]
    per_node = ["--devices-per-node", str(args.devices_per_node)] if args.devices_per_node else []
    common = " ".join(q(a) for a in ["--launcher", "slurm", *per_node, *launch_args])
    root = source_root()
    lines = ["#!/bin/bash", f"# {PROG} run {run_dir}: written by '{PROG} sbatch', submitted with "
             f"'sbatch {run_dir / BATCH_SCRIPT}'"]
    lines += [f"#SBATCH {line}" for line in _sbatch_lines(args, run_dir)]
    lines += ["", "# the resolved training config (also in config.yaml):"]
    lines += [f"#   {line}" for line in config_text.splitlines()]
    lines += ["", "set -e", f"cd {q(os.getcwd())}"]
    if root:
        lines.append(f"export PYTHONPATH={q(root)}${{PYTHONPATH:+:$PYTHONPATH}}")
    lines += [f"RUN={q(str(run_dir))}",
              "# a requeued (or restarted) job continues its run from the newest checkpoint",
              'if [ -f "$RUN/run.json" ]; then',
              f'    exec {" ".join(q(a) for a in python)} --resume "$RUN" {common}',
              "fi",
              f'exec {" ".join(q(a) for a in python)} --run-dir "$RUN" --config "$RUN/config.yaml" '
              f'{common}', ""]
    return "\n".join(lines)


def _resolved_config(launch_args: Sequence[str]):
    """The training config the launch args name (file + overrides), and the parsed config."""
    from wrn.config import load_config, split_modelzoo_args

    overrides, rest = split_modelzoo_args(list(launch_args))
    if rest and rest[0] in COMMANDS:
        raise SbatchError(f"the launch args name the command {rest[0]!r}; after -- give the "
                          f"flags of a launch")
    parser = Parser(prog=f"{PROG} sbatch ... --")
    launch.add_arguments(parser)
    config = launch.launch_config(parser.parse_args(rest), overrides, list(launch_args))
    return load_config(config.config_file, config.overrides), config


def _check_sbatch_values(args: argparse.Namespace) -> None:
    """``SbatchError`` for an #SBATCH value with a line break or another control character:
    written into job.sbatch it would end the #SBATCH line and run the rest as a command."""
    values = [(f"--{flag}", getattr(args, flag)) for flag in ("partition", "time", "account")]
    values += [("--sbatch-arg", value) for value in args.sbatch_arg]
    for flag, value in values:
        if value is not None and not value.isprintable():
            raise SbatchError(f"{flag} {value!r} holds a line break or another control character; "
                              f"give the value on one line")


def prepare_job(args: argparse.Namespace) -> tuple[Path, Path]:
    """Check the input, choose and fill the run directory; (run dir, script path)."""
    from wrn.config import dump_config

    _check_sbatch_values(args)
    launch_args = list(args.launch_args)
    if launch_args[:1] == ["--"]:
        launch_args = launch_args[1:]
    launch_args, run_dir_arg, name = _split_run_dir(launch_args)
    if run_dir_arg and name:
        raise SbatchError("--run-dir and --name both name the run directory; give only one")
    for bad in ("--hostfile", "--hosts", "--devices", "--rank-table", "--resume"):
        if any(a == bad or a.startswith(bad + "=") for a in launch_args):
            fix = "--devices-per-node K" if bad == "--devices" else "drop it"
            raise SbatchError(f"{bad} among the launch args of '{PROG} sbatch': a batch job runs "
                              f"on the nodes Slurm gives it ({fix})")
    cfg, config = _resolved_config([*launch_args, *(["--name", name] if name else [])])
    if run_dir_arg:
        run_dir = expand_user(run_dir_arg).resolve()
    else:
        run_dir = default_run_dir(config.runs_root, check_run_name(name or cfg.checkpoint_name))
    check_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "config.yaml")
    text = (run_dir / "config.yaml").read_text(encoding="utf-8")
    script = run_dir / BATCH_SCRIPT
    write_atomic(script, batch_script(args, launch_args, run_dir, text))
    os.chmod(script, 0o755)
    return run_dir, script


def submit(script: Path) -> str:
    """``sbatch --parsable SCRIPT``: the job id."""
    try:
        done = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True,
                              text=True, timeout=60)
    except FileNotFoundError:
        raise SbatchError("sbatch is not installed here; run on a Slurm login node, or use "
                          "--no-submit and submit the script elsewhere") from None
    if done.returncode != 0:
        raise SbatchError(f"sbatch {script} failed: {done.stderr.strip()[-400:]}; fix the "
                          f"#SBATCH options (--partition, --time, --account, --sbatch-arg)")
    return done.stdout.strip().split(";")[0]


def run(args: argparse.Namespace, stream=None) -> int:
    """``wrn-launch sbatch``; returns the exit status."""
    from cluster.errors import PlanError
    from launcher.config import LaunchError
    from wrn.config import ConfigError

    out = stream or sys.stdout
    try:
        run_dir, script = prepare_job(args)
        if args.no_submit:
            print(f"wrote {script} (not submitted; submit it with: sbatch {script})", file=out)
            return 0
        job = submit(script)
    except (SbatchError, LaunchError, PlanError, ConfigError) as exc:
        return error("sbatch", str(exc))
    write_atomic(run_dir / SLURM_JSON, json.dumps({"job_id": job, "script": str(script)}) + "\n")
    print(f"submitted Slurm job {job}", file=out)
    print(f"run dir {run_dir}", file=out)
    return 0
