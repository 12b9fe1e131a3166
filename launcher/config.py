"""What a launch is asked to do: ``LaunchConfig``, the one spec the command line is turned into.

The command line (``launcher.cli``) and the Python API (``launcher.api.launch``) both build a
``LaunchConfig`` and nothing else reads flags. It is a tree of frozen dataclasses, each default
written once, here (the CLI's defaults and help texts are taken from these fields):

    LaunchConfig            what to train where: devices or hosts, config file and overrides,
      .supervisor           SupervisorConfig: grace period, stall and start-up limits
      .ssh                  SSHSettings: ssh config, known_hosts, trust policy, timeout

Construction validates every combination that can be judged without touching the machine and
raises ``LaunchError`` (one paragraph: what, where, how to fix). Everything that needs the
machine (files, devices, ports, hosts) is checked by ``launcher.session.prepare``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cluster.devices import ASCEND_STARTUPS
from cluster.errors import PlanError
from cluster.hosts import parse_host_selection
from cluster.ranktable.hccn import DEFAULT_HCCN_CONF
from launcher.backends.ports import DEFAULT_PORT_RANGE

#: Backend choices of ``--backend``.
BACKEND_CHOICES = ("auto", "ascend", "gpu", "cpu")
#: How processes are started (``--launcher``): auto is slurm inside an allocation without
#: --hostfile/--hosts/--devices/--rank-table, ssh with --hostfile/--hosts, else local.
LAUNCHER_CHOICES = ("auto", "local", "ssh", "slurm")


class LaunchError(Exception):
    """Bad input found before anything started; ``str()`` is one paragraph (what, where, fix)."""

    exit_code = 2


def _check_seconds(flag: str, value: float, *, positive: bool) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise LaunchError(f"{flag} must be a finite number of seconds, got {value!r}")
    if value < 0 or (positive and value == 0):
        need = "more than 0" if positive else "0 or more"
        raise LaunchError(f"{flag} must be {need} seconds, got {value:g}")


def parse_rank_list(text: str, flag: str = "--tail-ranks") -> tuple[int, ...]:
    """``"0,3"`` / ``"0-3,6"`` -> sorted distinct ranks; ``LaunchError`` for anything else."""
    ranks: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        lo_text, dash, hi_text = part.partition("-")
        if not _DIGITS.fullmatch(lo_text.strip()) or (dash and not _DIGITS.fullmatch(hi_text.strip())):
            raise LaunchError(f"{flag} {text!r}: {part!r} is neither a rank nor a range like "
                              f"0-3; give ranks such as {flag} 0,3")
        lo = int(lo_text)
        hi = int(hi_text) if dash else lo
        if hi < lo:
            raise LaunchError(f"{flag} {text!r}: range {part!r} runs backwards; write {hi}-{lo}")
        if hi >= MAX_RANK:
            raise LaunchError(f"{flag} {text!r}: rank {hi} is too large (ranks are below {MAX_RANK})")
        ranks.update(range(lo, hi + 1))
    if not ranks:
        raise LaunchError(f"{flag} {text!r} names no rank; give ranks such as {flag} 0,3")
    return tuple(sorted(ranks))


#: No run has this many ranks (a bound for rank lists).
MAX_RANK = 1 << 20
_DIGITS = re.compile(r"[0-9]{1,9}")


@dataclass(frozen=True)
class SSHSettings:
    """How to reach other hosts: ssh config file, known_hosts file, trust policy, timeout (the
    paramiko side is ``launcher.backends.ssh``, imported only by multi-host launches)."""

    config_path: str = "~/.ssh/config"
    known_hosts: str | None = None
    accept_new: bool = False
    timeout: float = 10.0


#: The adaptive stall limit (no --stall-timeout/--stall-kill): a rank is warned about after
#: ADAPTIVE_MULTIPLE x the slowest rank's median time between step events (and twice the longest
#: silence seen so far in the run), at least ADAPTIVE_FLOOR_S; failed after twice that.
ADAPTIVE_FLOOR_S = 30.0
ADAPTIVE_MULTIPLE = 10.0


@dataclass(frozen=True)
class SupervisorConfig:
    """Timing policy of a run: grace between SIGTERM and SIGKILL, stall limits, start-up limit,
    and the heartbeat: a node agent that hears nothing from the launcher for
    ``heartbeat_timeout`` seconds (launcher stopped, hung or cut off) stops its processes.

    ``stall_timeout``/``stall_kill`` both None: the adaptive limit (``ADAPTIVE_*``, applied by
    the monitor); one given: the other follows (kill = 2 x timeout). A rank is starting until
    its first ``step`` event (import, cluster start-up, graph compile), under ``startup_timeout``."""

    grace: float = 3.0
    stall_timeout: float | None = None       # None (with stall_kill None): adaptive
    stall_kill: float | None = None          # None: 2 x stall_timeout
    startup_timeout: float = 600.0
    scheduler_wait: float = 15.0
    heartbeat_timeout: float = 30.0

    def __post_init__(self) -> None:
        _check_seconds("--grace", self.grace, positive=False)
        _check_seconds("--startup-timeout", self.startup_timeout, positive=True)
        _check_seconds("scheduler_wait", self.scheduler_wait, positive=False)
        _check_seconds("--heartbeat-timeout", self.heartbeat_timeout, positive=True)
        if self.adaptive:
            return
        if self.stall_timeout is None:
            _check_seconds("--stall-kill", self.stall_kill, positive=True)
            object.__setattr__(self, "stall_timeout", self.stall_kill / 2)
        _check_seconds("--stall-timeout", self.stall_timeout, positive=True)
        if self.stall_kill is None:
            object.__setattr__(self, "stall_kill", 2 * self.stall_timeout)
        _check_seconds("--stall-kill", self.stall_kill, positive=True)
        if self.stall_kill <= self.stall_timeout:
            raise LaunchError(f"--stall-kill ({self.stall_kill:g} s) must be longer than "
                              f"--stall-timeout ({self.stall_timeout:g} s): a stalled worker is "
                              f"reported first, killed later")

    @property
    def heartbeat_interval(self) -> float:
        """How often the launcher tells each agent it is alive: five times per timeout."""
        return max(0.2, self.heartbeat_timeout / 5)

    @property
    def adaptive(self) -> bool:
        """No explicit stall limit: the monitor adapts it to the job's step times."""
        return self.stall_timeout is None and self.stall_kill is None

    @property
    def startup_kill(self) -> float:
        """Before its first step a worker is killed after the same factor as later stalls."""
        if self.adaptive:
            return 2 * self.startup_timeout
        return self.startup_timeout * self.stall_kill / self.stall_timeout

    def stall_limits(self, slowest_median: float = 0.0, longest_gap: float = 0.0) -> tuple[float, float]:
        """(warn, kill) seconds of silence for a training worker: the explicit limits, else
        adaptive: ``ADAPTIVE_MULTIPLE`` x the slowest rank's median time between step events
        and twice the longest silence seen so far, at least ``ADAPTIVE_FLOOR_S``; kill at
        twice the warning."""
        if not self.adaptive:
            return self.stall_timeout, self.stall_kill
        warn = max(ADAPTIVE_FLOOR_S, ADAPTIVE_MULTIPLE * slowest_median, 2 * longest_gap)
        return warn, 2 * warn

    def stall_text(self) -> str:
        """How stalls are judged, for the plan view."""
        if self.adaptive:
            return (f"stall warning adaptive ({ADAPTIVE_MULTIPLE:g}x the slowest rank's median "
                    f"step-event interval, at least {ADAPTIVE_FLOOR_S:g} s), kill 2x that")
        return f"stall warning {self.stall_timeout:g} s, stall kill {self.stall_kill:g} s"


@dataclass(frozen=True)
class LaunchConfig:
    """Everything ``launch`` accepts; the ``wrn-launch`` flags map onto these fields one to one.

    ``worker_cmd``/``scheduler_cmd`` replace ``python -m wrn.train`` / ``python -m
    wrn.scheduler`` (tests and simulations); ``start_scheduler=False`` starts none.
    ``remote_run_dir`` is the run directory's path on the other hosts (None: the same path).
    """

    devices: str | None = None
    config_file: str | None = None
    overrides: tuple[str, ...] = ()
    backend: str = "auto"
    run_dir: str | None = None
    name: str | None = None
    runs_root: str = "runs"
    dry_run: bool = False
    threads_per_worker: int | None = None
    bind_cores: bool | None = None
    verbose_mindspore: bool = False
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
    rescan: bool = False
    max_restarts: int = 0
    standby: bool = False                    # keep the next attempt started for a restart
    rank_table: str | None = None
    server_ip: str | None = None
    hccl_connect_timeout: int | None = None
    hccl_exec_timeout: int | None = None
    hostfile: str | None = None
    hosts: str | None = None
    env: tuple[str, ...] = ()
    env_file: str | None = None
    remote_run_dir: str | None = None
    ascend_startup: str = "dynamic"
    hccl_rank_table: bool = False
    sys_dir: str = "/sys"
    launcher: str = "auto"
    devices_per_node: int | None = None
    tail_ranks: tuple[int, ...] = ()         # ranks whose log lines also go to the console
    include: str | None = None
    exclude: str | None = None
    min_devices: int | None = None
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    ssh: SSHSettings = field(default_factory=SSHSettings)

    def __post_init__(self) -> None:
        for name in ("overrides", "worker_cmd", "scheduler_cmd", "command", "port_range", "env",
                     "tail_ranks"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))
        if self.backend not in BACKEND_CHOICES:
            raise LaunchError(f"--backend {self.backend!r}: choose one of {', '.join(BACKEND_CHOICES)}")
        if self.ascend_startup not in ASCEND_STARTUPS:
            raise LaunchError(f"--ascend-startup {self.ascend_startup!r}: choose one of "
                              f"{', '.join(ASCEND_STARTUPS)}")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise LaunchError(f"--port {self.port}: a TCP port is 1-65535; pick a free one, or "
                              f"leave --port out to get one from --port-range")
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
        if self.standby:
            self._check_standby()
        if self.hostfile is not None and self.hosts is not None:
            raise LaunchError("--hostfile and --hosts both list the hosts; give only one")
        if self.multi_host and (self.devices is not None or self.rank_table):
            raise LaunchError("with --hostfile/--hosts each host's devices come from its slots= "
                              "(or devices=, or host:N); drop --devices/--rank-table")
        if self.rank_table is not None and self.devices is not None:
            raise LaunchError(f"--rank-table {self.rank_table} already says which devices this "
                              f"host runs; drop --devices {self.devices}")
        self._check_launcher()
        if any(isinstance(r, bool) or not isinstance(r, int) or r < 0 for r in self.tail_ranks):
            raise LaunchError(f"--tail-ranks {self.tail_ranks}: ranks are whole numbers 0 or more")
        self._check_host_choice()
        timeout = self.ssh.timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
                or not math.isfinite(timeout) or timeout <= 0:
            raise LaunchError(f"--ssh-timeout must be more than 0 seconds, got {timeout}")

    def _check_standby(self) -> None:
        """--standby against the flags it needs or cannot work with."""
        if self.max_restarts < 1:
            raise LaunchError("--standby keeps the next attempt started for a restart; add "
                              "--max-restarts K (1 or more), or drop --standby")
        if self.launcher == "slurm":
            raise LaunchError("--standby is not built for --launcher slurm (the standby would "
                              "need a second job step on the same nodes); drop --standby")
        if self.port is not None or self.rank_table is not None:
            raise LaunchError("--standby runs a second cluster with its own scheduler port; drop "
                              f"{'--port' if self.port is not None else '--rank-table'}, or drop "
                              f"--standby")

    def _check_launcher(self) -> None:
        """--launcher against the flags that say where the run goes."""
        if self.launcher not in LAUNCHER_CHOICES:
            raise LaunchError(f"--launcher {self.launcher!r}: choose one of "
                              f"{', '.join(LAUNCHER_CHOICES)}")
        if self.multi_host and self.launcher in ("local", "slurm"):
            raise LaunchError(f"--launcher {self.launcher} contradicts --hostfile/--hosts (hosts "
                              f"reached over SSH); drop one of them")
        if self.launcher == "ssh" and not self.multi_host and self.resume is None:
            raise LaunchError("--launcher ssh needs the hosts: add --hostfile FILE or --hosts "
                              "a:N,b:N")
        if self.launcher == "slurm" and (self.devices is not None or self.rank_table):
            raise LaunchError("with --launcher slurm each node's devices come from the Slurm "
                              "allocation; drop --devices/--rank-table, or give "
                              "--devices-per-node K")
        if self.devices_per_node is not None:
            if isinstance(self.devices_per_node, bool) or not isinstance(self.devices_per_node, int) \
                    or self.devices_per_node < 1:
                raise LaunchError(f"--devices-per-node must be a whole number of 1 or more, got "
                                  f"{self.devices_per_node!r}")
            if self.launcher in ("local", "ssh") or self.multi_host or self.devices is not None:
                raise LaunchError("--devices-per-node sets the devices of each Slurm node; "
                                  "use it inside a Slurm allocation (--launcher slurm), or "
                                  "--devices N for this host / slots= for SSH hosts")

    def slurm(self, env: Mapping[str, str]) -> bool:
        """True when this launch runs through Slurm: ``--launcher slurm``, or auto inside an
        allocation (``SLURM_JOB_ID`` in ``env``) with no flag that names the hosts or devices
        of a local or SSH launch."""
        if self.launcher != "auto":
            return self.launcher == "slurm"
        return bool(env.get("SLURM_JOB_ID")) and not self.multi_host and self.devices is None \
            and self.rank_table is None

    def _check_host_choice(self) -> None:
        """--include / --exclude / --min-devices: only with a host list, and well formed."""
        for flag, value in (("--include", self.include), ("--exclude", self.exclude)):
            if value is None:
                continue
            if not self.multi_host:
                raise LaunchError(f"{flag} chooses hosts of --hostfile/--hosts; give one of those, "
                                  f"or use --devices on a single host")
            try:
                parse_host_selection(value, flag)
            except PlanError as exc:
                raise LaunchError(str(exc)) from None
        if self.include is not None and self.exclude is not None:
            raise LaunchError("--include and --exclude both choose hosts; give only one")
        if self.min_devices is None:
            return
        if isinstance(self.min_devices, bool) or not isinstance(self.min_devices, int) \
                or self.min_devices < 1:
            raise LaunchError(f"--min-devices must be a whole number of 1 or more, got "
                              f"{self.min_devices!r}")
        if not self.multi_host or self.max_restarts < 1:
            raise LaunchError(f"--min-devices {self.min_devices} lets a restart leave out hosts "
                              f"that are lost; it needs several hosts (--hostfile/--hosts) and "
                              f"--max-restarts K of 1 or more")

    @property
    def multi_host(self) -> bool:
        """True when the hosts come from --hostfile or --hosts (launched over SSH)."""
        return bool(self.hostfile or self.hosts)

    @classmethod
    def from_fields(cls, **values: Any) -> LaunchConfig:
        """Build from flat keyword arguments, as the CLI flags name them: the supervisor fields
        (``grace``, ``stall_timeout``, ...) and the SSH ones (``ssh_config``, ``ssh_timeout``,
        ...) go into their sections; fields not given keep their defaults."""
        sup = {k: values.pop(k) for k in list(values) if k in _SUPERVISOR_FIELDS}
        ssh = {_SSH_FIELDS[k]: values.pop(k) for k in list(values) if k in _SSH_FIELDS}
        unknown = sorted(set(values) - _TOP_FIELDS)
        if unknown:
            raise TypeError(f"unknown launch option(s): {', '.join(unknown)}")
        try:
            supervisor = SupervisorConfig(**sup)
        except TypeError as exc:  # pragma: no cover - a programming error
            raise LaunchError(str(exc)) from None
        return cls(**values, supervisor=supervisor, ssh=SSHSettings(**ssh))

    def replace(self, **changes: Any) -> LaunchConfig:
        """A copy with ``changes`` (validated again)."""
        return dataclasses.replace(self, **changes)


_SUPERVISOR_FIELDS = frozenset(f.name for f in dataclasses.fields(SupervisorConfig))
#: Flat (CLI) name -> SSHSettings field.
_SSH_FIELDS: Mapping[str, str] = {"ssh_config": "config_path", "ssh_known_hosts": "known_hosts",
                                  "ssh_accept_new": "accept_new", "ssh_timeout": "timeout"}
_TOP_FIELDS = frozenset(f.name for f in dataclasses.fields(LaunchConfig)) - {"supervisor", "ssh"}


def default_of(name: str) -> Any:
    """The default of a flat field name (for the CLI's help texts)."""
    if name in _SUPERVISOR_FIELDS:
        return SupervisorConfig.__dataclass_fields__[name].default
    if name in _SSH_FIELDS:
        return SSHSettings.__dataclass_fields__[_SSH_FIELDS[name]].default
    return LaunchConfig.__dataclass_fields__[name].default
