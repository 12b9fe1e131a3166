"""Real multi-process data parallelism on CPU (MindSpore dynamic cluster started by msrun)."""

import subprocess
import sys

import numpy as np
import pytest

from tests.support import REPO
from tests.support.processes import run_msrun, worker_env

pytestmark = pytest.mark.slow


def test_two_ranks_of_16_equal_one_process_of_32(tmp_path):
    """Gradients really are averaged: 2 ranks x batch 16 == 1 process x batch 32 (no BN)."""
    script = str(REPO / "tests" / "support" / "dp_equivalence_worker.py")
    single = subprocess.run([sys.executable, script, str(tmp_path / "one.npz")], cwd=REPO,
                            env=worker_env(), capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    dist = run_msrun([script, str(tmp_path / "two.npz")], tmp_path / "logs")
    logs = "".join(p.read_text(errors="replace") for p in sorted((tmp_path / "logs").glob("worker_*.log")))
    assert dist.returncode == 0, logs[-3000:]
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(one) == sorted(two)
    assert len(one) == 6
    worst = max(float(np.abs(one[k] - two[k]).max()) for k in one)
    assert worst < 1e-5, worst
    # and the two replicas hold bitwise-equal parameters
    sums = [line.split("checksum ")[1].split()[0] for line in logs.splitlines() if "checksum" in line]
    assert len(sums) == 2
    assert sums[0] == sums[1]
