"""``dlp runs``: runs of every kind (tracked from your own code, training and tuning jobs,
trials), searched with one filter language and sorted.

A client of the gateway (``p.runs``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlplatform.cli import _common
from dlplatform.cli._common import (
    HomeOpt,
    JsonOpt,
    emit,
    emit_files,
    handle_errors,
    human_bytes,
)
from dlplatform.metadata.records import ArtifactFile

if TYPE_CHECKING:
    from dlplatform.train.tracking import RunComparison, RunView

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
    rows = runs if as_json else [_row(v) for v in runs]
    # a run's name is free text: it folds; the id is never cut
    emit(rows, as_json, columns=_COLUMNS, title="runs", ids=["id"])


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
        files = [ArtifactFile.of(a.path, a.sha256, a.size_bytes, a.created_at)
                 for a in view.artifacts]  # fmt: skip
        emit_files(files, False, "artifacts")


@app.command("compare")
@handle_errors
def compare(
    run_ids: list[str] = typer.Argument(..., help="Two or more run ids (at most 50)."),
    only_differing: bool = typer.Option(False, "--diff", help="Only the rows whose values differ."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Runs side by side: params and final metrics, differing rows marked with *."""
    from dlplatform.client.runs import comparison_values  # heavy: httpx, kept off `dlp --help`

    found = _common.platform(home).runs.comparison(run_ids)
    differing = set(found.differing)
    values = comparison_values(found)
    rows = [r for r in found.rows if r in differing or not only_differing]
    ids = [v.run.id for v in found.runs]
    if as_json:
        emit({"runs": ids, "rows": [
            {"key": r, "differs": r in differing,
             "values": {i: _json_value(v) for i, v in zip(ids, values[r], strict=True)}}
            for r in rows]}, True)  # fmt: skip
        return
    _print_comparison(found, rows, values, differing)


def _json_value(value: Any) -> Any:
    """NaN and infinities as the API writes them ("NaN", "Infinity"): JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _print_comparison(
    found: RunComparison, rows: list[str], values: dict[str, list[Any]], differing: set[str]
) -> None:
    """A table with one column per run headed by its id; where the ids do not fit the
    terminal, columns #1, #2, ... and a legend with the ids (never shortened); where even that
    does not fit, one block of lines per row."""
    out = Console()
    ids = [v.run.id for v in found.runs]
    if not rows:
        out.print("no differing params or metrics" if found.rows else "no params or metrics")
        return
    cells = {r: [_text(v) for v in values[r]] for r in rows}
    key_width = max(len(r) for r in rows)

    def fits(headers: list[str]) -> bool:
        widths = [max(len(h), *(len(cells[r][i]) for r in rows)) for i, h in enumerate(headers)]
        return 1 + key_width + sum(widths) + 3 * (len(headers) + 2) + 1 <= out.width

    headers = ids if fits(ids) else [f"#{i + 1}" for i in range(len(ids))]
    if headers is not ids:
        _legend(out, found)
    if not fits(headers):
        for r in rows:
            out.print(f"{'*' if r in differing else ' '} [bold]{escape(r)}[/bold]")
            for h, cell in zip(headers, cells[r], strict=True):
                out.print(f"    {escape(h)}: {escape(cell)}", soft_wrap=True)
    else:
        table = Table()
        table.add_column("", no_wrap=True)
        table.add_column("key", no_wrap=True)
        for h in headers:
            table.add_column(h, no_wrap=True)
        for r in rows:
            style = "bold yellow" if r in differing else ""
            mark = "*" if r in differing else ""
            table.add_row(mark, escape(r), *(escape(c) for c in cells[r]), style=style)
        out.print(table)
    if differing & set(rows):
        out.print("[dim]* the values differ[/dim]")


def _legend(out: Console, found: RunComparison) -> None:
    for i, v in enumerate(found.runs):
        label = f" ({v.run.name})" if v.run.name else ""
        out.print(f"#{i + 1} = {v.run.id}{label}", soft_wrap=True, highlight=False)


@app.command("artifacts")
@handle_errors
def artifacts(
    run_id: str = typer.Argument(..., help="Run id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The files a run logged, with sizes and sha256."""
    files = _common.platform(home).runs.artifacts(run_id)
    emit_files(files, as_json, "artifacts")


@app.command("download")
@handle_errors
def download(
    run_id: str = typer.Argument(..., help="Run id."),
    path: str = typer.Argument(..., help="The file's path in the run (see `dlp runs artifacts`)."),
    dest: Path | None = typer.Argument(
        None, help="File or directory to write to (default: its name, here)."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download one file a run logged, checked against its sha256 (nothing is kept if not)."""
    written = _common.platform(home).runs.download_artifact(run_id, path, dest)
    size = written.stat().st_size
    if as_json:
        emit({"run_id": run_id, "path": path, "file": str(written), "size_bytes": size}, True)
    else:
        print(f"wrote {written} ({human_bytes(size)}, sha256 checked)")
