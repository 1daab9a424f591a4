"""Triggers of a disabled user stop (#18, finding 14): nothing runs in a disabled user's name,
and the missed schedule fires once when the user is enabled again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dlplatform import access
from dlplatform.access import SYSTEM, UserSpec
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, Role, WorkflowTrigger
from dlplatform.workflows.triggers import TriggerScheduler


def test_a_disabled_owners_triggers_do_not_fire(backend: Backend, store: MetadataStore) -> None:
    access.create_user(backend, SYSTEM, UserSpec(name="alice", role=Role.DATA_SCIENTIST))
    created = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    for trigger_id, owner in (("t-alice", "alice"), ("t-system", "system")):
        store.create_workflow_trigger(
            WorkflowTrigger(
                id=trigger_id,
                kind="cron",
                workflow="m:f",
                cron="*/5 * * * *",
                owner=owner,
                created_at=created,
            )
        )
    fired: list[str] = []

    def start(
        trig: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str
    ) -> str:
        fired.append(trig.id)
        return f"run-{len(fired)}"

    sched = TriggerScheduler(store, start)
    access.disable_user(backend, SYSTEM, "alice")
    assert sched.tick(created + timedelta(minutes=5)) == ["run-1"]
    assert fired == ["t-system"]  # only the trigger whose owner is not disabled
    assert store.get_workflow_trigger("t-alice").last_fired_at is None
    access.enable_user(backend, SYSTEM, "alice")
    assert sched.tick(created + timedelta(minutes=11)) == ["run-2", "run-3"]
    assert sorted(fired[1:]) == ["t-alice", "t-system"]
