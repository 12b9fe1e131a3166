"""Remote- and file-supplied paths stay inside the run directory: rank 0's outputs copied back
(``launcher.multihost.OutputFetcher``), log entries of run.json (``wrn-launch logs``), the
metrics file after a torn line, the port-lock folder. No process is started here."""

from __future__ import annotations

from pathlib import Path

import pytest

from launcher.backend import LocalBackend
from launcher.multihost import OutputFetcher


def _remote(tmp_path: Path) -> tuple[Path, Path]:
    there, here = tmp_path / "there" / "run", tmp_path / "here" / "run"
    (there / "checkpoints").mkdir(parents=True)
    here.mkdir(parents=True)
    (there / "checkpoints" / "ok-1_1.ckpt").write_text("OK")
    (tmp_path / "there" / "payload").write_text("evil")
    (tmp_path / "there" / "x-1_1.ckpt").write_text("evil")
    return there, here


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
    fetcher = OutputFetcher(LocalBackend(), "node2", str(there), here)
    try:
        fetcher.fetch(path.format(there=there))
        problems = fetcher.finish()
    finally:
        fetcher.close()
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
    fetcher = OutputFetcher(LocalBackend(), "node2", str(there), here)
    try:
        fetcher.fetch("checkpoints/ok-1_1.ckpt")
        problems = fetcher.finish()
    finally:
        fetcher.close()
    assert sorted(p.name for p in (here / "checkpoints").iterdir()) == ["ok-1_1.ckpt"]
    assert any("node2" in p and "a b.ckpt" in p for p in problems), problems


def test_output_fetcher_refuses_a_local_symlink_leaving_the_run_dir(tmp_path):
    there, here = _remote(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (here / "checkpoints").symlink_to(outside)
    fetcher = OutputFetcher(LocalBackend(), "node2", str(there), here)
    try:
        fetcher.fetch("checkpoints/ok-1_1.ckpt")
        problems = fetcher.finish()
    finally:
        fetcher.close()
    assert not list(outside.iterdir())
    assert any("node2" in p and "outside" in p for p in problems), problems
