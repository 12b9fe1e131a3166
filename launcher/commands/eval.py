"""``wrn-launch eval CKPT_OR_RUN_DIR [launch flags]``: evaluate a checkpoint through the same
launcher as training.

The evaluation is a launch whose workers run ``python -m wrn.eval``: the same devices, hosts,
Slurm allocation, pre-flight, dashboard and supervision as training, every rank scoring its
own shard of the test split and the counts summed exactly. Given a run directory, its best
evaluated complete checkpoint is used (else the newest complete one) and the choice is said.
The evaluation's own run directory is ``RUN/eval/<UTC time>/`` (a loose checkpoint:
``runs/eval-<name>-<UTC time>/``; ``--run-dir``/``--name`` choose another): run.json, logs/,
eval.json (top-1, top-5, the most confused pairs) and per_class.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from launcher import PROG
from launcher.commands import launch
from launcher.commands.common import error

HELP = "evaluate a checkpoint (or a run's best) on N devices, per class"
DESCRIPTION = ("Evaluate a checkpoint on the test split through the launcher: the same device, "
               "host and Slurm flags as training (--devices, --hostfile, inside an allocation). "
               "Reports top-1, top-5, per-class accuracy and the most confused class pairs, and "
               "writes them to the evaluation's run directory (RUN/eval/<time>/ by default: "
               "eval.json, per_class.csv). The checkpoint, the config and the data path must be "
               "readable on every host.")
#: Where the evaluations of a training run go inside its run directory.
EVAL_DIR = "eval"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of ``wrn-launch eval``: what to evaluate, then the launch flags that apply."""
    what = p.add_argument_group("what to evaluate")
    what.add_argument("target", metavar="CKPT_OR_RUN_DIR",
                      help="a checkpoint file, or a training run directory (its best evaluated "
                           "complete checkpoint, else its newest complete one)")
    what.add_argument("--config", dest="eval_config", metavar="FILE", default=None,
                      help="the training config (default: the run's config.yaml)")
    what.add_argument("--classes", metavar="FILE", default=None,
                      help="the training run's classes.json (default: the run's own)")
    what.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                      help="override a config key (repeatable), e.g. data_path=DIR or batch_size=64")
    launch.add_where_arguments(p)
    launch.add_run_dir_arguments(p, restarts=False)
    launch.add_supervision_arguments(p)
    launch.add_output_arguments(p)
    launch.add_ascend_arguments(p)
    launch.add_ssh_arguments(p)
    launch.add_testing_arguments(p, worker=False)


def _run_dir_value(args: argparse.Namespace, inputs: Any) -> dict[str, Any]:
    """``run_dir`` of the launch: RUN/eval/<UTC time> for a training run's checkpoint unless
    --run-dir or --name is given; a loose checkpoint's default name is eval-<its stem>."""
    from launcher.rundir.layout import default_run_dir

    if "run_dir" in args or "name" in args:
        return {}
    if inputs.run_dir is not None:
        return {"run_dir": str(default_run_dir(inputs.run_dir / EVAL_DIR, "eval"))}
    return {"name": f"eval-{inputs.checkpoint.stem}"}


def launch_values(args: argparse.Namespace, inputs: Any) -> dict[str, Any]:
    """The ``LaunchConfig`` fields of an evaluation: the launch flags given, the checkpoint's
    config, and ``python -m wrn.eval --ckpt ... --classes ...`` as the worker."""
    from launcher.backends.base import module_argv

    values = {k: v for k, v in vars(args).items()
              if k not in ("plain", "json", "command", "run", "argv", "target", "eval_config", "classes",
                           "overrides")}
    if "scheduler_cmd" in values:
        launch.scheduler_values(values)
    worker = (*module_argv(sys.executable, "wrn.eval"), "--ckpt", str(inputs.checkpoint),
              *(("--classes", str(inputs.classes)) if inputs.classes else ()))
    return {**values, **_run_dir_value(args, inputs), "config_file": str(inputs.config),
            "overrides": tuple(args.overrides), "worker_cmd": worker,
            "command": (PROG, *getattr(args, "argv", ()))}


def run(args: argparse.Namespace) -> int:
    """Evaluate; exit status 0, 1 when a worker failed, 2 bad input (nothing started)."""
    from cluster.errors import PlanError
    from launcher.api import launch as start
    from launcher.commands.common import output_console
    from launcher.config import LaunchConfig, LaunchError
    from launcher.rundir.checkpoints import CheckpointChoiceError, checkpoint_inputs
    from launcher.ui.evalview import show_eval
    from launcher.ui.renderers import make_renderer

    try:
        inputs = checkpoint_inputs(args.target, args.eval_config, args.classes)
        config = LaunchConfig.from_fields(**launch_values(args, inputs))
        renderer = make_renderer(sys.stdout, plain=args.plain, json_lines=args.json,
                                 tail_ranks=config.tail_ranks)
        if not args.json:
            print(f"evaluating {inputs.checkpoint} ({inputs.why})", flush=True)
        result = start(config, renderer=renderer)
    except (CheckpointChoiceError, LaunchError, PlanError) as exc:
        return error("eval", str(exc))
    if result.exit_code != 0 or config.dry_run:
        return result.exit_code
    run_dir = Path(result.run_dir)
    try:
        found = json.loads((run_dir / "eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        error("eval", f"the evaluation finished but {run_dir / 'eval.json'} cannot be read "
                      f"({exc}); see {run_dir / 'logs'}")
        return 1
    if args.json:
        print(json.dumps({"source": "launcher", "event": "eval_result", "run_dir": str(run_dir),
                          "chosen": inputs.why, **found}, ensure_ascii=False), flush=True)
    else:
        show_eval(found, run_dir, output_console(), why=inputs.why)
    return 0
