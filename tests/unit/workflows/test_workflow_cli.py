"""``dlp workflows``: parameter parsing and one-line errors without a platform; list, status,
refusals and triggers over HTTP against runs in a real store (no Ray)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from dlplatform.cli import app
from dlplatform.cli.workflows import parse_params
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.metadata import RunStatus, WorkflowRun, WorkflowStep, WorkflowTrigger
from dlplatform.metadata.records import utcnow
from dlplatform.workflows.spec import WorkflowRunDetail


def test_params_are_json_or_text() -> None:
    assert parse_params(["n=3", "name=iris", 'cfg={"a": [1, 2]}', "flag=true", "s=a=b"]) == {
        "n": 3,
        "name": "iris",
        "cfg": {"a": [1, 2]},
        "flag": True,
        "s": "a=b",
    }
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_params(["novalue"])
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_params(["=1"])


def test_bad_param_and_missing_platform_exit_1_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["workflows", "run", "m:f", "--param", "oops", "--home", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: --param 'oops' is not KEY=VALUE"]
    result = runner.invoke(app, ["workflows", "list", "--home", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")


# --- over HTTP (the ``cli_as`` gateway, real DuckDB; starting runs needs the manager on Ray) ---


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner(env={"COLUMNS": "250"})
    yield lambda *argv: runner.invoke(app, list(argv))


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


def _run_with_steps(backend: Backend, run_id: str, status: RunStatus) -> WorkflowRun:
    run = backend.store.create_workflow_run(
        WorkflowRun(id=run_id, workflow="m:f", owner="admin", created_at=utcnow())
    )
    error = "ValueError: x" if status is RunStatus.FAILED else None
    backend.store.update_workflow_run(run.id, status=status, ended_at=utcnow(), error=error)
    backend.store.put_workflow_steps(
        [
            WorkflowStep(run_id=run.id, step_id="a", name="a", status=RunStatus.SUCCEEDED,
                         attempts=1),
            WorkflowStep(run_id=run.id, step_id="b", name="b", status=RunStatus.FAILED,
                         attempts=2, error="Traceback ...\nValueError: x\n"),
        ]
    )  # fmt: skip
    return run


def test_list_and_status_of_runs_in_the_store(backend: Backend, dlp: Callable[..., Result]) -> None:
    assert dlp("workflows", "list").stdout.strip() == "no workflow runs"
    _run_with_steps(backend, "wf-1", RunStatus.FAILED)
    runs = json.loads(dlp("workflows", "list", "--json").stdout)
    assert [(r["id"], r["status"]) for r in runs] == [("wf-1", "FAILED")]
    assert "wf-1" in dlp("workflows", "list").stdout
    assert dlp("workflows", "list", "--limit", "0").exit_code == 2

    detail = json.loads(dlp("workflows", "status", "wf-1", "--json").stdout)
    assert detail["run"]["id"] == "wf-1"
    assert [(s["step_id"], s["status"]) for s in detail["steps"]] == [
        ("a", "SUCCEEDED"),
        ("b", "FAILED"),
    ]
    table = dlp("workflows", "status", "wf-1")
    assert table.exit_code == 0 and "ValueError: x" in table.stdout  # the last error line
    assert "Traceback" not in table.stdout
    assert "wf-nope" in _one_error_line(dlp("workflows", "status", "wf-nope"))


def test_refusals_are_one_line_and_exit_1(backend: Backend, dlp: Callable[..., Result]) -> None:
    _run_with_steps(backend, "wf-ok", RunStatus.SUCCEEDED)
    _run_with_steps(backend, "wf-bad", RunStatus.FAILED)
    assert "already succeeded" in _one_error_line(dlp("workflows", "resume", "wf-ok"))
    assert "already ended" in _one_error_line(dlp("workflows", "cancel", "wf-bad"))
    unknown = dlp("workflows", "run", "no_such_module_xyz:factory", "--param", "n=3")
    assert "no_such_module_xyz" in _one_error_line(unknown)
    assert _one_error_line(dlp("workflows", "run", "not-a-path"))


def test_triggers_listed_and_deleted(backend: Backend, dlp: Callable[..., Result]) -> None:
    backend.store.create_workflow_trigger(
        WorkflowTrigger(
            id="trg-1",
            kind="cron",
            workflow="m:f",
            cron="*/15 * * * *",
            owner="admin",
            created_at=utcnow(),
        )
    )
    listed = json.loads(dlp("workflows", "triggers", "--json").stdout)
    assert [(t["id"], t["cron"]) for t in listed] == [("trg-1", "*/15 * * * *")]
    assert "*/15 * * * *" in dlp("workflows", "triggers").stdout
    deleted = dlp("workflows", "delete-trigger", "trg-1")
    assert deleted.exit_code == 0 and deleted.stdout.strip() == "deleted trg-1"
    assert "trg-1" in _one_error_line(dlp("workflows", "delete-trigger", "trg-1"))
    assert dlp("workflows", "triggers").stdout.strip() == "no workflow triggers"


def test_follow_shows_steps_until_the_run_ends_and_failure_exits_1(
    backend: Backend,
    http_platform: Callable[[str], object],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``run --wait`` / ``resume --wait`` follow through the client (starting needs Ray)."""
    from dlplatform.cli.workflows import _finish, _follow
    from dlplatform.client.workflows import WorkflowsClient

    backend.store.create_workflow_run(
        WorkflowRun(id="wf-1", workflow="m:f", owner="admin", created_at=utcnow())
    )
    script = [
        lambda: backend.store.update_workflow_run("wf-1", status=RunStatus.RUNNING),
        lambda: backend.store.update_workflow_run(
            "wf-1", status=RunStatus.FAILED, ended_at=utcnow(), error="step b failed"
        ),
    ]
    original = WorkflowsClient.status

    def scripted(self: WorkflowsClient, run_id: str) -> WorkflowRunDetail:
        if script:
            script.pop(0)()
        return original(self, run_id)

    monkeypatch.setattr(WorkflowsClient, "status", scripted)
    monkeypatch.setattr("dlplatform.client.training.time.sleep", lambda _s: None)
    detail = _follow(http_platform(admin_token), "wf-1")
    assert detail.run.status is RunStatus.FAILED and not script
    with pytest.raises(typer.Exit) as exited:
        _finish(detail, as_json=True)
    assert exited.value.exit_code == 1
