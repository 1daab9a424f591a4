"""``dlp workflows``: run, list, inspect, resume and cancel workflow runs; schedules and triggers;
the registry of workflows runs may name (``registered``; ``register``/``unregister`` for admins).

A client of the gateway (``p.workflows``): nothing here imports Ray or a service module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, console, emit, fail, handle_errors
from dlplatform.errors import InvalidInput
from dlplatform.metadata import RunStatus

if TYPE_CHECKING:
    from dlplatform.client import Platform
    from dlplatform.workflows.spec import WorkflowRunDetail

app = typer.Typer(
    no_args_is_help=True,
    help="Durable workflows: runs, schedules, commit triggers, the registry of workflows.",
)

ParamOpt = typer.Option([], "--param", help="Factory parameter KEY=VALUE; VALUE is JSON or text.")
WorkflowArg = typer.Argument(
    ..., help="Registered workflow name, e.g. train_and_deploy (see `dlp workflows registered`)."
)
STEP_COLUMNS = ["step_id", "status", "attempts", "started_at", "ended_at", "error"]
RUN_COLUMNS = ["id", "workflow", "status", "owner", "created_at", "ended_at", "error"]


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["n=3", "name=iris", 'cfg={"a": 1}']`` → ``{"n": 3, "name": "iris", "cfg": {"a": 1}}``."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"--param {item!r} is not KEY=VALUE")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        params[key.strip()] = value
    return params


def _step_rows(detail: WorkflowRunDetail) -> list[dict[str, Any]]:
    rows = []
    for s in detail.steps:
        row = s.model_dump(mode="json")
        row["error"] = (s.error or "").strip().splitlines()[-1] if s.error else ""
        rows.append(row)
    return rows


def _follow(p: Platform, run_id: str) -> WorkflowRunDetail:
    """Wait for a run, showing finished steps as a progress bar on stderr."""
    # heavy: rich.progress (20 ms of `dlp --help`), only where a bar is drawn
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(run_id, total=None, running="")

        def show(detail: WorkflowRunDetail) -> None:
            done = sum(1 for s in detail.steps if s.status is RunStatus.SUCCEEDED)
            running = [s.step_id for s in detail.steps if s.status is RunStatus.RUNNING]
            label = f"running: {', '.join(running[:3])}" if running else detail.run.status.value
            progress.update(task, total=len(detail.steps), completed=done, running=label)

        final: WorkflowRunDetail = p.workflows.wait(run_id, on_update=show)
        return final


def _finish(detail: WorkflowRunDetail, as_json: bool) -> None:
    emit(detail if as_json else _step_rows(detail), as_json, columns=STEP_COLUMNS, title="steps")
    if not as_json:
        print(f"run {detail.run.id}: {detail.run.status.value}")
    if detail.run.status is not RunStatus.SUCCEEDED:
        fail(f"run {detail.run.id} {detail.run.status.value}: {detail.run.error or ''}")


@app.command("run")
@handle_errors
def run(
    workflow: str = WorkflowArg,
    run_id: str | None = typer.Option(None, "--id", help="Run id (generated when absent)."),
    param: list[str] = ParamOpt,
    wait: bool = typer.Option(False, "--wait", help="Follow the run's steps until it ends."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Start a workflow run (it runs on the platform; --wait follows it)."""
    params = parse_params(param)
    p = _common.platform(home)
    started = p.workflows.run(workflow, params, run_id)
    if not wait:
        emit(started, as_json, columns=RUN_COLUMNS)
        return
    _finish(_follow(p, started.id), as_json)


@app.command("list")
@handle_errors
def list_(
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List workflow runs, newest first."""
    p = _common.platform(home)
    emit(p.workflows.list(limit=limit), as_json, columns=RUN_COLUMNS, title="workflow runs")


@app.command("status")
@handle_errors
def status(
    run_id: str = typer.Argument(..., help="Run id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A run and its step table (status, attempts, timing, last error line)."""
    p = _common.platform(home)
    detail = p.workflows.status(run_id)
    if as_json:
        emit(detail, True)
        return
    emit(detail.run, False, columns=RUN_COLUMNS)
    emit(_step_rows(detail), False, columns=STEP_COLUMNS, title="steps")


@app.command("resume")
@handle_errors
def resume(
    run_id: str = typer.Argument(..., help="Run id."),
    wait: bool = typer.Option(False, "--wait", help="Follow the run's steps until it ends."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-run the steps of a run that did not succeed."""
    p = _common.platform(home)
    resumed = p.workflows.resume(run_id)
    if not wait:
        emit(resumed, as_json, columns=RUN_COLUMNS)
        return
    _finish(_follow(p, resumed.id), as_json)


@app.command("cancel")
@handle_errors
def cancel(
    run_id: str = typer.Argument(..., help="Run id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a run (its running tasks are killed)."""
    p = _common.platform(home)
    emit(p.workflows.cancel(run_id), as_json, columns=RUN_COLUMNS)


@app.command("schedule")
@handle_errors
def schedule(
    workflow: str = WorkflowArg,
    cron: str = typer.Option(
        ..., "--cron", help='5-field cron expression in UTC, e.g. "*/15 * * * *".'
    ),
    param: list[str] = ParamOpt,
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a workflow on a schedule."""
    params = parse_params(param)
    p = _common.platform(home)
    emit(p.workflows.schedule(workflow, cron, params), as_json)


@app.command("on-commit")
@handle_errors
def on_commit(
    dataset: str = typer.Argument(..., help="Dataset whose new commits start runs."),
    workflow: str = WorkflowArg,
    param: list[str] = ParamOpt,
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Start a workflow (with params dataset=NAME commit=ID) on each new commit of a dataset."""
    params = parse_params(param)
    p = _common.platform(home)
    emit(p.workflows.on_commit(dataset, workflow, params), as_json)


@app.command("registered")
@handle_errors
def registered(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List the workflows runs may name: built-ins, admins' registrations, packages' entry points."""
    p = _common.platform(home)
    emit(p.workflows.registered(), as_json,
         columns=["name", "source", "target", "description", "registered_by"],
         title="registered workflows")  # fmt: skip


@app.command("register")
@handle_errors
def register(
    name: str = typer.Argument(..., help="Name runs will use, e.g. churn_retrain."),
    target: str = typer.Argument(
        ..., help="MODULE:FACTORY of a @workflow factory installed on the cluster."
    ),
    description: str = typer.Option("", "--description", help="What the workflow does."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Register a workflow factory under a name (admin). The workflow manager imports it when a
    run starts; a factory that does not load fails that run with the reason."""
    p = _common.platform(home)
    emit(p.workflows.register(name, target, description), as_json)


@app.command("unregister")
@handle_errors
def unregister(
    name: str = typer.Argument(..., help="Registered name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove an admin's registration (admin)."""
    p = _common.platform(home)
    p.workflows.unregister(name)
    if as_json:
        emit({"unregistered": name}, True)
    else:
        print(f"unregistered {name}")


@app.command("triggers")
@handle_errors
def triggers(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List schedules and commit triggers."""
    p = _common.platform(home)
    emit(p.workflows.triggers(), as_json,
         columns=["id", "kind", "workflow", "cron", "dataset", "owner", "last_fired_at", "last_commit"],
         title="workflow triggers")  # fmt: skip


@app.command("delete-trigger")
@handle_errors
def delete_trigger(
    trigger_id: str = typer.Argument(..., help="Trigger id (see `dlp workflows triggers`)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove a schedule or commit trigger."""
    p = _common.platform(home)
    p.workflows.delete_trigger(trigger_id)
    if as_json:
        emit({"deleted": trigger_id}, True)
    else:
        print(f"deleted {trigger_id}")
