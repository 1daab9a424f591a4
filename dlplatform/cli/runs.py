"""``dlp runs``: runs of every kind (tracked from your own code, training and tuning jobs,
trials), searched with one filter language and sorted.

A client of the gateway (``p.runs``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors

if TYPE_CHECKING:
    from dlplatform.train.tracking import RunView

app = typer.Typer(
    no_args_is_help=True,
    help="Runs of every kind: tracked from your code (p.runs.start), training, tuning, trials.",
)

_COLUMNS = ["id", "name", "kind", "status", "params", "metrics"]  # the rest: --json, show
FILTER_HELP = (
    "e.g. 'params.lr < 0.01 and metrics.val_accuracy > 0.9 and tags.team = \"vision\"'; fields: "
    "params.KEY, metrics.KEY (final value), tags.KEY, id, name, status, kind, owner, dataset, "
    "created, started, ended; clauses joined by AND"
)


def _pairs(values: dict[str, Any], limit: int = 6) -> str:
    shown = [f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items()]
    more = len(shown) - limit
    return ", ".join(shown[:limit]) + (f", +{more}" if more > 0 else "")


def _row(view: RunView) -> dict[str, Any]:
    run = view.run
    return {
        "id": run.id, "name": run.name, "kind": run.kind, "status": run.status.value,
        "owner": run.owner, "dataset": view.dataset or "", "params": _pairs(view.params),
        "metrics": _pairs(view.metrics), "created_at": run.created_at.isoformat(timespec="seconds"),
    }  # fmt: skip


@app.command("list")
@handle_errors
def list_(
    filter: str | None = typer.Option(None, "--filter", "-f", help=FILTER_HELP),
    sort: str | None = typer.Option(
        None, "--sort", help="e.g. 'metrics.val_accuracy DESC' (default: newest first)."
    ),
    limit: int = typer.Option(50, "--limit", help="At most this many runs."),
    offset: int = typer.Option(0, "--offset", help="Skip this many matching runs."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Runs matching --filter, sorted by --sort, with their params and final metrics."""
    runs = _common.platform(home).runs.list(filter, sort, max_results=limit, offset=offset)
    emit(runs if as_json else [_row(v) for v in runs], as_json, columns=_COLUMNS, title="runs")


@app.command("show")
@handle_errors
def show(
    run_id: str = typer.Argument(..., help="Run id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One run: state, params, final metrics, tags and logged files."""
    view = _common.platform(home).runs.get(run_id)
    if as_json:
        emit(view, True)
        return
    run = view.run
    emit({**_row(view), "params": view.params, "metrics": view.metrics, "tags": view.tags,
          "error": run.error or "", "ended_at": run.ended_at}, False)  # fmt: skip
    if view.artifacts:
        files = [{"path": a.path, "size_bytes": a.size_bytes, "sha256": a.sha256[:16]}
                 for a in view.artifacts]  # fmt: skip
        emit(files, False, columns=["path", "size_bytes", "sha256"], title="artifacts")
