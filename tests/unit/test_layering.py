"""Which package may import which, and what a local dry run loads (docs/ARCHITECTURE.md):

- ``wrn`` (the worker) imports neither ``launcher`` nor ``cluster``; ``cluster`` imports only
  ``wrn.contract`` of ``wrn`` and nothing of ``launcher``;
- the node agent and the contract import the standard library and a few stdlib-only helpers;
- no library module imports the entry script ``wrn_launch.py``;
- outside ``launcher/backends`` no module names a backend class;
- importing the CLI and running a local ``--dry-run`` loads neither numpy, MindSpore nor paramiko.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STDLIB = sys.stdlib_module_names


def _imports(path: Path) -> set[str]:
    """Every module a file imports (at any depth of its code)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_the_worker_imports_neither_the_launcher_nor_the_planner():
    for path in _files("wrn"):
        bad = {m for m in _imports(path) if _top(m) in ("launcher", "cluster", "wrn_launch")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_planner_imports_only_the_contract_of_the_worker_and_nothing_of_the_launcher():
    for path in _files("cluster"):
        bad = {m for m in _imports(path) if _top(m) in ("launcher", "wrn_launch")
               or (_top(m) == "wrn" and m != "wrn.contract")}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_the_agent_and_the_contract_import_only_the_standard_library_and_small_helpers():
    allowed = {"wrn.contract", "wrn.stacks", "wrn.hostname", "wrn.lifetime", "launcher.agent.node",
               "launcher.agent.proc"}
    agent = ROOT / "launcher" / "agent"  # handle.py is the launcher's end, not the agent's code
    for path in [ROOT / "wrn" / "contract.py", ROOT / "wrn" / "stacks.py", ROOT / "wrn" / "hostname.py",
                 ROOT / "wrn" / "lifetime.py", agent / "__init__.py", agent / "__main__.py",
                 agent / "node.py", agent / "proc.py"]:
        bad = {m for m in _imports(path) if _top(m) not in STDLIB and m not in allowed}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_no_library_module_imports_the_entry_script():
    for package in ("wrn", "cluster", "launcher"):
        for path in _files(package):
            assert "wrn_launch" not in {_top(m) for m in _imports(path)}, path


def test_only_the_backends_name_a_backend_class():
    names = ("LocalBackend", "SSHBackend", "SlurmBackend")
    for path in _files("launcher"):
        if "backends" in path.relative_to(ROOT / "launcher").parts:
            continue
        text = path.read_text(encoding="utf-8")
        assert not any(name in text for name in names), path


def test_a_local_dry_run_loads_no_numpy_mindspore_or_paramiko(tmp_path):
    code = ("import contextlib, io, json, sys\n"
            "import wrn_launch\n"
            "import launcher.cli\n"
            "after_import = sorted(m for m in ('numpy', 'mindspore', 'paramiko') if m in sys.modules)\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    rc = wrn_launch.main(['--devices', '2', '--backend', 'cpu', '--dry-run', '--plain',\n"
            f"                          '--run-dir', {str(tmp_path / 'run')!r}])\n"
            "loaded = sorted(m for m in ('numpy', 'mindspore', 'paramiko') if m in sys.modules)\n"
            "print(json.dumps([rc, after_import, loaded]))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    rc, after_import, loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert rc == 0
    assert after_import == [] and loaded == []
    assert not (tmp_path / "run").exists()  # a dry run creates nothing
