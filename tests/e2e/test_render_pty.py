"""``wrn-launch --devices 2`` (fake workers) under a pseudo-terminal, piped to a file, and with
``--json``: the live dashboard appears on a terminal and only there. A few seconds each."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.support.launches import launcher_argv
from tests.support.processes import fake_env, worker_env

ROWS, COLS = 40, 120
FAKE = {"steps": 6, "epochs": 2, "step_s": 0.25}


def _env(real: bool = False) -> dict[str, str]:
    env = fake_env(**FAKE)
    if real:
        env.update(worker_env())
    env["TERM"] = "xterm-256color"
    for key in ("NO_COLOR", "COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(key, None)
    return env


def run_in_pty(tmp_path: Path, name: str, *args: str, timeout: float = 60,
               real: bool = False) -> tuple[int, str]:
    """Run the launcher with its stdin/stdout/stderr on a ROWS x COLS pseudo-terminal
    (``real``: the real MindSpore workers instead of the fake ones)."""
    common = ("--devices", "2", "--run-dir", str(tmp_path / name), "--grace", "1", *args)
    argv = [sys.executable, "-m", "launcher.cli", *common] if real else launcher_argv(*common)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=_env(real), cwd=tmp_path,
                            start_new_session=True, close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer of the terminal has closed it
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_live_view_on_a_terminal_then_the_summary(tmp_path):
    code, out = run_in_pty(tmp_path, "tty-run")
    assert code == 0, out[-3000:]
    assert "\x1b[" in out  # colours and cursor movement: a live display
    assert "\x1b[?25l" in out  # the cursor is hidden while the dashboard redraws...
    assert "\x1b[?25h" in out  # ...and shown again afterwards
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert plain.count("wrn-launch · tty-run") >= 2  # drawn, then redrawn
    assert re.search(r"rank\s+host\s+dev\s+pid\s+state", plain)
    assert "world 2" in plain
    assert "imgs/s" in plain
    assert re.search(r"step \d+/12", plain)
    assert "wrn-launch summary" in plain
    assert "succeeded" in plain
    assert "replicas in sync" in plain
    assert plain.rfind("wrn-launch summary") > plain.rfind("wrn-launch · tty-run")  # summary last


@pytest.mark.slow
def test_live_view_of_real_workers_on_a_terminal(tmp_path):
    """The same with real MindSpore workers: one short epoch of the built-in default."""
    code, out = run_in_pty(tmp_path, "real-tty", "--set", "epoch_size=1", "--set", "eval_interval=0",
                           timeout=300, real=True)
    assert code == 0, out[-3000:]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out)
    assert "\x1b[" in out
    assert "wrn-launch · real-tty" in plain
    assert re.search(r"rank\s+host\s+dev\s+pid\s+state", plain)
    assert "imgs/s" in plain
    assert "wrn-launch summary" in plain
    assert "succeeded" in plain
    assert "replicas in sync" in plain


def test_same_run_piped_to_a_file_has_no_escape_sequences(tmp_path):
    log = tmp_path / "out.log"
    argv = launcher_argv("--devices", "2", "--run-dir", str(tmp_path / "piped"), "--grace", "1")
    with open(log, "w") as fh:
        code = subprocess.run(argv, stdout=fh, stderr=subprocess.STDOUT, env=_env(), cwd=tmp_path,
                              timeout=60).returncode
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "\x1b" not in text
    assert "\r" not in text
    lines = text.splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines)
    assert any("epoch 2/2 step 6" in line for line in lines)  # a line per interval
    assert any("epoch 1 done" in line for line in lines)     # and per epoch
    assert any("replicas in sync" in line for line in lines)


def test_json_flag_streams_events_even_on_a_terminal(tmp_path):
    code, out = run_in_pty(tmp_path, "json-run", "--json")
    assert code == 0, out[-3000:]
    assert "\x1b" not in out
    records = [json.loads(line) for line in out.replace("\r\n", "\n").splitlines() if line.strip()]
    workers = [r for r in records if "source" not in r]
    assert {r["event"] for r in workers} >= {"start", "step", "epoch_end", "eval", "finish"}
    assert sum(r["event"] == "step" for r in workers) == 2 * 12
    metrics = (tmp_path / "json-run" / "metrics.jsonl").read_text().splitlines()
    assert workers == [json.loads(line) for line in metrics]  # exactly what metrics.jsonl holds
    launcher = [r["event"] for r in records if r.get("source") == "launcher"]
    assert launcher[0] == "run_started"
    assert launcher[-1] == "summary"
    assert records[-1]["status"] == "succeeded"
