"""The `dlp` command's contract without a running platform: help, exit codes, --json, one error line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlplatform.cli import app


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    runner = CliRunner()
    home = str(tmp_path / "home")
    # no platform from the environment or a `dlp login` profile of whoever runs the tests
    env = {"DLP_TOKEN": "", "DLP_URL": "", "DLP_PROFILE": "", "RAY_ADDRESS": "",
           "DLP_CONFIG_DIR": str(tmp_path / "config")}  # fmt: skip

    def invoke(*args: str, home_opt: bool = True):  # type: ignore[no-untyped-def]
        argv = [*args, "--home", home] if home_opt else list(args)
        return runner.invoke(app, argv, env=env)

    invoke.home = home  # type: ignore[attr-defined]
    return invoke


def _one_error_line(result) -> str:  # type: ignore[no-untyped-def]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "Traceback" not in result.output
    return str(lines[0])


def test_help_lists_the_platform_commands(run) -> None:  # type: ignore[no-untyped-def]
    result = run("--help", home_opt=False)
    assert result.exit_code == 0
    for command in ("up", "down", "status", "users", "audit", "lineage", "metadata"):
        assert command in result.stdout
    users = run("users", "--help", home_opt=False)
    assert users.exit_code == 0 and "revoke" in users.stdout and "tokens" in users.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("users", "create"),
        ("users", "create", "bob", "--role", "boss"),
        ("users", "revoke"),
        ("lineage", "run:r-1", "--up", "--down"),
        ("audit", "--outcome", "maybe"),
        ("audit", "--limit", "0"),
        ("up", "--port", "eighty"),
        ("no-such-command",),
    ],
)
def test_usage_errors_exit_2(run, argv: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = run(*argv)
    assert result.exit_code == 2, result.output


def test_status_and_down_without_a_platform_answer_json(run) -> None:  # type: ignore[no-untyped-def]
    status = run("status", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["running"] is False
    down = run("down", "--json")
    assert down.exit_code == 0, down.output
    assert json.loads(down.stdout)["stopped"] is False
    plain = run("status")
    assert plain.exit_code == 0 and "not running" in plain.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ("users", "list"),
        ("users", "tokens", "bob"),
        ("users", "revoke", "0123456789ab"),
        ("audit",),
        ("lineage", "run:r-1"),
        ("metadata", "export", "/tmp/out"),
    ],
)
def test_commands_fail_with_one_line_when_nothing_runs(run, argv: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    result = run(*argv)
    assert result.exit_code == 1, result.output
    line = _one_error_line(result)
    assert "dlp up" in line or "token" in line


def test_bad_user_name_fails_before_connecting(run) -> None:  # type: ignore[no-untyped-def]
    result = run("users", "create", "a/b", "--role", "viewer", "--json")
    assert result.exit_code == 1
    assert "invalid name" in _one_error_line(result)


def test_unreadable_cluster_file_is_one_line(run) -> None:  # type: ignore[no-untyped-def]
    home = Path(run.home)
    home.mkdir(parents=True)
    (home / "cluster.json").write_text("{not json")
    result = run("status", "--json")
    assert result.exit_code == 1
    assert "cluster.json" in _one_error_line(result)
