"""Remote- and file-supplied paths stay inside the run directory: rank 0's outputs copied back
(``launcher.rundir.remote.OutputFetcher``), log entries of run.json (``wrn-launch logs``), the
metrics file after a torn line, the port-lock folder. No process is started here."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from launcher.backends.local import LocalBackend
from launcher.rundir.remote import OutputFetcher


def _remote(tmp_path: Path) -> tuple[Path, Path]:
    there, here = tmp_path / "there" / "run", tmp_path / "here" / "run"
    (there / "checkpoints").mkdir(parents=True)
    here.mkdir(parents=True)
    (there / "checkpoints" / "ok-1_1.ckpt").write_text("OK")
    (tmp_path / "there" / "payload").write_text("evil")
    (tmp_path / "there" / "x-1_1.ckpt").write_text("evil")
    return there, here


def _fetch(there: Path, here: Path, path: str) -> list[str]:
    """Fetch ``path`` from "node2" (``there``) into ``here``, then the final copy; the problems."""
    fetcher = OutputFetcher(LocalBackend(), "node2", str(there), here)
    try:
        fetcher.fetch(path)
        return fetcher.finish()
    finally:
        fetcher.close()


@pytest.mark.parametrize("path", [
    "{there}/checkpoints/../../payload",            # a checkpoint event leaving the run dir
    "{there}/checkpoints/../../x-1_1.ckpt",         # checkpoint_name: ../../x
    "checkpoints/../../payload",                    # relative, with ..
    "../payload",
    "{there}/../payload",
    "/etc/passwd",
    "{there}",                                      # the run dir itself
    "checkpoints/\x00x.ckpt",
])
def test_output_fetcher_refuses_paths_leaving_the_run_dir(tmp_path, path):
    there, here = _remote(tmp_path)
    problems = _fetch(there, here, path.format(there=there))
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert all(p.parts[0] == "there" or p.parts[:2] == ("here", "run") for p in written), written
    assert not (tmp_path / "here" / "payload").exists()
    assert not (tmp_path / "here" / "x-1_1.ckpt").exists()
    refused = [p for p in problems if "node2" in p and "not copied" in p]
    assert len(refused) == 1, problems
    assert (here / "checkpoints" / "ok-1_1.ckpt").read_text() == "OK"  # the final copy still runs


def test_output_fetcher_skips_strange_remote_names(tmp_path):
    there, here = _remote(tmp_path)
    for name in ("..", "a b.ckpt", "x\nlatest.json", "-rf.ckpt"):
        try:
            (there / "checkpoints" / name).write_text("odd")
        except (OSError, IsADirectoryError):
            pass
    problems = _fetch(there, here, "checkpoints/ok-1_1.ckpt")
    assert sorted(p.name for p in (here / "checkpoints").iterdir()) == ["ok-1_1.ckpt"]
    assert any("node2" in p and "a b.ckpt" in p for p in problems), problems


def test_output_fetcher_refuses_a_local_symlink_leaving_the_run_dir(tmp_path):
    there, here = _remote(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (here / "checkpoints").symlink_to(outside)
    problems = _fetch(there, here, "checkpoints/ok-1_1.ckpt")
    assert not list(outside.iterdir())
    assert any("node2" in p and "outside" in p for p in problems), problems


@pytest.mark.parametrize("entry", ["/etc/passwd", "../outside.log", "logs/../../outside.log",
                                   "logs/link.log"])
def test_logs_refuses_a_log_entry_outside_the_run_dir(tmp_path, entry):
    from launcher.commands.logs import log_sources
    from launcher.rundir.reading import RunDirError, load_run

    run = tmp_path / "run"
    (run / "logs").mkdir(parents=True)
    (tmp_path / "outside.log").write_text("not yours\n")
    (run / "logs" / "link.log").symlink_to(tmp_path / "outside.log")
    procs = [{"name": "rank0", "rank": 0, "host": "h1", "log": entry}]
    (run / "run.json").write_text(json.dumps({"status": "failed", "processes": procs}))
    with pytest.raises(RunDirError, match=r"run.json: the log of h1:0 .*outside the run directory"):
        log_sources(load_run(run))


def test_metrics_after_a_torn_line_start_on_a_line_of_their_own(tmp_path):
    from launcher.rundir.files import RunFiles
    from launcher.rundir.layout import METRICS
    from launcher.rundir.reading import read_events

    (tmp_path / METRICS).write_text('{"event":"step","step":1}\n{"event":"st')
    files = RunFiles(tmp_path)
    files.metric({"event": "start", "rank": 0})
    files.close()
    events, bad = read_events(tmp_path / METRICS)
    assert [e["event"] for e in events] == ["step", "start"]
    assert bad == 1
    files = RunFiles(tmp_path)  # a file that ends with a newline gets none more
    files.close()
    assert (tmp_path / METRICS).read_text().endswith('"rank":0}\n')


def _free_port_pair() -> int:
    """A port free now (48000-48999 lies in Linux's ephemeral range: a connection of another
    test can hold a port there, so it is checked, not only drawn)."""
    import random

    from launcher.backends.ports import port_is_free
    return next(p for p in iter(lambda: random.randrange(48000, 49000, 2), None) if port_is_free(p))


def test_port_locks_live_in_a_private_folder_of_this_user(tmp_path, monkeypatch):
    from launcher.backends import ports

    monkeypatch.setattr(ports, "LOCK_ROOT", str(tmp_path))
    old = os.umask(0o022)
    try:
        got = ports.reserve_port(port_range=(_free_port_pair(),) * 2)
    finally:
        os.umask(old)
    try:
        folder = Path(ports.lock_dir())
        st = folder.lstat()
        assert folder.parent == tmp_path and str(os.getuid()) in folder.name
        assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert (folder / f"{got.port}.lock").is_file()
    finally:
        got.release()


def test_port_locks_ignore_a_folder_planted_by_someone_else(tmp_path, monkeypatch):
    import fcntl

    from launcher.backends import ports

    monkeypatch.setattr(ports, "LOCK_ROOT", str(tmp_path))
    port = _free_port_pair()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    Path(ports.lock_dir()).symlink_to(elsewhere)  # a link planted where the folder goes
    got = ports.reserve_port(port)
    got.release()
    assert not list(elsewhere.iterdir())  # nothing created through the link
    os.unlink(ports.lock_dir())
    os.mkdir(ports.lock_dir(), 0o777)  # a folder others may write to: not trusted either
    os.chmod(ports.lock_dir(), 0o777)
    held = os.open(os.path.join(ports.lock_dir(), f"{port}.lock"), os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        ports.reserve_port(port).release()  # the lock another could hold does not block us
    finally:
        os.close(held)
