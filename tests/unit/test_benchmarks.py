"""The benchmark harness: result records, the ratio/target check, the saved results' schema.

The benchmarks themselves take minutes and need a quiet machine, so they are not run here
(``make bench``); this keeps their shared code and the committed results honest."""

import json
import sys

import pytest

from benchmarks import common, run_all


def test_compare_takes_medians_and_checks_the_target():
    r = common.compare("x", [1.0, 3.0, 2.0], [2.0, 2.0, 4.0], unit="s", target="<= 1.0", peer_name="p")
    assert (r["median"], r["peer_median"], r["min"], r["max"], r["ratio"]) == (2.0, 2.0, 1.0, 3.0, 1.0)
    assert r["met"] is True
    assert set(common.RESULT_KEYS) <= set(r)
    worse = common.compare("y", [3.0] * 5, [2.0] * 5, unit="s", target="<= 1.03", peer_name="p")
    assert worse["ratio"] == 1.5
    assert worse["met"] is False
    higher = common.compare("z", [190.0], [200.0], unit="images/s", target=">= 0.9", peer_name="p",
                            higher_is_better=True)
    assert higher["ratio"] == 0.95
    assert higher["met"] is True


def test_absolute_targets_decide_on_our_median():
    r = common.compare("teardown", [0.3, 0.2, 0.4], [30.0, 28.0, 31.0], unit="s", target="median < 3 s",
                       peer_name="msrun", met=lambda median, ratio: median < 3)
    assert r["met"] is True
    assert r["ratio"] == pytest.approx(0.01)


def test_markdown_has_one_row_per_result():
    obj = {"results": [common.compare("a", [1.0], [2.0], unit="s", target="<= 1.0", peer_name="p"),
                       common.compare("b", [3.0], [2.0], unit="s", target="<= 1.0", peer_name="q")]}
    table = run_all.markdown([obj]).splitlines()
    assert len(table) == 4
    assert "| a |" in table[2]
    assert "**no**" in table[3]


def test_saved_results_follow_the_schema():
    if not run_all.RESULTS.exists():
        pytest.skip("no saved benchmark run yet")
    results = json.loads(run_all.RESULTS.read_text())
    assert isinstance(results, list)
    assert results
    for r in results:
        assert list(r) == list(common.RESULT_KEYS)
        assert r["ratio"] == pytest.approx(r["median"] / r["peer_median"], rel=1e-2)
        if not r["target"].startswith("median"):
            assert r["met"] == common._check(r["ratio"], r["target"])
    full = json.loads(run_all.LAST_RUN.read_text())
    assert [r["name"] for o in full["benchmarks"] for r in o["results"]] == [r["name"] for r in results]
    assert all(len(r["runs"]) >= 5 and len(r["peer_runs"]) >= 5
               for o in full["benchmarks"] for r in o["results"])


def test_the_scale_stand_in_speaks_the_event_format():
    import os
    import subprocess

    from wrn.contract import parse_record as parse

    env = {**os.environ, "SIM_STEPS": "3", "SIM_STEP_S": "0.01", "RANK_ID": "2", "RANK_SIZE": "4"}
    out = subprocess.run([sys.executable, "-S", str(common.ROOT / "benchmarks" / "_sim_worker.py")],
                         env=env, capture_output=True, text=True, check=True).stdout
    events = [parse(line) for line in out.splitlines()]
    assert None not in events
    assert [e["event"] for e in events] == ["start", "step", "step", "step", "epoch_end", "finish"]
    assert {e["rank"] for e in events} == {2}
    assert events[0]["world_size"] == 4
    assert events[3]["global_step"] == 3
