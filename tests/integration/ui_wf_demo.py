"""A workflow for the web UI's browser test (imported by the workflow manager by path
``tests.integration.ui_wf_demo:gated``): its check step fails until ``<folder>/fixed`` exists, so
the run fails first and succeeds when resumed from the UI."""

from __future__ import annotations

from pathlib import Path

from dlplatform.workflows import StepNode, step, workflow


@step(num_cpus=0.25)
def prepare(folder: str) -> int:
    return len(folder)


@step(num_cpus=0.25)
def check(folder: str, size: int) -> int:
    if not (Path(folder) / "fixed").exists():
        raise ValueError("accuracy 0.4 is below the gate 0.9")
    return size + 1


@workflow
def gated(folder: str) -> StepNode:
    """prepare → check (fails until the 'fixed' file exists)."""
    return check.bind(folder, prepare.bind(folder))
