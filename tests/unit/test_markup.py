"""Data shown in Rich tables is shown as it is: brackets in host names, messages, run names,
models or errors are neither swallowed as markup nor raise ``MarkupError``."""

from __future__ import annotations

import io
import json

from rich.console import Console

HOSTILE = "[/bold] [red]x[/] ssh-keygen -R [node2]:22 [link=file:///etc]y"


def _text(renderable) -> str:
    console = Console(file=io.StringIO(), width=400, record=True)
    console.print(renderable)
    return console.export_text()


def test_preflight_table_shows_hints_with_brackets():
    from launcher.backends.preflight import HostCheck, results_table

    shown = _text(results_table([HostCheck("[/node2]", "[/a]", problems=[HOSTILE]),
                                 HostCheck("node3", python="[b]3.11", mindspore="[/i]2.10")]))
    assert "ssh-keygen -R [node2]:22" in shown
    assert "[/node2]" in shown and "[/a]" in shown and "[b]3.11" in shown and "[/i]2.10" in shown


def test_runs_and_report_tables_show_brackets(tmp_path):
    from launcher.commands.report import report_renderables, summary_table
    from launcher.commands.runs import runs_table
    from launcher.rundir.reading import load_run

    run = tmp_path / "[bold]run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "status": "failed", "plan": {"world_size": 1, "hosts": ["[/h]"], "device_target": "[/CPU]"},
        "root_cause": {"host": "[/h]", "rank": 0, "reason": "[/exited]", "error": HOSTILE}}))
    (run / "metrics.jsonl").write_text(json.dumps({"event": "start", "rank": 0, "model": "[/m]",
                                                   "world_size": 1}) + "\n")
    record = load_run(run)
    assert "[bold]run" in _text(runs_table([record]))
    shown = _text(summary_table(record))
    assert "[/h]" in shown and "ssh-keygen -R [node2]:22" in shown
    for item in report_renderables(record, 200, None):
        _text(item)


def test_plan_and_dashboard_tables_show_brackets():
    from launcher.ui.dashboard import _DropTable

    table = _DropTable(set())
    table.add_column("a")
    table.add_column("b")
    table.add_row("[/h]", HOSTILE)
    shown = _text(table)
    assert "[/h]" in shown and "-R [node2]:22" in shown
