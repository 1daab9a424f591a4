"""The workflow ``soak.py`` fires on each commit: read the new commit's metadata, then check it.

The workflow manager imports this module (``soak.py`` registers it as ``_soak_flow:on_commit`` and
starts the platform with this folder on ``PYTHONPATH``); it imports nothing heavy.
"""

from __future__ import annotations

from typing import Any

from dlplatform import data
from dlplatform.access import run_owner
from dlplatform.workflows import StepNode, current, step, workflow


@step(num_cpus=0.25)
def read_commit(dataset: str, commit: str) -> dict[str, Any]:
    """The commit as the run's owner sees it, through the metadata actor."""
    ctx = current()
    if ctx is None:
        raise RuntimeError("read_commit runs only inside a workflow run")
    backend = ctx.backend()
    found = data.get_commit(backend, run_owner(backend.store, ctx.owner), dataset, commit)
    return {"dataset": dataset, "commit": found.id, "rows": found.row_count}


@step(num_cpus=0.25)
def check_rows(found: dict[str, Any]) -> dict[str, Any]:
    if found["rows"] <= 0:
        raise ValueError(f"commit {found['commit']} of {found['dataset']} has no rows")
    return found


@workflow
def on_commit(dataset: str, commit: str) -> StepNode:
    """read_commit → check_rows, on ``dataset@commit``."""
    return check_rows.bind(read_commit.bind(dataset, commit))
