"""The launch flags of ``wrn-launch`` (the top level of the command line) and running a launch.

    wrn-launch --devices 8 [--config FILE] [--set k=v ...] [--key=value ...]
               [--backend auto|ascend|gpu|cpu] [--run-dir DIR | --name NAME] [--dry-run] ...
    wrn-launch --hostfile FILE | --hosts a:8,b:8 ...        several hosts over SSH
    wrn-launch --rank-table FILE [--server-ip IP] ...       this host's ranks of an HCCL rank table

The flags are in argument groups (their defaults come from ``launcher.config``, written once
there) and become one ``LaunchConfig`` (``launch_config``); nothing else reads them. ``run``
hands it to ``launcher.api.launch``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from cluster.devices import ASCEND_STARTUPS
from launcher import PROG
from launcher.commands.common import SUPPRESS, count, error, positive_int, seconds, tcp_port, whole_seconds
from launcher.config import (
    ADAPTIVE_FLOOR_S,
    ADAPTIVE_MULTIPLE,
    BACKEND_CHOICES,
    LAUNCHER_CHOICES,
    LaunchConfig,
    default_of,
)


def _rank_list(text: str) -> tuple[int, ...]:
    from launcher.config import LaunchError, parse_rank_list
    try:
        return parse_rank_list(text)
    except LaunchError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--tail-ranks ", "")) from None


def _port_range(text: str) -> tuple[int, int]:
    from cluster.errors import PlanError
    from launcher.backends.ports import parse_port_range
    try:
        return parse_port_range(text)
    except PlanError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("--port-range ", "")) from None



def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of a launch, in groups; every default shown is ``launcher.config``'s.

    Flags not given on the command line are absent from the namespace (``SUPPRESS``), so the
    config's own defaults apply."""
    add_what_arguments(p)
    add_where_arguments(p)
    add_run_dir_arguments(p)
    add_supervision_arguments(p)
    add_output_arguments(p)
    add_ascend_arguments(p)
    add_ssh_arguments(p)
    add_testing_arguments(p)


def add_what_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_argument_group("what to train")
    what.add_argument("--config", dest="config_file", metavar="FILE", default=SUPPRESS,
                      help="training config YAML (default: the bundled default.yaml, see "
                           "'wrn-launch config show default')")
    what.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=SUPPRESS,
                      help="override a config key (repeatable); ModelZoo style --key=value works too")
    what.add_argument("--resume", metavar="RUN_DIR", default=SUPPRESS, help="continue that run in place "
                      "from its newest valid checkpoint, on its own hosts (a new attempt; earlier "
                      "logs are kept)")
    what.add_argument("--resume-ckpt", metavar="FILE", default=SUPPRESS, help="start a new run from this "
                      "checkpoint (weights, momentum, LR position, epoch/step; ModelZoo RESUME_CKPT)")
    what.add_argument("--pretrained", metavar="CKPT", default=SUPPRESS, help="initialise the weights "
                      "from CKPT for transfer learning (the classifier is dropped when the class "
                      "count differs)")
    what.add_argument("--force", action="store_true", default=SUPPRESS, help="resume even when the "
                      "config differs in fields that change the maths")
    what.add_argument("--rescan", action="store_true", default=SUPPRESS, help="list and verify the "
                      "data again instead of reusing the run's data index (a restart or --resume "
                      "reuses it while no data folder has changed)")


def add_where_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_argument_group("where it runs")
    where.add_argument("--devices", metavar="N|IDS", default=SUPPRESS,
                       help="a count (8) or device ids (0-3,6); default 1 (with --resume: the "
                            "run's own count). CPU devices are logical")
    where.add_argument("--backend", choices=BACKEND_CHOICES, default=SUPPRESS,
                       help=f"default {default_of('backend')}: Ascend if /dev/davinci* exists, "
                            f"then GPU if the installed MindSpore can use one (the pinned "
                            f"2.10 cannot), else CPU")
    where.add_argument("--hostfile", metavar="FILE", default=SUPPRESS, help="run on several hosts over "
                       "SSH: lines 'host slots=N [devices=0-7 user=U port=P python=PY "
                       "workdir=DIR]' (# comments); the first host holds rank 0 and the scheduler")
    where.add_argument("--hosts", metavar="H:N,...", default=SUPPRESS,
                       help="short form of --hostfile: --hosts a:8,b:8")
    where.add_argument("--launcher", choices=LAUNCHER_CHOICES, default=SUPPRESS,
                       help="how processes start (default auto: slurm inside a Slurm allocation "
                            "without --hostfile/--hosts/--devices, ssh with --hostfile/--hosts, "
                            "else local)")
    where.add_argument("--devices-per-node", type=positive_int, metavar="K", default=SUPPRESS,
                       help="Slurm: devices (workers) per node (default: the allocation's GPUs "
                            "or tasks per node)")
    pick = where.add_mutually_exclusive_group()
    pick.add_argument("--include", metavar="HOST[:DEVS]@...", default=SUPPRESS,
                      help="run only on these hosts (and devices) of the host list, DeepSpeed "
                           "style: --include node1@node2:0,1")
    pick.add_argument("--exclude", metavar="HOST[:DEVS]@...", default=SUPPRESS,
                      help="leave out these hosts (or only these devices of a host): "
                           "--exclude node3 or --exclude node2:2-3")
    where.add_argument("--threads-per-worker", type=positive_int, metavar="N", default=SUPPRESS,
                       help="threads per worker (default: usable cores // workers, at least 1)")
    where.add_argument("--bind-cores", "--bind-core", action=argparse.BooleanOptionalAction,
                       default=SUPPRESS,
                       help="pin each worker to its own cores (default: on for several CPU "
                            "workers per host whose threads fit the cores, and for Ascend "
                            "workers: cores of their device's NUMA node, as msrun --bind_core)")
    where.add_argument("--port", type=tcp_port, metavar="P", default=SUPPRESS,
                       help="scheduler port (default: a free one)")
    lo, hi = default_of("port_range")
    where.add_argument("--port-range", type=_port_range, metavar="LO-HI", default=SUPPRESS,
                       help=f"where a free scheduler port is looked for (default {lo}-{hi})")
    where.add_argument("--env", action="append", metavar="K=V", default=SUPPRESS,
                       help="set an environment variable for every worker (repeatable; values of "
                            "secret-looking names are masked in run.json)")
    where.add_argument("--env-file", metavar="FILE", default=SUPPRESS, help="NAME=VALUE lines added to "
                       "every worker's environment (before --env)")


def add_run_dir_arguments(p: argparse.ArgumentParser, restarts: bool = True) -> None:
    """The run directory's flags, and (``restarts``) those of restarting a failed run."""
    run = p.add_argument_group("the run directory and restarts" if restarts else "the run directory")
    names = run.add_mutually_exclusive_group()
    names.add_argument("--run-dir", metavar="DIR", default=SUPPRESS,
                       help="run directory (must be new or empty)")
    names.add_argument("--name", default=SUPPRESS, help="run name: the run directory is "
                       "runs/<name>-<UTC time> (default name: the config's checkpoint_name)")
    run.add_argument("--runs-root", metavar="DIR", default=SUPPRESS,
                     help=f"where default run directories go (default {default_of('runs_root')})")
    run.add_argument("--dry-run", action="store_true", default=SUPPRESS,
                     help="print the plan and start nothing")
    if not restarts:
        return
    run.add_argument("--max-restarts", type=count, metavar="K", default=SUPPRESS, help="when a run "
                     "fails, restart all workers from the newest valid checkpoint, up to K times")
    run.add_argument("--standby", action="store_true", default=SUPPRESS,
                     help="with --max-restarts, CPU workers: once training runs, start the next "
                          "attempt's workers and let them wait, set up and joined, so that a "
                          "restart continues in seconds (costs a second set of processes and "
                          "their memory on every host)")
    run.add_argument("--min-devices", type=positive_int, metavar="M", default=SUPPRESS,
                     help="with --max-restarts and several hosts: a restart leaves out hosts that "
                          "fail its pre-flight (unreachable, devices missing) and continues on the "
                          "rest while at least M devices remain (default: every host is needed)")


def add_supervision_arguments(p: argparse.ArgumentParser) -> None:
    sup = p.add_argument_group("supervision")
    sup.add_argument("--grace", type=seconds, metavar="S", default=SUPPRESS, help="seconds between "
                     f"SIGTERM and SIGKILL when stopping (default {default_of('grace'):g})")
    sup.add_argument("--stall-timeout", type=seconds, metavar="S", default=SUPPRESS,
                     help="warn when a worker emits no event for S seconds (default: adaptive, "
                          f"{ADAPTIVE_MULTIPLE:g}x the slowest rank's median time between step "
                          f"events, at least {ADAPTIVE_FLOOR_S:g} s); its stacks and every "
                          f"other rank's go to RUN/diagnostics/ when it is failed")
    sup.add_argument("--stall-kill", type=seconds, metavar="S", default=SUPPRESS, help="treat a silent "
                     "worker as failed after S seconds (default 2x --stall-timeout; after an "
                     "epoch's end both grow by that epoch's duration, for evaluation)")
    sup.add_argument("--startup-timeout", type=seconds, metavar="S", default=SUPPRESS,
                     help=f"--stall-timeout before a worker's first step (import, start-up, "
                          f"graph compile; default {default_of('startup_timeout'):g})")
    sup.add_argument("--heartbeat-timeout", type=seconds, metavar="S", default=SUPPRESS,
                     help="a host's agent stops its workers when it has heard nothing from the "
                          "launcher for S seconds (launcher stopped, hung or cut off by the "
                          f"network; default {default_of('heartbeat_timeout'):g})")


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output")
    out.add_argument("--plain", action="store_true", help="timestamped lines even on a terminal")
    out.add_argument("--json", action="store_true", help="stream every event as one JSON object "
                     "per line on stdout (worker events as in metrics.jsonl; the launcher's own "
                     "records have \"source\": \"launcher\", among them \"stalled\" and "
                     "\"recovered\" for a rank warned about as stalled and heard from again)")
    out.add_argument("--tail-ranks", type=_rank_list, metavar="RANKS", default=SUPPRESS,
                     help="also show these ranks' log lines on the console, e.g. 0,3 or 0-3 "
                          "(default none; every rank's lines are always in logs/)")
    out.add_argument("--verbose-mindspore", action="store_true", default=SUPPRESS,
                     help="keep MindSpore's WARNING logs (default GLOG_v=3 silences them)")


def add_ascend_arguments(p: argparse.ArgumentParser) -> None:
    ascend = p.add_argument_group("Ascend")
    ascend.add_argument("--hccn-conf", metavar="FILE", default=SUPPRESS, help="Ascend device IPs "
                        f"(address_<n>=ip lines) for the rank table (default {default_of('hccn_conf')})")
    ascend.add_argument("--rank-table", metavar="FILE", default=SUPPRESS, help="launch this host's ranks "
                        "of an HCCL rank table (hccl_tools/merge_hccl format): RANK_SIZE is the "
                        "table's total, RANK_ID/DEVICE_ID come from it; implies --backend ascend "
                        "unless given (with --backend cpu the same table drives a CPU run of the "
                        "same world size)")
    ascend.add_argument("--server-ip", metavar="IP", default=SUPPRESS, help="which server of "
                        "--rank-table this host is (default: matched by this host's addresses, "
                        "then by its hccn.conf device IPs)")
    ascend.add_argument("--ascend-startup", choices=ASCEND_STARTUPS, default=SUPPRESS,
                        help="how Ascend workers meet: 'dynamic' (default), MindSpore's dynamic "
                             "cluster, a scheduler plus MS_WORKER processes, as msrun starts "
                             "them; 'ranktable', the HCCL rank table alone (RANK_TABLE_FILE, no "
                             "scheduler), for MindSpore before 2.4 and the ModelZoo scripts")
    ascend.add_argument("--hccl-rank-table", action="store_true", default=SUPPRESS,
                        help="with the dynamic cluster, also write the rank table from "
                             "--hccn-conf and hand it to HCCL as RANK_TABLE_FILE (msrun "
                             "--rank_table_file); implied by --rank-table")
    ascend.add_argument("--hccl-connect-timeout", type=whole_seconds, metavar="S", default=SUPPRESS,
                        help="HCCL_CONNECT_TIMEOUT for Ascend workers, 120-7200 (default: the "
                             "environment's, else 120)")
    ascend.add_argument("--hccl-exec-timeout", type=whole_seconds, metavar="S", default=SUPPRESS,
                        help="HCCL_EXEC_TIMEOUT for Ascend workers (default: the environment's, "
                             "else 1836)")


def add_ssh_arguments(p: argparse.ArgumentParser) -> None:
    ssh = p.add_argument_group("SSH (with --hostfile/--hosts)")
    ssh.add_argument("--ssh-config", metavar="FILE", default=SUPPRESS, help="OpenSSH client config to "
                     "honour (HostName, User, Port, IdentityFile, UserKnownHostsFile); default "
                     f"{default_of('ssh_config')}")
    ssh.add_argument("--ssh-known-hosts", metavar="FILE", default=SUPPRESS, help="known_hosts file to "
                     "verify host keys against (default: UserKnownHostsFile, else ~/.ssh/known_hosts)")
    ssh.add_argument("--ssh-accept-new", action="store_true", default=SUPPRESS, help="trust hosts whose "
                     "key is not known yet and remember their keys (default: refuse them)")
    ssh.add_argument("--ssh-timeout", type=seconds, metavar="S", default=SUPPRESS,
                     help=f"seconds to connect to each host in the pre-flight (default "
                          f"{default_of('ssh_timeout'):g})")


def add_testing_arguments(p: argparse.ArgumentParser, worker: bool = True) -> None:
    # Testing and simulation aids, deliberately not in --help: replace the worker / scheduler
    # commands ("none": no scheduler), look for device nodes somewhere other than /dev (and
    # sysfs other than /sys), and the run directory's path on the other hosts (default: the
    # same path as here).
    if worker:
        p.add_argument("--worker-cmd", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--scheduler-cmd", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--dev-dir", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--sys-dir", default=SUPPRESS, help=SUPPRESS)
    p.add_argument("--remote-run-dir", default=SUPPRESS, help=SUPPRESS)



def launch_config(args: argparse.Namespace, overrides: Sequence[str], argv: Sequence[str]) -> LaunchConfig:
    """The ``LaunchConfig`` of parsed launch flags (only those given; defaults are the config's)."""
    values: dict[str, Any] = {k: v for k, v in vars(args).items()
                              if k not in ("plain", "json", "command", "run")}
    values["overrides"] = tuple(overrides) + tuple(values.get("overrides", ()))
    if "worker_cmd" in values:
        values["worker_cmd"] = tuple(shlex.split(values["worker_cmd"])) or None
    if "scheduler_cmd" in values:
        scheduler_values(values)
    values["command"] = (PROG, *argv)
    return LaunchConfig.from_fields(**values)


def scheduler_values(values: dict[str, Any]) -> None:
    """Turn the hidden ``--scheduler-cmd TEXT`` in ``values`` into its ``LaunchConfig`` fields
    (``none``: start no scheduler)."""
    text = values.pop("scheduler_cmd")
    if text.strip().lower() == "none":
        values["start_scheduler"] = False
    else:
        values["scheduler_cmd"] = tuple(shlex.split(text)) or None


def run(args: argparse.Namespace, overrides: Sequence[str], argv: Sequence[str]) -> int:
    """Launch what the flags say (``overrides``: ModelZoo ``--key=value`` items; ``argv``: the
    whole command line, kept in run.json); the exit status."""
    from cluster.errors import PlanError
    from launcher.api import launch
    from launcher.config import LaunchError
    from launcher.ui.renderers import make_renderer

    try:
        config = launch_config(args, overrides, argv)
        renderer = make_renderer(sys.stdout, plain=args.plain, json_lines=args.json,
                                 tail_ranks=config.tail_ranks)
        result = launch(config, renderer=renderer)
    except (LaunchError, PlanError) as exc:
        return error("", str(exc))
    return result.exit_code

