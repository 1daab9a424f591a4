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


def _views() -> dict[type, Callable[[Any], str]]:
    from dlplatform.metadata.records import Commit, Dataset, ModelVersion, Run, WorkflowRun

    def commit(c: Commit) -> str:
        return record_html(
            c, f"commit {c.id} of {c.dataset}",
            ["id", "parent", "mode", "message", "author", "created_at", "row_count",
             "size_bytes", "version_hash", "notes"],
        )  # fmt: skip

    def dataset(d: Dataset) -> str:
        return record_html(
            d, f"dataset {d.name}",
            ["name", "description", "type", "tags", "groups", "head", "created_by", "created_at"],
        )  # fmt: skip

    def run(r: Run) -> str:
        return record_html(
            r, f"{r.kind} run {r.id}",
            ["id", "kind", "status", "owner", "dataset_commit", "created_at", "started_at",
             "ended_at", "error", "result_json"],
        )  # fmt: skip

    def version(v: ModelVersion) -> str:
        return record_html(
            v, f"model version {v.model}@{v.version}",
            ["model", "version", "aliases", "run_id", "dataset_commit", "metrics_json",
             "params_json", "artifact_sha256", "created_at"],
        )  # fmt: skip

    def workflow(w: WorkflowRun) -> str:
        return record_html(
            w, f"workflow run {w.id}",
            ["id", "workflow", "status", "owner", "params_json", "created_at", "ended_at", "error"],
        )  # fmt: skip

    views: dict[type, Callable[[Any], str]] = {
        Commit: commit, Dataset: dataset, Run: run, ModelVersion: version, WorkflowRun: workflow,
    }  # fmt: skip
    try:
        from dlplatform.data._stats import CommitStats

        views[CommitStats] = lambda s: rows_html(
            [c.model_dump() for c in s.columns], f"statistics ({s.row_count} rows)"
        )
    except ImportError:  # the data package is optional for the views
        pass
    try:
        from dlplatform.workflows.spec import WorkflowRunDetail

        views[WorkflowRunDetail] = lambda d: (
            workflow(d.run)
            + rows_html(
                [
                    s.model_dump(
                        include={
                            "step_id",
                            "name",
                            "status",
                            "attempts",
                            "started_at",
                            "ended_at",
                            "error",
                        }
                    )
                    for s in d.steps
                ],
                "steps",
            )
        )
    except ImportError:
        pass
    return views


def install() -> bool:
    """Register the HTML views and a short error display with the running IPython, if any."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    ip = get_ipython()
    if ip is None:
        return False
    formatter = ip.display_formatter.formatters["text/html"]
    for cls, view in _views().items():
        formatter.for_type(cls, view)

    from dlplatform.errors import DLPlatformError

    def short_error(
        shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None
    ) -> None:
        # Platform errors are for people: show the code and message, not our internals.
        code = getattr(value, "code", "error")
        print(f"{etype.__name__} ({code}): {value}")

    ip.set_custom_exc((DLPlatformError,), short_error)
    return True


install_notebook_views = install
