"""The data index: scanned once by one process, reused while the tree is unchanged, loaded by
every rank (wrn.dataindex). Trees of RP2K's shape are made with hard links (wrn.synth.linked_tree)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wrn import dataindex as X
from wrn import synth
from wrn.classindex import build_class_index
from wrn.datapath import DataError, count_images
from wrn.scan import ListingJob
from wrn.splits import scan_split

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A few real images to link to."""
    root = tmp_path_factory.mktemp("source")
    synth.generate(root, num_classes=3, train_per_class=4, test_per_class=2)
    return root


@pytest.fixture
def tree(tmp_path, source) -> Path:
    root = tmp_path / "data"
    synth.linked_tree(root, source, classes=70, train=700, test=90)
    return root


def test_linked_tree_has_the_asked_shape(tree):
    classes = build_class_index(tree)
    assert len(classes) == 70 and len(set(classes)) == 70
    assert any("（" in c and "）" in c for c in classes) and any("%" in c for c in classes)
    assert count_images(tree, "train") == 700 and count_images(tree, "test") == 90


def test_the_index_holds_what_a_scan_finds(tree, tmp_path):
    (tree / "train" / build_class_index(tree)[3] / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 200)
    index = X.obtain(tree, tmp_path / "run" / X.INDEX_DIR)
    assert index.built
    classes = build_class_index(tree)
    for split in ("train", "test"):
        want = scan_split(tree, split, classes, verify="quick")
        got = index.splits[split]
        assert list(got.files) == list(want.files)
        assert np.array_equal(got.labels, want.labels)
        assert got.skipped == want.skipped
        assert got.classes == tuple(classes)
    assert [why for _, why in index.train.skipped] == ["truncated JPEG (no end-of-image marker)"]
    assert "broken.jpg" in index.train.skip_message()
    assert not index.train.labels.flags.writeable
    assert index.train.files[-1] == list(index.train.files)[-1]
    assert index.train.files[2:4] == (index.train.files[2], index.train.files[3])


def test_the_scan_on_several_processes_equals_the_serial_one(tree):
    classes = build_class_index(tree)
    serial = scan_split(tree, "train", classes, verify="quick", workers=1)
    pooled = scan_split(tree, "train", classes, verify="quick", workers=3)
    assert serial.files == pooled.files and np.array_equal(serial.labels, pooled.labels)


def test_an_unchanged_tree_reuses_the_index_a_changed_one_gets_a_new_one(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    first = X.obtain(tree, folder)
    again = X.obtain(tree, folder)
    assert first.built and not again.built and again.path == first.path
    time.sleep(0.01)
    cls = build_class_index(tree)[5]
    os.link(next((tree / "train" / cls).iterdir()), tree / "train" / cls / "zz_new.jpg")
    changed = X.obtain(tree, folder)
    assert changed.built and changed.path != first.path and len(changed.train) == 701
    assert sorted(p.name for p in folder.iterdir()) == [changed.path.name]  # the old one is gone
    other = X.obtain(tree, folder, verify="off")
    assert other.built and other.path != changed.path


def test_rescan_builds_again_once_per_token(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    X.obtain(tree, folder)
    assert X.obtain(tree, folder, rescan="t1").built
    assert not X.obtain(tree, folder, rescan="t1").built
    assert not X.obtain(tree, folder).built  # a later restart without the flag reuses it
    assert X.obtain(tree, folder, rescan="t2").built


def test_many_processes_at_once_scan_once(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    code = ("import sys; from wrn import dataindex as X; "
            "i = X.obtain(sys.argv[1], sys.argv[2]); print('BUILT' if i.built else 'LOADED', len(i.train))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tree), str(folder)], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(o[0] for o in outs) == ["BUILT", "LOADED", "LOADED", "LOADED"]
    assert {o[1] for o in outs} == {"700"}
    assert not list(folder.glob("*.lock"))


def test_a_waiter_takes_over_from_a_dead_builder(tree, tmp_path, monkeypatch):
    folder = tmp_path / X.INDEX_DIR
    scan = X.ScanOnce(tree, folder)
    folder.mkdir()
    scan.lock.write_text("otherhost 1\n")  # a builder that died: its lock never changes
    monkeypatch.setattr(X, "STALE_S", 0.3)
    assert not scan.claim()
    lines = []
    t = time.monotonic()
    index = X.ScanOnce(tree, folder, log=lines.append).wait()
    assert index.built and time.monotonic() - t < 30
    assert any("builder that is gone" in line for line in lines)


def test_a_lock_released_without_an_index_makes_the_waiter_scan(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    scan = X.ScanOnce(tree, folder)
    assert scan.claim()
    scan._release()  # the builder failed
    assert X.ScanOnce(tree, folder).wait().built


def test_bad_data_is_a_data_error_and_leaves_no_lock(tmp_path):
    root = tmp_path / "data"
    (root / "train" / "a").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "train" / "a" / "x.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="no usable images"):
        X.obtain(root, tmp_path / X.INDEX_DIR)
    assert not list((tmp_path / X.INDEX_DIR).glob("*.lock"))


def test_a_damaged_index_file_is_rebuilt(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    first = X.obtain(tree, folder)
    raw = first.path.read_bytes()
    first.path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="not a usable data index"):
        X.load_index(first.path)
    assert X.obtain(tree, folder).built


def test_rescan_reaches_the_first_attempts_workers_only():
    from launcher.config import LaunchConfig
    from launcher.session.inputs import worker_args

    config = LaunchConfig(rescan=True)
    assert worker_args(config, first=True, rescan="abc") == ("--rescan", "abc")
    assert worker_args(config, first=False, rescan="abc") == ()


def test_the_rescan_flag_reaches_the_first_attempts_plan(tmp_path):
    from launcher.cli import build_parser
    from launcher.commands.launch import launch_config
    from launcher.session.prepare import prepare

    config = launch_config(build_parser().parse_args(["--rescan", "--devices", "2", "--backend", "cpu",
                                                      "--dry-run", "--run-dir", str(tmp_path / "r")]), (), [])
    assert config.rescan
    prepared, held = prepare(config)
    try:
        first = [p.argv for p in prepared.plan(0, held.port_number).processes if p.role == "worker"]
        later = [p.argv for p in prepared.plan(1, held.port_number).processes if p.role == "worker"]
    finally:
        held.close()
    tokens = {argv[argv.index("--rescan") + 1] for argv in first}
    assert len(tokens) == 1 and all("--rescan" not in argv for argv in later)


def _run_code(code: str, tree: Path) -> subprocess.CompletedProcess:
    """Python ``code`` in a new process with the project importable, ``tree`` as argv[1]."""
    return subprocess.run([sys.executable, "-c", code, str(tree)], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=300)


def test_the_scan_uses_helpers_once_mindspore_is_loaded_and_the_process_is_pinned(tree, tmp_path):
    """A rank that takes over a build after joining the cluster (MindSpore loaded: helpers
    come from a fork server) and binding itself to one core (helpers get the cores it had
    before) scans as well as one that starts before joining."""
    code = ("import os, sys, mindspore\n"
            "from wrn.classindex import build_class_index\n"
            "from wrn.splits import scan_split\n"
            "cpus = sorted(os.sched_getaffinity(0))\n"
            "os.sched_setaffinity(0, cpus[:1])\n"
            "c = build_class_index(sys.argv[1])\n"
            "a = scan_split(sys.argv[1], 'train', c, workers=2, cpus=cpus)\n"
            "b = scan_split(sys.argv[1], 'train', c, workers=1)\n"
            "print(a.files == b.files, len(a))\n")
    out = _run_code(code, tree)
    assert out.stdout.split() == ["True", "700"], out.stderr[-2000:]


def test_a_lock_of_a_process_that_is_gone_is_taken_over_at_once(tree, tmp_path):
    folder = tmp_path / X.INDEX_DIR
    folder.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    scan = X.ScanOnce(tree, folder)
    scan.lock.write_text(f"{os.uname().nodename} {dead}\n")
    t = time.monotonic()
    assert scan.wait().built and time.monotonic() - t < X.STALE_S / 2


def test_the_helpers_work_while_the_caller_holds_the_gil(tree, tmp_path):
    """A builder starts the scan, then MindSpore's init() holds the GIL for seconds: the helpers
    must not need this process meanwhile (a process pool's feeding thread did, and waited)."""
    code = ("import sys, time\n"
            "from wrn.classindex import build_class_index\n"
            "from wrn.scan import ListingJob\n"
            "c = build_class_index(sys.argv[1])\n"
            "job = ListingJob(sys.argv[1], ('train', 'test'), c, workers=2)\n"
            "t = time.monotonic(); sum(range(60_000_000)); held = time.monotonic() - t\n"
            "got = job.result()\n"
            "print(round(held, 2), round(job.seconds, 2), got['train'].count, got['test'].count)\n")
    out = _run_code(code, tree)
    held, seconds, train, test = out.stdout.split()
    assert (train, test) == ("700", "90"), out.stderr[-2000:]
    assert float(seconds) < float(held), out.stdout


#: Installed as sitecustomize in the scan tests' child processes (and so in helpers that are
#: spawned, not forked): each helper notes its pid in $SCAN_MARKS, then sleeps, or SIGKILLs
#: itself on a folder ending in $SCAN_DIE_ON.
_SLOW_SCAN = """
import os, signal, time
import wrn.scan as scan

def _scan_folder(args):
    folder = args[0]
    open(os.path.join(os.environ["SCAN_MARKS"], str(os.getpid())), "w").close()
    if os.environ.get("SCAN_DIE_ON") and folder.endswith(os.environ["SCAN_DIE_ON"]):
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(600)

scan._scan_folder = _scan_folder
"""


def _running(pid):  # a zombie nobody reaps (PID 1 in a container may not) has ended
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _slow_scan_child(tmp_path, tree, body, **env):
    """A child process with the slow scan installed, running ``body`` (``tree`` is argv[1])."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_SCAN)
    marks = tmp_path / "marks"
    marks.mkdir()
    code = ("import os, sys, time, types\nfrom wrn.classindex import build_class_index\n"
            "from wrn.datapath import DataError\nfrom wrn.scan import ListingJob\n" + body)
    proc = subprocess.Popen([sys.executable, "-c", code, str(tree)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}",
                                 "SCAN_MARKS": str(marks), **env})
    return proc, marks


@pytest.mark.parametrize("mindspore_loaded", [False, True], ids=["forked", "spawned"])
def test_the_helpers_die_with_the_process_that_started_them(tree, tmp_path, mindspore_loaded):
    """Killed mid-scan, a worker leaves no helper: forked ones, and spawned ones (MindSpore
    loaded), which a fork server had kept alive."""
    body = (("sys.modules['mindspore'] = types.ModuleType('mindspore')\n" if mindspore_loaded else "")
            + "c = build_class_index(sys.argv[1])\n"
            "job = ListingJob(sys.argv[1], ('train',), c, workers=2)\n"
            "print(*[p.pid for p, _ in job._helpers], flush=True)\n"
            "time.sleep(600)\n")
    proc, marks = _slow_scan_child(tmp_path, tree, body)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read() if proc.poll() is not None else pids
        deadline = time.monotonic() + 60  # both are scanning (their death signal is set)
        while len(list(marks.iterdir())) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(int(m.name) for m in marks.iterdir()) == sorted(pids)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while any(map(_running, pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in pids if _running(p)]


def test_a_helper_that_dies_is_an_error_at_once_not_after_the_others(tree, tmp_path):
    # 70 folders, 2 helpers: chunks of 70 // 32 = 2 folders, helper 1 starts with chunk 1, whose
    # first folder is the third; helper 0, whose result is read first, sleeps meanwhile
    victim = build_class_index(tree)[2]
    body = ("c = build_class_index(sys.argv[1])\n"
            "job = ListingJob(sys.argv[1], ('train',), c, workers=2)\n"
            "t = time.monotonic()\n"
            "try:\n"
            "    job.result()\n"
            "except DataError as exc:\n"
            "    print(round(time.monotonic() - t), exc, flush=True)\n")
    proc, _ = _slow_scan_child(tmp_path, tree, body, SCAN_DIE_ON=victim)
    try:
        out, err = proc.communicate(timeout=60)  # the other helper sleeps for 600 s
    finally:
        proc.kill()
    assert "was killed by SIGKILL" in out and "before it sent its result" in out, out + err[-2000:]
    assert "Traceback" not in err


def test_a_folder_that_cannot_be_listed_is_a_data_error_with_or_without_helpers(tree, tmp_path):
    classes = build_class_index(tree)
    for workers in (1, 2):
        job = ListingJob(tree, ("train",), classes, workers=workers)
        gone = tree / "train" / classes[-1]
        gone.rename(tmp_path / f"moved-{workers}")
        try:
            with pytest.raises(DataError, match=f"cannot list .*{classes[-1]}"):
                job.result()
        finally:
            (tmp_path / f"moved-{workers}").rename(gone)


def test_abandon_releases_the_lock_and_stops_the_helpers(tree, tmp_path):
    scan = X.ScanOnce(tree, tmp_path / X.INDEX_DIR)
    assert scan.claim()
    scan.start()
    helpers = [p for p, _ in scan._job._helpers]
    scan.abandon()
    assert not scan.lock.exists() and not any(p.is_alive() for p in helpers)
    other = X.ScanOnce(tree, tmp_path / X.INDEX_DIR)
    assert other.claim() and other.build().built
    X.ScanOnce(tree, tmp_path / "elsewhere").abandon()  # not the builder: nothing happens


def test_start_refuses_a_test_class_missing_from_train_before_anything_runs(tree, tmp_path):
    (tree / "test" / "not-a-class").mkdir()
    scan = X.ScanOnce(tree, tmp_path / X.INDEX_DIR)
    assert scan.claim()
    with pytest.raises(DataError, match="not-a-class"):
        scan.start()
    assert not scan.lock.exists() and not list((tmp_path / X.INDEX_DIR).glob("*.idx"))
