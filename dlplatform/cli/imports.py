"""``dlp import``: bring history from other tools (``dlp import mlflow``).

A client of the gateway like every command: the work is in ``dlplatform.client.mlflow_import``;
MLflow is imported only when the command runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors

if TYPE_CHECKING:
    from dlplatform.client.mlflow_import import ImportReport, RunOutcome

app = typer.Typer(no_args_is_help=True, help="Bring runs and models from other tools.")


def _quiet_mlflow() -> None:
    """MLflow's INFO lines (database set-up) stay out of the command's output, and the command
    does not send MLflow's usage telemetry on the user's behalf."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    with contextlib.suppress(ImportError):  # the importer says so in one line
        import mlflow  # noqa: F401  (its import sets its loggers' levels: set ours after it)
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _progress(done: int, total: int, outcome: RunOutcome) -> None:
    where = f"{outcome.experiment}/{outcome.name or outcome.mlflow_run_id}"
    if outcome.outcome == "skipped":
        what = f"skipped (imported before as {outcome.run_id})"
    elif outcome.outcome == "failed":
        what = f"FAILED: {outcome.error}"
    else:
        models = [m.imported_as for m in outcome.models if m.imported_as]
        what = (f"-> {outcome.run_id}: {outcome.params} params, {outcome.metric_points} metric "
                f"points, {outcome.artifacts} files"
                + (f", model {', '.join(models)}" if models else ""))  # fmt: skip
    print(f"[{done}/{total}] {where} (mlflow {outcome.mlflow_run_id}) {what}", file=sys.stderr)


def _summary(report: ImportReport) -> None:
    models = [m for r in report.runs for m in r.models] + report.other_models
    imported = [m for m in models if m.imported_as]
    print(f"runs: {report.count('imported')} imported, {report.count('skipped')} already there, "
          f"{report.count('failed')} failed; their model versions: {len(imported)} imported, "
          f"{len(models) - len(imported)} not imported")  # fmt: skip
    for m in models:
        said = f"-> {m.imported_as}" + (f" ({m.reason})" if m.reason else "")
        print(f"  {m.mlflow_model} v{m.mlflow_version}: {said if m.imported_as else m.reason}")


@app.command("mlflow")
@handle_errors
def mlflow_(
    tracking_uri: str = typer.Option(
        ..., "--tracking-uri", help="http(s)://SERVER, sqlite:///PATH, a database URI or a path."
    ),
    experiment: list[str] = typer.Option(
        [], "--experiment", "-e", help="An experiment to import (repeat; default: all)."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Copy MLflow runs and their registered torch models into the platform.

    Each run's params, metrics (steps, timestamps), tags and artifacts become a tracked run
    tagged mlflow.run_id; a registered version that is a torch state dict becomes a registry
    version; other flavors (pickles) are reported and not imported. Importing again skips the
    runs already imported.
    """
    from dlplatform.client.mlflow_import import import_mlflow  # heavy: httpx, this command only

    _quiet_mlflow()
    p = _common.platform(home)
    report = import_mlflow(p, tracking_uri, experiment, progress=_progress)
    if as_json:
        emit(report, True)
    else:
        _summary(report)
    failed = [r for r in report.runs if r.outcome == "failed"]
    if failed:
        _common.fail(f"{len(failed)} of {len(report.runs)} runs failed to import; the first: "
                     f"{failed[0].mlflow_run_id}: {failed[0].error}")  # fmt: skip
