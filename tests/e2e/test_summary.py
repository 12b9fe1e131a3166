"""MindSpore's own summary writer, in a process of its own, frames records the way
``wrn.summary`` does. The framing, the protobuf and the writers are in unit/test_summary.py."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from tests.support.processes import fake_env
from wrn.summary import read_summary


@pytest.mark.slow  # starts MindSpore's summary writer processes
def test_same_framing_as_mindspores_own_summary_record(tmp_path):
    script = textwrap.dedent(f"""
        import numpy as np
        import mindspore as ms
        from mindspore.train.summary import SummaryRecord
        with SummaryRecord({str(tmp_path / 'ms')!r}, num_process=1) as rec:
            rec.add_value("scalar", "loss", ms.Tensor(np.array(0.5, np.float32)))
            rec.record(3)
    """)
    subprocess.run([sys.executable, "-c", script], env=fake_env(), check=True, timeout=120,
                   capture_output=True)
    files = [p for p in (tmp_path / "ms").iterdir() if re.search(r"\.summary\.\d+\.", p.name)
             and p.name.endswith("_MS")]
    assert len(files) == 1
    version, records = read_summary(files[0])  # every CRC checked by our reader
    assert version == "MindSpore.Event:1"
    assert [(s, v) for s, _w, v in records] == [(3, {"loss": 0.5})]
