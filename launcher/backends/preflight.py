"""Pre-flight of a multi-host launch: every host checked in parallel before anything starts.

Per host (one thread each, all within ``--ssh-timeout`` for the connection): SSH reachable and
trusted, then one small probe run with the host's python in the launch directory that reports
python and MindSpore versions (``importlib.metadata``), whether ``wrn``/``launcher`` import,
which wrn-launch that is (its version, and whether it is the distribution installed for that
python or a source folder such as ``workdir=`` on PYTHONPATH; ``launcher.installation``)
and whether its import names clash with other code there (``wrn_launch.clashes``, the message
written there), whether the data path is there
(``wrn.datapath.check_data_path``; the built-in dataset counts), the host's devices and cores,
and, on the master, whether the scheduler port is free. The results
make one table; any failure becomes one ``PlanError`` naming every failed host, and nothing has
been started anywhere.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from cluster.errors import PlanError
from launcher.backends.base import BackendError
from launcher.backends.remotefiles import sftp_available
from launcher.backends.sshclient import RemoteHost, SSHError, connect, python_command, run_command
from launcher.config import SSHSettings
from launcher.ui.formatting import cells

PROBE_TAG = "@wrn-preflight "

#: Runs on each host with its python; prints one tagged JSON line.
PROBE = r'''
import importlib.metadata as md, json, os, platform, sys
args = json.loads(sys.argv[1])
def ver(name):
    try:
        return md.version(name)
    except Exception:
        return None
out = {"python": platform.python_version(), "mindspore": ver("mindspore"), "import": None,
       "clashes": None, "project": None, "data": None, "devices": None,
       "cpus": sorted(os.sched_getaffinity(0)), "port_free": None}
try:
    import wrn_launch
    clashes = wrn_launch.clashes()
    if clashes:
        out["clashes"] = wrn_launch.clash_message(clashes, sys.executable)
    else:
        import wrn, launcher, cluster
        try:
            from launcher.installation import installation
        except ImportError:  # an older wrn-launch: say its version, as it would
            installation = getattr(wrn_launch, "installation", None) or (lambda: {
                "version": wrn.__version__, "installed": None,
                "location": os.path.dirname(os.path.dirname(os.path.realpath(wrn.__file__)))})
        out["project"] = installation()
except Exception as exc:
    out["import"] = f"{type(exc).__name__}: {exc}"
if out["project"] is not None:
    try:
        from wrn.datapath import check_data_path
        check_data_path(args["data_path"])
    except Exception as exc:
        out["data"] = str(exc)
    from cluster.devices import list_devices
    out["devices"] = list_devices(args["backend"], args.get("dev_dir") or "/dev")
    if args.get("port"):
        from launcher.backends.ports import port_is_free
        out["port_free"] = port_is_free(args["port"])
where = args.get("run_dir")
if where:
    rd = out["run_dir"] = {"exists": os.path.lexists(where), "dir": os.path.isdir(where)}
    try:
        if rd["dir"]:
            names = sorted(os.listdir(where))
            rd.update(count=len(names), names=names[:4], writable=os.access(where, os.W_OK | os.X_OK))
        elif not rd["exists"]:
            up = os.path.dirname(os.path.abspath(where))
            while not os.path.lexists(up):
                up = os.path.dirname(up)
            rd.update(ancestor=up, writable=os.path.isdir(up) and os.access(up, os.W_OK | os.X_OK))
    except OSError as exc:
        rd["error"] = f"{type(exc).__name__}: {exc.strerror or exc}"
print("@wrn-preflight " + json.dumps(out), flush=True)
'''


@dataclass
class HostCheck:
    """What pre-flight found on one host; ``problems`` empty means ready."""

    host: str
    address: str = ""
    seconds: float = 0.0
    python: str | None = None
    mindspore: str | None = None
    project: str | None = None  # "0.1.0 installed" / "0.1.0 workdir" / "0.1.0 source", location
    devices: list[int] | None = None
    cpus: list[int] = field(default_factory=list)
    sftp: bool = True  # whether its sshd serves SFTP (else files go over exec channels)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong on this host."""
        return not self.problems


def probe_command(host: RemoteHost, backend: str, data_path: str, port: int | None,
                  dev_dir: str = "/dev", run_dir: str | None = None) -> str:
    """The shell command that runs ``PROBE`` (read from stdin) on ``host``; ``run_dir`` is the
    run directory's path there, checked when given."""
    fields: dict[str, Any] = {"backend": backend, "data_path": data_path, "port": port}
    if dev_dir != "/dev":
        fields["dev_dir"] = dev_dir
    if run_dir:
        fields["run_dir"] = run_dir
    return python_command(host, f"- {shlex.quote(json.dumps(fields))}")


def parse_probe(stdout: str) -> dict[str, Any] | None:
    """The probe's JSON report from its output, or None if there is none."""
    for line in stdout.splitlines():
        if line.startswith(PROBE_TAG):
            try:
                value = json.loads(line[len(PROBE_TAG):])
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def judge(check: HostCheck, report: dict[str, Any], want: Mapping[str, str | None],
          host: RemoteHost, devices: Sequence[int] | None, port: int | None,
          resume: bool = False) -> None:
    """Compare one probe report with the launcher's expectations; add problems to ``check``."""
    check.python, check.mindspore = report.get("python"), report.get("mindspore")
    check.devices, check.cpus = report.get("devices"), list(report.get("cpus") or [])
    for name in ("python", "mindspore"):
        if report.get(name) != want.get(name):
            check.problems.append(f"{name} {report.get(name) or 'missing'} at {host.python}, but the "
                                  f"launcher has {want.get(name)}; install the same version there or "
                                  f"point python= in the hostfile at a matching interpreter")
    _judge_project(check, report, want.get("wrn-launch"), host)
    if report.get("data"):
        check.problems.append(f"data: {report['data']}")
    have = report.get("devices")
    if have is not None and devices is not None:
        missing = [d for d in devices if d not in have]
        if missing:
            check.problems.append(f"device(s) {missing} not present (host has {have or 'none'}); "
                                  f"fix devices=/slots= for this host")
    if port is not None and report.get("port_free") is False:
        check.problems.append(f"scheduler port {port} is in use on this master host; pass another "
                              f"--port")
    if not check.cpus:
        check.problems.append("no usable CPU cores reported")
    if report.get("run_dir") is not None:
        problem = run_dir_problem(report["run_dir"], host.run_dir, resume)
        if problem:
            check.problems.append(problem)


def run_dir_problem(found: Mapping[str, Any], path: str | None, resume: bool) -> str | None:
    """What is wrong with the run directory's path on a host (the probe's ``found``), or None.
    It must be a writable folder or creatable there, and empty unless the run is resumed: an
    old run's checkpoints there would be copied back or resumed from."""
    where = f"the run directory {path} there" if path else "the run directory's path there"
    fix = "pass --remote-run-dir with another path (or --run-dir)"
    if found.get("error"):
        return f"{where} cannot be checked ({found['error']}); {fix}"
    if found.get("exists") and not found.get("dir"):
        return f"{where} exists and is not a folder; {fix}"
    if not found.get("exists"):
        if not found.get("writable"):
            return (f"cannot create {where}: {found.get('ancestor', '?')} is not a writable "
                    f"folder; {fix}")
        return None
    if not found.get("writable"):
        return f"{where} is not writable; {fix}, or fix its permissions"
    if found.get("count") and not resume:
        names = ", ".join(found.get("names") or [])
        more = ", ..." if found["count"] > len(found.get("names") or []) else ""
        return (f"{where} is not empty ({found['count']} entries: {names}{more}): another run's "
                f"checkpoints there would be copied back or resumed from; remove it, {fix}, or "
                f"--resume that run")
    return None


def _judge_project(check: HostCheck, report: dict[str, Any], want: str | None,
                   host: RemoteHost) -> None:
    """Which wrn-launch the probe found (``check.project``) and what is wrong with it: a clash
    of import names, no import at all, or a version other than the launcher's (``want``)."""
    project = report.get("project") or {}
    version, where = project.get("version"), project.get("location")
    if project:
        kind = "installed" if project.get("installed") else "source"
        if not project.get("installed") and host.workdir and \
                where == os.path.normpath(host.workdir):
            kind = "workdir"
        check.project = f"{version} {kind}\n{where}"
    fix = (f"install wrn-launch {want} for {host.python} there (pip install of the same wheel) or "
           f"set workdir= in the hostfile to a checkout of it")
    if report.get("clashes"):
        check.problems.append(str(report["clashes"]))  # the message, written there
    elif report.get("import"):
        source = (f"with PYTHONPATH={host.workdir}" if host.workdir
                  else f"installed for {host.python}")
        check.problems.append(f"the project does not import there ({report['import']}) {source}; "
                              f"{fix}")
    elif want is not None and version != want:
        check.problems.append(f"wrn-launch {version or 'of unknown version'} from {where or '?'} "
                              f"there, but the launcher is {want}; {fix}")


def check_host(host: RemoteHost, settings: SSHSettings, want: Mapping[str, str | None],
               backend: str, data_path: str, devices: Sequence[int] | None,
               port: int | None, dev_dir: str = "/dev", resume: bool = False) -> tuple[HostCheck, Any]:
    """Pre-flight of one host: (its ``HostCheck``, its open SSH client or None). The run
    directory's path there (``host.run_dir``) is checked when set, and whether its sshd serves
    SFTP (files then go over exec channels instead)."""
    t0 = time.monotonic()
    client = None
    try:
        client = connect(host.target, settings)
    except SSHError as exc:
        check = HostCheck(host.name, host.target.label, problems=[str(exc)])
    except (TimeoutError, OSError, EOFError) as exc:
        check = HostCheck(host.name, host.target.label,
                          problems=[f"host {host.name}: cannot connect ({exc}); check the connection"])
    except Exception as exc:  # paramiko raises its own types mid-session
        check = HostCheck(host.name, host.target.label, problems=[
            f"host {host.name}: SSH session failed ({type(exc).__name__}: {exc})"])
    else:
        check = probe_host(client, host, settings, want, backend, data_path, devices, port, dev_dir,
                           resume)
    check.seconds = time.monotonic() - t0
    if check.problems and client is not None:
        client.close()
        client = None
    return check, client


def probe_host(client: Any, host: RemoteHost, settings: SSHSettings,
               want: Mapping[str, str | None], backend: str, data_path: str,
               devices: Sequence[int] | None, port: int | None,
               dev_dir: str = "/dev", resume: bool = False) -> HostCheck:
    """The pre-flight probe of ``host`` over its open SSH ``client`` (a restart's pre-flight
    runs it again over the run's connection; the run directory there is then its own, as on
    ``resume``)."""
    t0 = time.monotonic()
    check = HostCheck(host.name, host.target.label)
    try:
        budget = max(settings.timeout, 30.0)  # python + imports may take a few seconds
        code, out, err = run_command(client, probe_command(host, backend, data_path, port, dev_dir,
                                                           host.run_dir), budget, PROBE.encode())
        report = parse_probe(out)
        if report is None:
            tail = (err or out).strip().splitlines()[-3:]
            check.problems.append(f"the probe did not run with {host.python} in {host.cwd} (exit "
                                  f"{code}: {' | '.join(tail) or 'no output'}); check python= and "
                                  f"that the launch directory exists there")
        else:
            judge(check, report, want, host, devices, port, resume)
            check.sftp = sftp_available(client)
    except SSHError as exc:
        check.problems.append(str(exc))
    except (TimeoutError, OSError, EOFError) as exc:
        check.problems.append(f"host {host.name}: the probe failed ({exc}); check the connection")
    except Exception as exc:  # paramiko raises its own types mid-session
        check.problems.append(f"host {host.name}: SSH session failed ({type(exc).__name__}: {exc})")
    check.seconds = time.monotonic() - t0
    return check


def run_preflight(hosts: Sequence[RemoteHost], settings: SSHSettings,
                  want: Mapping[str, str | None], backend: str, data_path: str,
                  devices: Mapping[str, Sequence[int] | None], port: int | None,
                  dev_dir: str = "/dev", resume: bool = False) -> tuple[list[HostCheck], dict[str, Any]]:
    """Check every host in parallel; (checks in host order, open clients of the good hosts).

    ``port`` is checked on the first host (the master) only.
    """
    with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
        futures = [pool.submit(check_host, h, settings, want, backend, data_path,
                               devices.get(h.name), port if i == 0 else None, dev_dir, resume)
                   for i, h in enumerate(hosts)]
        results = [f.result() for f in futures]
    checks = [c for c, _ in results]
    clients = {c.host: cl for c, cl in results if cl is not None}
    return checks, clients


def recheck_hosts(backend: Any, nodes: Sequence[Any], settings: SSHSettings,
                  want: Mapping[str, str | None], backend_name: str, data_path: str,
                  dev_dir: str = "/dev") -> list[HostCheck]:
    """A restart's pre-flight: every node's probe again, in parallel, over the run's own SSH
    connections (``backend.client`` re-makes a lost one once; a host that cannot be reached is
    a problem of its check). Checks in node order."""
    def one(node: Any) -> HostCheck:
        t0 = time.monotonic()
        host = backend.hosts[node.host]
        try:
            client = backend.client(node.host)
        except BackendError as exc:
            return HostCheck(node.host, host.target.label, seconds=time.monotonic() - t0,
                             problems=[f"unreachable: {exc}"])
        devices = None if backend_name == "cpu" else tuple(node.device_ids)
        return probe_host(client, host, settings, want, backend_name, data_path, devices, None,
                          dev_dir, resume=True)

    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        return list(pool.map(one, nodes))


def failure_message(checks: Sequence[HostCheck]) -> str:
    """One paragraph naming every failed host and its problems (empty when all passed)."""
    bad = [c for c in checks if not c.ok]
    if not bad:
        return ""
    parts = [f"[{c.host}] " + "; ".join(c.problems) for c in bad]
    return (f"pre-flight failed on {len(bad)} of {len(checks)} host(s), nothing was started: "
            + " ".join(parts))


def results_table(checks: Sequence[HostCheck]):
    """A Rich table of the pre-flight results (one row per host)."""
    from rich.table import Table

    table = Table(title="pre-flight", show_lines=False)
    for col in ("host", "address", "python", "mindspore", "wrn-launch", "devices", "cores", "files",
                "time", "result"):
        table.add_column(col, overflow="fold" if col == "wrn-launch" else "ellipsis")
    for c in checks:
        devices = "logical" if c.devices is None else ",".join(map(str, c.devices)) or "none"
        table.add_row(*cells(c.host, c.address, c.python or "-", c.mindspore or "-", c.project or "-",
                      devices if c.python else "-", str(len(c.cpus)) if c.cpus else "-",
                      ("sftp" if c.sftp else "exec") if c.python else "-", f"{c.seconds:.1f} s",
                      "ok" if c.ok else "FAILED: " + "; ".join(c.problems)))
    return table


def print_table(checks: Sequence[HostCheck], stream: Any) -> None:
    """Print ``results_table`` to ``stream`` (plain text when it is not a terminal)."""
    from rich.console import Console

    Console(file=stream, width=160, soft_wrap=False).print(results_table(checks))


def raise_if_failed(checks: Sequence[HostCheck]) -> None:
    """``PlanError`` with ``failure_message`` when any host failed."""
    message = failure_message(checks)
    if message:
        raise PlanError(message)
