"""Service checks that need no Ray: validation, permissions, 404/409 before the manager is asked."""

from __future__ import annotations

import json

import pytest

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import Role, RunStatus, WorkflowRun, WorkflowStep
from dlplatform.metadata.records import utcnow
from dlplatform.workflows import (
    cancel_workflow_run,
    get_workflow_run,
    list_workflow_runs,
    load_step_output,
    resume_workflow_run,
    run_workflow,
)
from dlplatform.workflows._persist import persist_output

VIEWER = Principal(name="vera", role=Role.VIEWER)


def _finished_run(backend: Backend) -> WorkflowRun:
    run = backend.store.create_workflow_run(
        WorkflowRun(id="done-1", workflow="m:f", owner="admin", created_at=utcnow())
    )
    backend.store.update_workflow_run(run.id, status=RunStatus.SUCCEEDED, ended_at=utcnow())
    ref = persist_output(backend.artifacts, {"answer": 42})
    backend.store.put_workflow_steps(
        [
            WorkflowStep(run_id=run.id, step_id="a", name="a", status=RunStatus.SUCCEEDED,
                         attempts=1, output_ref=json.dumps(ref)),
            WorkflowStep(run_id=run.id, step_id="b", name="b", status=RunStatus.FAILED,
                         attempts=1, error="ValueError: x"),
        ]
    )  # fmt: skip
    return run


def test_bad_paths_and_params_fail_before_any_manager_call(
    backend: Backend, admin: Principal
) -> None:
    with pytest.raises(InvalidInput, match=r"'no_such_pkg_zz\.mod:f' is not registered"):
        run_workflow(backend, admin, "no_such_pkg_zz.mod:f")
    with pytest.raises(InvalidInput, match="'os:system' is not registered"):
        run_workflow(backend, admin, "os:system", {"command": "true"})
    with pytest.raises(InvalidInput, match="expected the name of a registered workflow"):
        run_workflow(backend, admin, "a/b:c")
    with pytest.raises(InvalidInput, match="JSON"):
        run_workflow(backend, admin, "m:f", {"x": {1, 2}})
    with pytest.raises(InvalidInput, match="invalid id"):
        run_workflow(backend, admin, "m:f", run_id="../x")
    with pytest.raises(PermissionDenied):
        run_workflow(backend, VIEWER, "dlplatform.workflows.pipelines:monitor")


def test_reads_404_and_409_without_the_manager(backend: Backend, admin: Principal) -> None:
    run = _finished_run(backend)
    detail = get_workflow_run(backend, VIEWER, run.id)
    assert [s.step_id for s in detail.steps] == ["a", "b"]
    assert [r.id for r in list_workflow_runs(backend, VIEWER)] == [run.id]
    assert load_step_output(backend, VIEWER, run.id, "a") == {"answer": 42}
    with pytest.raises(Conflict, match="has no output"):
        load_step_output(backend, VIEWER, run.id, "b")
    with pytest.raises(NotFound):
        get_workflow_run(backend, VIEWER, "nope")
    with pytest.raises(NotFound):
        resume_workflow_run(backend, admin, "nope")
    with pytest.raises(NotFound):
        cancel_workflow_run(backend, admin, "nope")
    with pytest.raises(Conflict, match="already ended"):
        cancel_workflow_run(backend, admin, run.id)
    with pytest.raises(Conflict, match="already succeeded"):
        resume_workflow_run(backend, admin, run.id)
    with pytest.raises(PermissionDenied):
        cancel_workflow_run(backend, VIEWER, run.id)
    with pytest.raises(InvalidInput, match="limit"):
        list_workflow_runs(backend, VIEWER, limit=0)
