"""A stand-in for ``python -m wrn.train`` (and ``wrn.scheduler``) in launcher tests.

It speaks the real event format (``wrn.contract.emit``) and takes the real worker's
``--config FILE --output-dir DIR`` arguments, but trains nothing, so supervisor tests run in
seconds. Behaviour comes from environment variables (``FAKE_*``); the ones marked "target"
apply only to the rank named by ``FAKE_RANK`` (default: every rank).

    FAKE_STEPS=5          steps per epoch          FAKE_EPOCHS=1       epochs
    FAKE_STEP_S=0.05      seconds per step         FAKE_STARTUP_S=0    seconds before "start"
    FAKE_PLAIN=1          plain log lines per step
    FAKE_RANK=k           the rank the behaviours below apply to
    FAKE_EXIT_CODE=3 + FAKE_EXIT_AT=2     (target) print an error event and exit 3 at step 2
    FAKE_ERROR=text                       that error event's message (default "fake failure")
    FAKE_HANG_AT=2                        (target) stop emitting events at step 2 (sleep)
    FAKE_KILL_AT=2                        (target) SIGKILL itself at step 2
    FAKE_IGNORE_TERM=1                    ignore SIGTERM (the launcher must SIGKILL)
    FAKE_GRANDCHILD=1                     start a sleeping child process (same group)
    FAKE_DIVERGE=1                        (target) report a different parameter checksum
    FAKE_CONNECT=1                        register with the scheduler at MS_SCHED_HOST:PORT
    FAKE_CRASH_AFTER_FINISH=1             (target) SIGSEGV itself after its finish event

``WRN_FAULT`` (``wrn.faults``) and the stacks file (``wrn.stacks``) work as in the real
worker: faults fire before a global step, the position is kept at every step.

``--resume-from DIR`` (a restart or ``--resume``) continues after the newest ``fake-e<N>.ckpt``
in DIR (epoch N+1; its start event names the file in ``resumed_from``), and the faults above
(exit, hang, kill) then stay off: they rehearse the first attempt's failure only.

``--scheduler`` runs the fake scheduler instead: it binds MS_SCHED_PORT (so two runs on one
port fail), waits until MS_WORKER_NUM workers have connected and disconnected, and exits 0.
Every process writes its pid (and a grandchild's) to ``$FAKE_PID_DIR/<name>.pid`` if set.

The command lines that run it are ``FAKE_WORKER_CMD`` and ``FAKE_SCHEDULER_CMD`` in
``tests/support/launches.py``. It imports the project (``wrn.contract``) but none of the test
helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from wrn import contract as events
from wrn import faults, stacks


def _env_int(name: str, default: int | None = None) -> int | None:
    raw = os.environ.get(name, "")
    return int(raw) if raw.strip() else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    return float(raw) if raw.strip() else default


def _record_pid(name: str) -> None:
    pid_dir = os.environ.get("FAKE_PID_DIR")
    if pid_dir:
        Path(pid_dir).mkdir(parents=True, exist_ok=True)
        Path(pid_dir, f"{name}.pid").write_text(str(os.getpid()))


def run_scheduler() -> int:
    host = os.environ["MS_SCHED_HOST"]
    port = int(os.environ["MS_SCHED_PORT"])
    workers = int(os.environ["MS_WORKER_NUM"])
    _record_pid("scheduler")
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind((host, port))
    except OSError as exc:
        print(f"fake scheduler: cannot bind {host}:{port}: {exc}", flush=True)
        return 1
    server.listen(workers)
    print(f"fake scheduler listening on {host}:{port} for {workers} workers", flush=True)
    server.settimeout(_env_float("FAKE_SCHED_TIMEOUT", 60.0))
    conns = []
    try:
        for _ in range(workers):
            conn, _addr = server.accept()
            conns.append(conn)
        for conn in conns:  # a worker's end closes when it exits
            conn.settimeout(_env_float("FAKE_SCHED_TIMEOUT", 60.0))
            while conn.recv(64):
                pass
    except TimeoutError:
        print("fake scheduler: timed out waiting for workers", flush=True)
        return 1
    print("fake scheduler: every worker has finished", flush=True)
    return 0


def _connect() -> socket.socket:
    addr = (os.environ["MS_SCHED_HOST"], int(os.environ["MS_SCHED_PORT"]))
    deadline = time.time() + 20
    while True:
        try:
            return socket.create_connection(addr, timeout=5)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)


def _newest_checkpoint(directory: str | None) -> tuple[int, str | None]:
    """(epoch, path) of the newest fake checkpoint in ``directory``; (0, None) if there is none."""
    found = []
    for path in Path(directory or "/nonexistent").glob("fake-e*.ckpt"):
        number = path.stem[len("fake-e"):]
        if number.isdigit():
            found.append((int(number), str(path)))
    return max(found) if found else (0, None)


def run_worker(output_dir: str | None, resume_from: str | None = None) -> int:
    position = stacks.install()
    rank = int(os.environ.get("RANK_ID", "0"))
    injector = faults.from_env(rank)
    world = int(os.environ.get("RANK_SIZE", "1"))
    done_epochs, resumed_from = _newest_checkpoint(resume_from)
    target = _env_int("FAKE_RANK")
    me = (target is None or target == rank) and resumed_from is None
    steps, epochs = _env_int("FAKE_STEPS", 5), _env_int("FAKE_EPOCHS", 1)
    step_s, plain = _env_float("FAKE_STEP_S", 0.05), _env_int("FAKE_PLAIN", 1)
    _record_pid(f"rank{rank}")
    if os.environ.get("FAKE_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.environ.get("FAKE_GRANDCHILD"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        pid_dir = os.environ.get("FAKE_PID_DIR")
        if pid_dir:
            Path(pid_dir, f"rank{rank}-child.pid").write_text(str(child.pid))
    link = _connect() if os.environ.get("FAKE_CONNECT") else None
    print(f"fake worker rank {rank}/{world} pid {os.getpid()} OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}", flush=True)
    time.sleep(_env_float("FAKE_STARTUP_S", 0.0))
    events.emit(events.Start(rank=rank, world_size=world, model="fake", params=1234, steps_per_epoch=steps,
         epochs=epochs, batch_size=4, device_target="CPU", host=socket.gethostname(), pid=os.getpid(),
         resumed_from=resumed_from))
    global_step = done_epochs * steps
    for epoch in range(done_epochs + 1, epochs + 1):
        for step in range(1, steps + 1):
            global_step += 1
            if position is not None:
                position.set(f"epoch={epoch} step={step} global_step={global_step} "
                             f"steps_per_epoch={steps}")
            if injector is not None:
                injector.before_step(global_step)
            if me and _env_int("FAKE_EXIT_AT") == global_step:
                print(f"rank {rank}: failing on purpose at step {global_step}", flush=True)
                events.emit(events.Error(rank=rank, message=os.environ.get("FAKE_ERROR", "fake failure"),
                     error_kind="RuntimeError"))
                return _env_int("FAKE_EXIT_CODE", 3)
            if me and _env_int("FAKE_KILL_AT") == global_step:
                print(f"rank {rank}: killing myself at step {global_step}", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            if me and _env_int("FAKE_HANG_AT") == global_step:
                print(f"rank {rank}: hanging at step {global_step}", flush=True)
                while True:
                    time.sleep(60)
            time.sleep(step_s)
            if injector is not None and injector.factor:
                injector.slow_down(step_s)
            for i in range(plain):
                print(f"rank {rank} plain line {i} of step {global_step}", flush=True)
            events.emit(events.Step(rank=rank, epoch=epoch, step=step, global_step=global_step,
                 loss=round(2.0 / global_step, 4), lr=0.1, imgs_per_s=100.0 + rank, data_wait_s=0.0, step_s=step_s))
        events.emit(events.EpochEnd(rank=rank, epoch=epoch, loss=round(2.0 / global_step, 4), seconds=steps * step_s,
             imgs_per_s=100.0 + rank))
        events.emit(events.Eval.of(rank, epoch=epoch, top1=0.5 + 0.1 * epoch, correct=5, total=10, loss=0.5))
        if rank == 0 and output_dir:
            path = Path(output_dir, "checkpoints", f"fake-e{epoch}.ckpt")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("fake")
            events.emit(events.Checkpoint(rank=rank, epoch=epoch, step=steps, global_step=global_step, path=str(path)))
    if rank == 0 and output_dir:
        Path(output_dir, "eval.json").write_text(json.dumps({"top1": 0.95}))
    checksum = "abc123" + (f"-{rank}" if me and os.environ.get("FAKE_DIVERGE") else "")
    events.emit(events.Finish(rank=rank, status="ok", checksum=checksum, seconds=epochs * steps * step_s, top1=0.95))
    if link is not None:
        link.close()
    if me and os.environ.get("FAKE_CRASH_AFTER_FINISH"):
        os.kill(os.getpid(), signal.SIGSEGV)  # as MindSpore's shutdown has been seen to do
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scheduler", action="store_true")
    parser.add_argument("--config")
    parser.add_argument("--output-dir")
    parser.add_argument("--resume-from")
    args = parser.parse_args()
    return run_scheduler() if args.scheduler else run_worker(args.output_dir, args.resume_from)


if __name__ == "__main__":
    sys.exit(main())
