"""Rich HTML views of platform records for notebooks (registered with IPython's formatters).

Records stay plain pydantic models; this module teaches IPython how to show them, so
``p.datasets.get("digits").commits()[0]`` renders as a small table in JupyterLab.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel

from dlplatform.errors import DLPlatformError
from dlplatform.metadata.records import Commit, Dataset, ModelVersion, Run, WorkflowRun
from dlplatform.workflows.spec import WorkflowRunDetail

_STYLE = (
    "border-collapse:collapse;font:13px system-ui,sans-serif;border:1px solid #bbb;margin:4px 0"
)


def _cell(value: Any) -> str:
    if value is None:
        return "<span style='color:#777'>—</span>"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str)
        if len(text) > 160:
            text = text[:157] + "..."
        return html.escape(text)
    text = str(getattr(value, "value", value))
    if len(text) > 160:
        text = text[:157] + "..."
    return html.escape(text)


def record_html(record: BaseModel, title: str, fields: Iterable[str] | None = None) -> str:
    """A two-column table of a record's fields (long JSON fields shortened)."""
    data = record.model_dump()
    names = list(fields) if fields is not None else list(data)
    rows = "".join(
        f"<tr><th style='text-align:left;padding:2px 8px;background:#f3f3f3'>{html.escape(k)}</th>"
        f"<td style='padding:2px 8px'>{_cell(data.get(k))}</td></tr>"
        for k in names
        if k in data
    )
    return (
        f"<table style='{_STYLE}'><caption style='text-align:left;font-weight:600'>"
        f"{html.escape(title)}</caption>{rows}</table>"
    )


def rows_html(rows: list[dict[str, Any]], title: str = "") -> str:
    """A table of rows (e.g. per-epoch metrics or statistics)."""
    if not rows:
        return f"<p>{html.escape(title)}: none</p>"
    cols = list(rows[0])
    head = "".join(
        f"<th style='padding:2px 8px;background:#f3f3f3'>{html.escape(c)}</th>" for c in cols
    )
    body = "".join(
        "<tr>"
        + "".join(f"<td style='padding:2px 8px'>{_cell(r.get(c))}</td>" for c in cols)
        + "</tr>"
        for r in rows
    )
    caption = f"<caption style='text-align:left;font-weight:600'>{html.escape(title)}</caption>"
    return f"<table style='{_STYLE}'>{caption}<tr>{head}</tr>{body}</table>"


# Columns of a record type in tables and single-record views; a dotted name reads a nested field
# (``run.id`` of a RunView). Types not listed show their top-level fields.
_FIELDS: dict[str, list[str]] = {
    "Commit": ["id", "dataset", "parent", "mode", "message", "author", "created_at", "row_count",
               "size_bytes", "version_hash", "notes"],
    "Dataset": ["name", "description", "type", "tags", "groups", "head", "created_by",
                "created_at"],
    "Run": ["id", "kind", "name", "status", "owner", "dataset_commit", "created_at", "started_at",
            "ended_at", "error", "result_json"],
    "ModelVersion": ["model", "version", "aliases", "run_id", "dataset_commit", "metrics_json",
                     "params_json", "artifact_sha256", "created_at"],
    "WorkflowRun": ["id", "workflow", "status", "owner", "params_json", "created_at", "ended_at",
                    "error"],
    "RunView": ["run.id", "run.name", "run.kind", "run.status", "run.owner", "dataset", "params",
                "metrics", "tags", "run.created_at"],
    "TrainingJob": ["run.id", "run.status", "spec.dataset", "spec.model", "spec.workers",
                    "model_version", "run.owner", "run.created_at"],
    "TuningJob": ["run.id", "run.status", "best_trial", "best_metric", "model_version",
                  "run.owner", "run.created_at"],
    "Deployment": ["name", "model", "version", "status", "created_by", "updated_at"],
    "ArtifactFile": ["path", "size_bytes", "media_type", "sha256", "created_at"],
}  # fmt: skip
MAX_ROWS = 200
"""The most rows a list renders as (the rest are counted below the table)."""


def _get(data: dict[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fields_of(record: BaseModel) -> list[str]:
    fields = _FIELDS.get(type(record).__name__)
    return fields if fields is not None else list(type(record).model_fields)


def list_html(items: list[Any]) -> str | None:
    """A list of records of one type as one table (its first ``MAX_ROWS`` rows), or None for
    any other list (IPython then shows its text)."""
    if not items or not isinstance(items[0], BaseModel):
        return None
    kind = type(items[0])
    if not all(type(item) is kind for item in items):
        return None
    cols = _fields_of(items[0])
    rows = [{c: _get(item.model_dump(), c) for c in cols} for item in items[:MAX_ROWS]]
    more = len(items) - len(rows)
    title = f"{kind.__name__}: {len(items)}" + (f" (the first {MAX_ROWS} shown)" if more else "")
    return rows_html(rows, title)


def _views() -> dict[type, Callable[[Any], str]]:
    def record(title: Callable[[Any], str]) -> Callable[[Any], str]:
        return lambda r: record_html(r, title(r), _fields_of(r))

    views: dict[type, Callable[[Any], str]] = {
        Commit: record(lambda c: f"commit {c.id} of {c.dataset}"),
        Dataset: record(lambda d: f"dataset {d.name}"),
        Run: record(lambda r: f"{r.kind} run {r.id}"),
        ModelVersion: record(lambda v: f"model version {v.model}@{v.version}"),
        WorkflowRun: record(lambda w: f"workflow run {w.id}"),
        list: list_html,
    }
    workflow = views[WorkflowRun]
    try:
        from dlplatform.data._stats import CommitStats  # heavy: pyarrow

        views[CommitStats] = lambda s: rows_html(
            [c.model_dump() for c in s.columns], f"statistics ({s.row_count} rows)"
        )
    except ImportError:  # the data package is optional for the views
        pass
    step_fields = {"step_id", "name", "status", "attempts", "started_at", "ended_at", "error"}
    views[WorkflowRunDetail] = lambda d: (
        workflow(d.run) + rows_html([s.model_dump(include=step_fields) for s in d.steps], "steps")
    )
    return views


def install() -> bool:
    """Register the HTML views and a short error display with the running IPython, if any."""
    try:
        from IPython import get_ipython  # optional: only in a notebook
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    formatter = ip.display_formatter.formatters["text/html"]
    for cls, view in _views().items():
        formatter.for_type(cls, view)

    def short_error(
        shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
    ) -> None:
        # Platform errors are for people: show the code and message, not our internals.
        code = getattr(value, "code", "error")
        print(f"{etype.__name__} ({code}): {value}")

    ip.set_custom_exc((DLPlatformError,), short_error)
    return True


install_notebook_views = install
