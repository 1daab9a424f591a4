"""A queued or listed run whose spec this version of the platform cannot read (written by an
older or newer one): the scheduler fails it with the reason instead of stopping every pass at
it, and the job list still answers, without showing what the viewer may not see."""

from __future__ import annotations

import json
from typing import Any

from dlplatform import access
from dlplatform.access import SYSTEM, Principal, UserSpec
from dlplatform.context import Backend
from dlplatform.metadata import Role, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import service
from dlplatform.train.scheduler import _Scheduler

GOOD = {"dataset": "d@c-1", "label": "y", "model": "mlp"}
NEWER = {**GOOD, "a_field_of_a_newer_version": 1,
         "runtime_env": {"env_vars": {"API_KEY": "secret-xyz"}}}  # fmt: skip
BROKEN = {"dataset": "d@c-1", "label": "", "epochs": "many", "runtime_env": {"env_vars": {
    "API_KEY": "secret-xyz"}}}  # fmt: skip


def _queued(backend: Backend, spec: dict[str, Any], owner: str = "alice") -> Run:
    return backend.store.create_run(Run(
        id=service.new_run_id(), owner=owner, status=RunStatus.QUEUED,
        spec_json=json.dumps(spec), created_at=utcnow(),
    ))  # fmt: skip


def test_unreadable_specs_fail_in_the_scheduler_and_list_safely(backend: Backend) -> None:
    access.create_user(backend, SYSTEM, UserSpec(name="alice", role=Role.DATA_SCIENTIST))
    access.create_user(backend, SYSTEM, UserSpec(name="bob", role=Role.DATA_SCIENTIST))
    good, newer, broken = (_queued(backend, s) for s in (GOOD, NEWER, BROKEN))

    bob = Principal(name="bob", role=Role.DATA_SCIENTIST)
    listed = {j.run.id: j for j in service.list_jobs(backend, bob)}
    assert set(listed) == {good.id, newer.id, broken.id}
    assert (listed[newer.id].spec.dataset, listed[newer.id].spec.label) == ("d@c-1", "y")
    assert (listed[broken.id].spec.dataset, listed[broken.id].spec.label) == ("d@c-1", "")
    for job in listed.values():  # another user's secrets stay hidden, also in the raw spec
        assert "secret-xyz" not in job.model_dump_json()

    scheduler: Any = object.__new__(_Scheduler)
    scheduler.__dict__.update(_store=backend.store, _settings=backend.settings)
    assert scheduler._queued_spec(backend.store.get_run(good.id)) is not None
    for run in (newer, broken):
        assert scheduler._queued_spec(backend.store.get_run(run.id)) is None
        failed = backend.store.get_run(run.id)
        assert failed.status is RunStatus.FAILED and failed.ended_at is not None
        assert (failed.error or "").startswith("its spec cannot be read by this version")
    assert backend.store.get_run(good.id).status is RunStatus.QUEUED
