"""Launching inside a Slurm allocation: the nodes from the allocation, one node agent per node as
an ``srun`` step.

Inside an allocation (``SLURM_JOB_ID`` set: salloc, sbatch, an interactive srun shell) the nodes
are the job's (``scontrol show hostnames $SLURM_JOB_NODELIST``, in Slurm's order: the first one is
the master, rank 0 and the scheduler), their addresses are Slurm's ``NodeAddr`` (``scontrol show
node``) and each node runs ``--devices-per-node`` devices, else as many as the job has tasks (or
GPUs) there. ``SlurmBackend.discover`` pre-flights every node at once with one step running the
SSH pre-flight's probe (``launcher.backends.preflight.PROBE``).

``SlurmBackend`` starts each node's agent as ``srun --nodes=1 --ntasks=1 -w NODE --overlap
python -P -m launcher.agent``: the agent protocol runs over srun's stdin/stdout exactly as over an
SSH channel. Every process of the run is then inside a step of the job, so ``scancel`` reaches
them all (Slurm's process tracking), and the agents stop their workers when the launcher goes
(stdin EOF, SIGTERM). Files of the run directory on a node (``put``/``get``/``list_dir``/
``same_file``) and the scheduler port check are small python steps on that node.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster.errors import PlanError
from cluster.plan import Node
from launcher.backends.base import (
    Backend,
    BackendError,
    Discovery,
    DiscoveryRequest,
    module_argv,
    python_path,
    source_root,
)
from launcher.backends.ports import reserve_port
from launcher.config import LaunchError
from launcher.installation import versions
from launcher.rundir.layout import SLURM_JSON
from wrn.contract import STOP_ON_SIGNAL_ENV
from wrn.fileio import write_atomic

if TYPE_CHECKING:
    from launcher.session.resources import HeldResources

#: Seconds a Slurm query (scontrol, squeue, sacct) may take before it is given up.
QUERY_TIMEOUT = 30.0
#: Seconds a small step on a node (pre-flight probe, file copy, port check) may take.
STEP_TIMEOUT = 120.0


def job_id(env: Mapping[str, str] | None = None) -> str | None:
    """The id of the Slurm job this process runs in, None outside an allocation."""
    value = (env if env is not None else os.environ).get("SLURM_JOB_ID", "").strip()
    return value or None


def _query(argv: Sequence[str], what: str) -> str:
    """stdout of a Slurm command; ``PlanError`` naming ``what`` if it fails."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=QUERY_TIMEOUT)
    except FileNotFoundError:
        raise PlanError(f"{what}: {argv[0]} is not installed here; the Slurm launcher needs "
                        f"Slurm's commands on PATH (or use --launcher local/ssh)") from None
    except subprocess.TimeoutExpired:
        raise PlanError(f"{what}: {' '.join(argv)} did not answer in {QUERY_TIMEOUT:g} s; is "
                        f"slurmctld reachable?") from None
    if done.returncode != 0:
        raise PlanError(f"{what}: {' '.join(argv)} failed ({done.stderr.strip()[-300:] or 'exit '}"
                        f"{'' if done.stderr.strip() else done.returncode})")
    return done.stdout


def node_names(nodelist: str) -> list[str]:
    """A Slurm node list (``n[1-2],gpu7``) expanded by ``scontrol show hostnames``."""
    out = _query(["scontrol", "show", "hostnames", nodelist], f"node list {nodelist!r}")
    return [line.strip() for line in out.splitlines() if line.strip()]


def node_addresses(names: Sequence[str]) -> dict[str, str]:
    """Each node's ``NodeAddr`` (the node's name when Slurm has none of its own)."""
    out = _query(["scontrol", "-o", "show", "node", ",".join(names)], "node addresses")
    found = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("NodeName"):
            found[fields["NodeName"]] = fields.get("NodeAddr") or fields["NodeName"]
    return {n: found.get(n, n) for n in names}


def tasks_per_node(text: str, count: int) -> list[int]:
    """``SLURM_TASKS_PER_NODE`` or ``SLURM_JOB_CPUS_PER_NODE`` (``2(x3),1``) as one number per
    node (``count`` nodes); [] when it does not say that."""
    out: list[int] = []
    for part in filter(None, text.split(",")):
        m = re.fullmatch(r"([0-9]{1,6})(?:\(x([0-9]{1,6})\))?", part.strip())
        if not m:
            return []
        repeat = int(m.group(2) or 1)
        if len(out) + repeat > count:
            return []
        out += [int(m.group(1))] * repeat
    return out if len(out) == count and all(out) else []


def allocation_devices(env: Mapping[str, str], count: int, backend: str) -> list[int]:
    """Devices per node the allocation implies: its GPUs per node (GPU), else its tasks per
    node, else 1."""
    if backend == "gpu" and env.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return [int(env["SLURM_GPUS_ON_NODE"])] * count
    if env.get("SLURM_NTASKS_PER_NODE", "").isdigit():
        return [int(env["SLURM_NTASKS_PER_NODE"])] * count
    return tasks_per_node(env.get("SLURM_TASKS_PER_NODE", ""), count) or [1] * count


def srun_argv(node: str, command: Sequence[str], *, label: bool = False,
              nodes: int = 1, cpus: int | None = None) -> list[str]:
    """``srun`` running ``command`` as one task on ``node`` (one task on each of ``nodes``
    nodes when ``node`` names several), alongside whatever the job runs already
    (``--overlap``), unbuffered, unbound, with ``cpus`` CPUs (the job's CPUs on that node, so
    that the workers the task starts are not confined to one CPU where Slurm constrains
    steps)."""
    argv = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1", "--overlap",
            "--unbuffered", "--cpu-bind=none", "--kill-on-bad-exit=0", "--quiet"]
    if cpus:
        argv.append(f"--cpus-per-task={cpus}")
    if node:
        argv += ["-w", node]
    if label:
        argv.append("--label")
    return argv + ["--", *command]


def _python_env() -> dict[str, str]:
    """This process's environment with the project importable, for steps (srun exports it)."""
    env = dict(os.environ)
    path = python_path(env.get("PYTHONPATH"))
    if path:
        env["PYTHONPATH"] = path
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONSAFEPATH"] = "1"
    return env


def run_step(node: str, code: str, args: Sequence[str] = (), data: bytes = b"",
             nodes: int = 1, label: bool = False) -> tuple[int, bytes, str]:
    """Run python ``-c code ARGS`` as a step on ``node`` (one task on each of ``nodes`` nodes)
    with ``data`` on its stdin; (exit status, stdout, stderr)."""
    argv = srun_argv(node, [sys.executable, "-P", "-c", code, *args], nodes=nodes, label=label)
    try:
        done = subprocess.run(argv, input=data, capture_output=True, timeout=STEP_TIMEOUT,
                              env=_python_env())
    except subprocess.TimeoutExpired:
        return 124, b"", f"the step did not end within {STEP_TIMEOUT:g} s"
    except FileNotFoundError:
        return 127, b"", "srun is not installed here"
    return done.returncode, done.stdout, done.stderr.decode(errors="replace")


class SrunProcess:
    """An agent's ``srun`` step: the ``Popen``, with ``kill()`` that lets Slurm end the step
    (SIGTERM, which srun forwards to the agent, then SIGKILL of srun after ``grace``)."""

    def __init__(self, popen: subprocess.Popen, grace: float) -> None:
        self.popen = popen
        self.stdin, self.stdout, self.stderr = popen.stdin, popen.stdout, popen.stderr
        self.pid = popen.pid
        self.grace = grace
        self._killed_at: float | None = None

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def kill(self) -> None:
        """First call: close stdin and SIGTERM srun (forwarded to the step's task, whose agent
        stops its processes); later calls after ``grace``: SIGKILL srun, and Slurm ends the step."""
        if self.popen.poll() is not None:
            return
        now = time.monotonic()
        if self._killed_at is None:
            self._killed_at = now
            try:
                if self.stdin is not None:
                    self.stdin.close()
            except OSError:
                pass
            self.popen.send_signal(signal.SIGTERM)
        elif now - self._killed_at >= self.grace:
            self.popen.kill()

    def finish(self, timeout: float) -> None:
        """``kill()`` and wait up to ``timeout`` for the step to end, then SIGKILL srun."""
        self.kill()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


# Small python programs run on a node as steps (the run directory's files there).
_PUT = ("import json,os,sys;d=sys.argv[1];files=json.loads(sys.stdin.readline());"
        "os.makedirs(d,exist_ok=True)\n"
        "for name,size in files:\n"
        " data=sys.stdin.buffer.read(size);p=os.path.join(d,name);t=p+'.part'\n"
        " open(t,'wb').write(data);os.replace(t,p)")
_CAT = "import sys;sys.stdout.buffer.write(open(sys.argv[1],'rb').read())"
_LIST = ("import json,os,sys\ntry:\n print(json.dumps([(e.name,e.stat(follow_symlinks=False).st_size,"
         "e.is_file(follow_symlinks=False)) for e in os.scandir(sys.argv[1])]))\n"
         "except FileNotFoundError:\n print('null')")
_SAME = ("import sys\ntry:\n print(open(sys.argv[1],encoding='utf-8',errors='replace').read()"
         "==sys.stdin.read())\nexcept OSError:\n print(False)")
_PORT = "import sys;from launcher.backends.ports import port_is_free;print(port_is_free(int(sys.argv[1])))"


class SlurmBackend(Backend):
    """Agents as ``srun`` steps of the job this launcher runs in."""

    local = False

    def __init__(self, job: str, nodes: Sequence[str], python: str | None = None,
                 grace: float = 10.0, cpus: Mapping[str, int] | None = None) -> None:
        self.job = job
        self.nodes = list(nodes)
        self.cpus = dict(cpus or {})  # node -> the job's CPUs there (None: Slurm's default)
        self.python = python or sys.executable
        self.grace = grace
        self._procs: list[SrunProcess] = []
        self._lock = threading.Lock()

    @classmethod
    def discover(cls, request: DiscoveryRequest, held: HeldResources) -> Discovery:
        """The nodes of the Slurm job this launcher runs in, pre-flighted in one step (versions,
        imports, data, devices), then the scheduler port checked on the first node."""
        config = request.config
        if request.target == "ascend":
            raise LaunchError("--launcher slurm runs CPU and GPU workers; an Ascend run inside an "
                              "allocation needs a rank table per node: use --launcher local with "
                              "--rank-table on each node (srun wrn-launch ...)")
        nodes, backend = slurm_nodes(os.environ, versions(), request.target, request.train.data_path,
                                     config.devices_per_node, config.dev_dir,
                                     config.supervisor.grace + 5.0)
        held.backend = backend
        if sum(len(n.device_ids) for n in nodes) > 1:
            held.port = reserve_port(config.port, config.port_range)
            try:
                free = backend.port_free(nodes[0].host, held.port.port)
            except BackendError as exc:
                raise LaunchError(f"Slurm job {backend.job}: {exc}; check that the job's first node "
                                  f"can run {sys.executable}") from None
            if not free:
                raise LaunchError(f"scheduler port {held.port.port} is in use on the first node "
                                  f"{nodes[0].host} of Slurm job {backend.job}; pass another --port")
        notes = {"slurm": f"job {backend.job}, " + ", ".join(f"{n.host} {n.address} "
                                                              f"({len(n.device_ids)})" for n in nodes),
                 "master": f"{nodes[0].host} (scheduler {nodes[0].address}:"
                           f"{held.port_number or '-'})"}
        return Discovery(nodes, notes=notes)

    def worker_env(self) -> dict[str, str]:
        """Preemption: on SIGTERM/SIGUSR1 every rank finishes its step, checkpoints and stops."""
        return {STOP_ON_SIGNAL_ENV: "1"}

    def record_run(self, run_dir: Path, nodes: Sequence[Node]) -> None:
        """``slurm.json``: the job and its nodes (``record_job``)."""
        record_job(run_dir, self.job, nodes)

    def agent_cmd(self, host: str) -> list[str]:
        return srun_argv(host, module_argv(self.python, "launcher.agent"),
                         cpus=self.cpus.get(host))

    def spawn_agent(self, host: str) -> SrunProcess:
        try:
            popen = subprocess.Popen(self.agent_cmd(host), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=_python_env(), close_fds=True, process_group=0)
        except OSError as exc:
            raise BackendError(host, f"cannot start the node agent on {host} with srun "
                                     f"({exc.strerror or exc})") from None
        proc = SrunProcess(popen, self.grace)
        with self._lock:
            self._procs.append(proc)
        return proc

    def _step(self, host: str, code: str, args: Sequence[str], data: bytes, what: str) -> str:
        status, out, err = run_step(host, code, args, data)
        if status != 0:
            raise BackendError(host, f"{what} on {host} failed (srun exit {status}: "
                                     f"{err.strip()[-300:] or 'no output'})")
        return out.decode(errors="replace")

    def files_via(self, host: str) -> str:
        return "srun steps"

    def put(self, host: str, remote_dir: str, files: Mapping[str, str]) -> None:
        blobs = [(name, open(path, "rb").read()) for name, path in files.items()]
        header = json.dumps([(name, len(data)) for name, data in blobs]).encode() + b"\n"
        self._step(host, _PUT, [remote_dir], header + b"".join(d for _, d in blobs),
                   f"copying {', '.join(files)} into {remote_dir}")

    def get(self, host: str, remote: str, local: str) -> None:
        status, out, err = run_step(host, _CAT, [remote])
        if status != 0:
            if "FileNotFoundError" in err:
                raise FileNotFoundError(remote)
            raise BackendError(host, f"reading {remote} on {host} failed ({err.strip()[-300:]})")
        write_atomic(local, out)

    def list_dir(self, host: str, path: str) -> list[tuple[str, int, bool]]:
        found = json.loads(self._step(host, _LIST, [path], b"", f"listing {path}") or "null")
        if found is None:
            raise FileNotFoundError(path)
        return [tuple(e) for e in found]

    def same_file(self, host: str, path: str, content: str) -> bool:
        if host == self.nodes[0] and os.environ.get("SLURMD_NODENAME") == host:
            try:  # the launcher runs on this node: no step needed
                with open(path, encoding="utf-8", errors="replace") as fh:
                    return fh.read() == content
            except OSError:
                return False
        out = self._step(host, _SAME, [path], content.encode(), f"reading {path}")
        return out.strip() == "True"

    def port_free(self, host: str, port: int) -> bool:
        out = self._step(host, _PORT, [str(int(port))], b"", f"checking port {port}")
        return out.strip() == "True"

    def stop_agents(self, agents: Collection[Any] | None = None) -> None:
        """End the agent steps of ``agents`` (None: every one): stdin EOF and SIGTERM, then
        SIGKILL of srun after the grace period (Slurm then ends the step)."""
        with self._lock:
            procs = [p for p in self._procs if agents is None or p in agents]
            self._procs = [p for p in self._procs if p not in procs]
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.finish(self.grace)


# -- pre-flight and nodes -----------------------------------------------------------------------
def probe_nodes(names: Sequence[str], backend: str, data_path: str,
                dev_dir: str) -> list[dict[str, Any] | None]:
    """Run the pre-flight probe on every node in one step (task i on node i): each node's
    report, None for a node that gave none (``PlanError`` when none did)."""
    from launcher.backends.preflight import PROBE, PROBE_TAG

    fields: dict[str, Any] = {"backend": backend, "data_path": data_path, "port": None}
    if dev_dir != "/dev":
        fields["dev_dir"] = dev_dir
    reports: list[dict[str, Any] | None] = [None] * len(names)
    status, out, err = run_step(",".join(names), PROBE, [json.dumps(fields)], nodes=len(names),
                                label=True)
    for line in out.decode(errors="replace").splitlines():
        index, _, rest = line.partition(": ")
        if index.strip().isdigit() and rest.startswith(PROBE_TAG):
            try:
                reports[int(index)] = json.loads(rest[len(PROBE_TAG):])
            except (ValueError, IndexError):
                pass
    if not any(reports):
        raise PlanError(f"Slurm pre-flight: the probe step on {', '.join(names)} failed (srun "
                        f"exit {status}: {err.strip()[-400:] or 'no output'}); check that the "
                        f"job's nodes can run {sys.executable}")
    return reports


def slurm_nodes(env: Mapping[str, str], want: Mapping[str, str | None], backend: str,
                data_path: str, devices_per_node: int | None, dev_dir: str = "/dev",
                grace: float = 10.0, table_stream: Any = None) -> tuple[tuple[Node, ...], SlurmBackend]:
    """The job's nodes, pre-flighted in one step; ``PlanError`` if any node fails. (The
    scheduler port is checked on the first node afterwards: ``SlurmBackend.port_free``.)"""
    from launcher.backends.preflight import HostCheck, judge, print_table, raise_if_failed
    from launcher.backends.sshclient import RemoteHost

    job = job_id(env)
    if job is None:
        raise PlanError("--launcher slurm runs inside a Slurm allocation, but SLURM_JOB_ID is not "
                        "set; start it under salloc or sbatch (or use 'wrn-launch sbatch')")
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodelist:
        raise PlanError(f"Slurm job {job}: SLURM_JOB_NODELIST is not set; run inside the "
                        f"allocation's shell or batch script")
    names = node_names(nodelist)
    addresses = node_addresses(names)
    counts = [devices_per_node] * len(names) if devices_per_node else \
        allocation_devices(env, len(names), backend)
    stream = table_stream or sys.stderr
    print(f"launching on Slurm job {job} nodes " + ", ".join(
        f"{n} ({addresses[n]}, {c} device(s))" for n, c in zip(names, counts)), file=stream,
        flush=True)
    t0 = time.monotonic()
    reports = probe_nodes(names, backend, data_path, dev_dir)
    seconds = time.monotonic() - t0
    checks = []
    for i, name in enumerate(names):
        check = HostCheck(name, addresses[name], seconds)
        host = RemoteHost(name, None, sys.executable, source_root(), os.getcwd())  # type: ignore[arg-type]
        devices = None if backend == "cpu" else tuple(range(counts[i]))
        if reports[i] is None:
            check.problems.append(f"node {name} gave no pre-flight report; check that "
                                  f"{sys.executable} runs there")
        else:
            judge(check, reports[i], want, host, devices, None)
        checks.append(check)
    print_table(checks, stream)
    raise_if_failed(checks)
    nodes = tuple(Node(name, addresses[name], tuple(range(counts[i])), tuple(checks[i].cpus),
                       python=sys.executable, pythonpath=source_root())
                  for i, name in enumerate(names))
    job_cpus = tasks_per_node(env.get("SLURM_JOB_CPUS_PER_NODE", ""), len(names))
    return nodes, SlurmBackend(job, names, grace=grace, cpus=dict(zip(names, job_cpus)))


# -- the job of a run directory ------------------------------------------------------------------
def record_job(run_dir: Path, job: str, nodes: Sequence[Node]) -> None:
    """Write ``slurm.json`` (job id, nodes) into the run directory, keeping what ``wrn-launch
    sbatch`` wrote there at submission."""
    path = Path(run_dir) / SLURM_JSON
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    info.update({"job_id": job, "nodes": [n.host for n in nodes]})
    write_atomic(path, json.dumps(info) + "\n")


def run_job_id(run_dir: Path) -> str | None:
    """The Slurm job id recorded in a run directory's ``slurm.json`` (None: not a Slurm run)."""
    try:
        info = json.loads((Path(run_dir) / SLURM_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    job = info.get("job_id") if isinstance(info, dict) else None
    return str(job) if isinstance(job, (str, int)) and str(job).strip() else None


def job_states(jobs: Sequence[str]) -> dict[str, str]:
    """Each job's state: ``squeue`` for the jobs Slurm still holds, ``sacct`` for the others
    when accounting is there; jobs neither knows are missing. One call each, never raises."""
    states: dict[str, str] = {}
    wanted = sorted(set(jobs))
    for argv in (["squeue", "-h", "-o", "%i %T", "-j", ",".join(wanted)],
                 ["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(wanted)]):
        missing = [j for j in wanted if j not in states]
        if not missing:
            break
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        for line in done.stdout.splitlines():
            parts = line.replace("|", " ").split()
            if len(parts) >= 2 and parts[0] in missing:
                states[parts[0]] = parts[1]
    return states
