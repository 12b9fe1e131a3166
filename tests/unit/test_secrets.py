"""No secret reaches the screen or a file: ``--env`` values of secret-looking names, credentials
inside URLs, and every value of ``--env-file``, in the dry-run plan (Rich, plain, JSON), run.json
and the notes; env-file errors name the line and the variable, never its value."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from cluster.errors import PlanError
from cluster.hosts import mask_command, mask_env, parse_env_file

SECRETS = ("tok-SECRET-1", "pw-SECRET-2", "file-SECRET-3", "file-SECRET-4")


@pytest.fixture
def env_file(tmp_path):
    path = tmp_path / "secrets.env"
    path.write_text(f"PLAIN_LOOKING={SECRETS[2]}\nexport OTHER='{SECRETS[3]}'  # the second one\n")
    return path


def _args(tmp_path, env_file):
    return ["--devices", "1", "--backend", "cpu", "--dry-run", "--run-dir", str(tmp_path / "run"),
            "--env", f"API_TOKEN={SECRETS[0]}", "--env", f"DATABASE_URL=postgres://u:{SECRETS[1]}@h/db",
            "--env", "VISIBLE=plain-value", "--env-file", str(env_file)]


@pytest.mark.parametrize("mode", ["--plain", "--json"])
def test_dry_run_output_shows_no_secret(tmp_path, capsys, env_file, mode):
    from launcher import cli

    assert cli.main([*_args(tmp_path, env_file), mode]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert "plain-value" in text  # the plan is there, with what is not secret
    assert "postgres://u:***@h/db" in text
    for secret in SECRETS:
        assert secret not in text


def test_rich_plan_view_and_run_record_show_no_secret(tmp_path, env_file):
    from launcher import cli
    from launcher.commands.launch import launch_config
    from launcher.rundir.record import masked_plan
    from launcher.session.prepare import prepare
    from launcher.ui.planview import plan_renderables

    args = _args(tmp_path, env_file)
    parsed = cli.build_parser().parse_args(args)
    prepared, held = prepare(launch_config(parsed, [], args))
    held.close()
    plan = prepared.plan(0, 29500)
    console = Console(file=io.StringIO(), width=300, record=True)
    for item in plan_renderables(plan, prepared.notes):
        console.print(item)
    shown = console.export_text()
    assert "VISIBLE=plain-value" in shown
    record = json.dumps([masked_plan(plan.to_dict()), mask_env(prepared.env, plan.secret_names), prepared.notes,
                         mask_command(prepared.config.command)])
    for secret in SECRETS:
        assert secret not in shown
        assert secret not in record
    assert "plain-value" in record


def test_credentials_inside_urls_are_masked_whatever_the_name():
    env = {"DATABASE_URL": "postgres://u:pw@h:5432/db", "MIRROR": "https://tok@pypi.example/simple",
           "PLAIN": "https://example.org/x?a=1", "NOTE": "a:b@c"}
    masked = mask_env(env)
    assert masked["DATABASE_URL"] == "postgres://u:***@h:5432/db"
    assert masked["MIRROR"] == "https://***@pypi.example/simple"
    assert masked["PLAIN"] == "https://example.org/x?a=1"
    assert masked["NOTE"] == "a:b@c"
    assert mask_command(["wrn-launch", "--env", "DB=mysql://root:pw@h/x", "--env=K=v"]) == \
        ["wrn-launch", "--env", "DB=mysql://root:***@h/x", "--env=K=v"]


@pytest.mark.parametrize("line", ["BAD-NAME=hunter2-secret", "=hunter2-secret", "hunter2-secret",
                                  "KEY='hunter2-secret", 'KEY="hunter2-secret'])
def test_a_malformed_env_file_line_is_not_echoed(line):
    with pytest.raises(PlanError, match=r"s.env:2:") as info:
        parse_env_file(f"OK=1\n{line}\n", "s.env")
    assert "hunter2" not in str(info.value)


def test_env_file_values_lose_comments_and_quotes_like_a_shell():
    text = ("A=plain # a comment\n"
            "B='single # kept' # comment\n"
            'C="double \\"quoted\\" # kept"   # comment\n'
            "D=no#comment\n"
            "E=  spaced  \n"
            "export F=exported\n"
            "G=\n"
            "H=''\n"
            "# a whole-line comment\n")
    assert parse_env_file(text, "x.env") == {"A": "plain", "B": "single # kept",
                                             "C": 'double "quoted" # kept', "D": "no#comment",
                                             "E": "spaced", "F": "exported", "G": "", "H": ""}
