"""Issue #18, finding 15: only a run's or trigger's owner, or an admin, may cancel, resume or
delete it; holding ``workflow.run`` is not enough. Refusals are audited. (With the owner's or an
admin's call the check passes and the service goes on to the manager, which needs Ray: that is
the BackendUnavailable below.)"""

from __future__ import annotations

import httpx
import pytest

from dlplatform import access
from dlplatform.access import Principal, UserSpec
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, NotFound, PermissionDenied
from dlplatform.metadata import Role, RunStatus, WorkflowRun, WorkflowTrigger
from dlplatform.metadata.records import utcnow
from dlplatform.workflows import cancel_workflow_run, delete_workflow_trigger, resume_workflow_run

ALICE = Principal(name="alice", role=Role.DATA_SCIENTIST)
BOB = Principal(name="bob", role=Role.DATA_ENGINEER)  # also holds workflow.run


def _run(backend: Backend, run_id: str, owner: str, status: RunStatus) -> WorkflowRun:
    backend.store.create_workflow_run(
        WorkflowRun(id=run_id, workflow="fan", owner=owner, created_at=utcnow())
    )
    return backend.store.update_workflow_run(run_id, status=status)


def _trigger(backend: Backend, trigger_id: str, owner: str) -> WorkflowTrigger:
    return backend.store.create_workflow_trigger(
        WorkflowTrigger(id=trigger_id, kind="cron", workflow="monitor", cron="* * * * *",
                        owner=owner, created_at=utcnow())
    )  # fmt: skip


def test_only_the_owner_or_an_admin_cancels_or_resumes_a_run(
    backend: Backend, admin: Principal
) -> None:
    _run(backend, "wf-running", "alice", RunStatus.RUNNING)
    _run(backend, "wf-failed", "alice", RunStatus.FAILED)
    with pytest.raises(PermissionDenied, match="belongs to alice"):
        cancel_workflow_run(backend, BOB, "wf-running")
    with pytest.raises(PermissionDenied, match="belongs to alice"):
        resume_workflow_run(backend, BOB, "wf-failed")
    for who in (ALICE, admin):  # allowed: on to the manager
        with pytest.raises(BackendUnavailable):
            cancel_workflow_run(backend, who, "wf-running")
        with pytest.raises(BackendUnavailable):
            resume_workflow_run(backend, who, "wf-failed")
    assert backend.store.get_workflow_run("wf-running").status is RunStatus.RUNNING
    denied = backend.store.list_audit(actor="bob", outcome="denied")
    assert {(a.action, a.target) for a in denied} == {
        ("workflow.cancel", "workflow_run:wf-running"),
        ("workflow.resume", "workflow_run:wf-failed"),
    }


def test_only_the_owner_or_an_admin_deletes_a_trigger(backend: Backend, admin: Principal) -> None:
    _trigger(backend, "trg-alice", "alice")
    _trigger(backend, "trg-alice-2", "alice")
    with pytest.raises(PermissionDenied, match="belongs to alice"):
        delete_workflow_trigger(backend, BOB, "trg-alice")
    assert backend.store.get_workflow_trigger("trg-alice").owner == "alice"
    delete_workflow_trigger(backend, ALICE, "trg-alice")
    delete_workflow_trigger(backend, admin, "trg-alice-2")
    with pytest.raises(NotFound):
        delete_workflow_trigger(backend, ALICE, "trg-alice")
    denied = backend.store.list_audit(actor="bob", outcome="denied")
    assert [a.action for a in denied] == ["workflow.delete_trigger"]
    deleted = backend.store.list_audit(action="workflow.delete_trigger", outcome="ok")
    assert {a.actor for a in deleted} == {"alice", admin.name}


def test_over_http_another_users_run_and_trigger_are_403(
    backend: Backend, gateway_transport: httpx.BaseTransport
) -> None:
    bob = access.create_user(backend, access.SYSTEM, UserSpec(name="bob", role=Role.DATA_ENGINEER))
    _run(backend, "wf-alice", "alice", RunStatus.RUNNING)
    _trigger(backend, "trg-alice", "alice")
    auth = {"Authorization": f"Bearer {bob.token}"}
    with httpx.Client(transport=gateway_transport, base_url="http://127.0.0.1:8000") as http:
        for method, path in (
            ("POST", "/api/v1/workflows/runs/wf-alice/cancel"),
            ("POST", "/api/v1/workflows/runs/wf-alice/resume"),
            ("DELETE", "/api/v1/workflows/triggers/trg-alice"),
        ):
            reply = http.request(method, path, headers=auth)
            assert reply.status_code == 403, (path, reply.text)
            assert reply.json()["error"] == "permission_denied"
            assert "belongs to alice" in reply.json()["message"]
    assert backend.store.get_workflow_trigger("trg-alice").owner == "alice"
