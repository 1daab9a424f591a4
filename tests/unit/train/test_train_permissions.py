"""The permission rules of the training service: cancel and submit, on a real DuckDB store
(no Ray)."""

from __future__ import annotations

import pytest

from dlplatform.access import SYSTEM, Principal
from dlplatform.context import Backend
from dlplatform.errors import Conflict, NotFound, PermissionDenied
from dlplatform.metadata import Role, Run, RunStatus, User
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec, cancel_job, get_job, list_jobs, submit


def _user(backend: Backend, name: str, role: Role) -> Principal:
    user = User(name=name, role=role, created_at=utcnow())
    backend.store.create_user(user)
    return Principal.of(user)


def _run(backend: Backend, owner: str, status: RunStatus) -> Run:
    spec = TrainingJobSpec(dataset="digits@c-1", label="target")
    run = Run(id=f"run-{owner}-{status.value.lower()}", owner=owner, status=status,
              spec_json=spec.model_dump_json(), created_at=utcnow())  # fmt: skip
    return backend.store.create_run(run)


def test_cancel_rules(backend: Backend) -> None:
    alice = _user(backend, "alice", Role.DATA_SCIENTIST)
    bob = _user(backend, "bob", Role.RESEARCHER)
    viewer = _user(backend, "vic", Role.VIEWER)
    done = _run(backend, "alice", RunStatus.SUCCEEDED)
    queued = _run(backend, "alice", RunStatus.QUEUED)
    with pytest.raises(Conflict, match="already finished"):
        cancel_job(backend, alice, done.id)
    with pytest.raises(PermissionDenied, match="may not cancel"):
        cancel_job(backend, bob, queued.id)
    with pytest.raises(PermissionDenied, match=r"train\.submit"):
        cancel_job(backend, viewer, queued.id)
    job = get_job(backend, viewer, queued.id)
    assert job.queue_position == 1 and job.status == "QUEUED"
    cancelled = cancel_job(backend, SYSTEM, queued.id)  # admins may cancel any job
    assert cancelled.status == "CANCELLED" and cancelled.run.error == "cancelled by system"
    assert [j.id for j in list_jobs(backend, viewer)] == [queued.id, done.id]
    with pytest.raises(NotFound):
        get_job(backend, viewer, "run-nope")


def test_submit_needs_train_submit(backend: Backend) -> None:
    viewer = _user(backend, "vic", Role.VIEWER)
    engineer = _user(backend, "eng", Role.DATA_ENGINEER)
    spec = TrainingJobSpec(dataset="digits", label="target")
    for who in (viewer, engineer):
        with pytest.raises(PermissionDenied, match=r"train\.submit"):
            submit(backend, who, spec)
    denied = [a for a in backend.store.list_audit() if a.outcome == "denied"]
    assert {a.actor for a in denied} >= {"vic", "eng"}
