"""The 5-field cron parser and the trigger scheduler (in-process store, injected clock)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dlplatform.errors import InvalidInput
from dlplatform.metadata import Commit, CommitMode, Dataset, MetadataStore, WorkflowTrigger
from dlplatform.workflows import CronExpr
from dlplatform.workflows.triggers import TriggerScheduler

UTC = timezone.utc
T0 = datetime(2026, 11, 27, 2, 59, 30, tzinfo=UTC)  # a Friday


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("* * * * *", datetime(2026, 11, 27, 3, 0, tzinfo=UTC)),
        ("*/15 * * * *", datetime(2026, 11, 27, 3, 0, tzinfo=UTC)),
        ("7,37 * * * *", datetime(2026, 11, 27, 3, 7, tzinfo=UTC)),
        ("0 9-17/4 * * *", datetime(2026, 11, 27, 9, 0, tzinfo=UTC)),
        ("0 3 * * mon-fri", datetime(2026, 11, 27, 3, 0, tzinfo=UTC)),
        ("0 3 * * sat", datetime(2026, 11, 28, 3, 0, tzinfo=UTC)),
        ("0 0 * * 7", datetime(2026, 11, 29, 0, 0, tzinfo=UTC)),
        ("0 0 29 2 *", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
        ("0 0 1 jan *", datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("5 4 1,15 * sun", datetime(2026, 11, 29, 4, 5, tzinfo=UTC)),  # day OR weekday
        ("@daily", datetime(2026, 11, 28, 0, 0, tzinfo=UTC)),
    ],
)
def test_next_tick(expr: str, expected: datetime) -> None:
    cron = CronExpr.parse(expr)
    assert cron.next_after(T0) == expected
    assert cron.matches(expected)
    assert cron.next_after(expected) > expected


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),
        ("60 * * * *", "minute 60 is outside 0-59"),
        ("* 24 * * *", "hour 24 is outside 0-23"),
        ("* * 0 * *", "day of month 0 is outside 1-31"),
        ("* * * 13 *", "month 13 is outside 1-12"),
        ("* * * * 8", "day of week 8 is outside 0-7"),
        ("x * * * *", "'x' is not a number"),
        ("*/0 * * * *", "must be a positive number"),
        ("5-1 * * * *", "runs backwards"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 31 2 *", "never fires"),
        ("", "expected 5 fields"),
    ],
)
def test_invalid_cron_is_invalid_input(expr: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        CronExpr.parse(expr)


class Recorder:
    """Collects what the scheduler asks to start (the real manager is tested in integration)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], list[str]]] = []

    def __call__(self, trig: WorkflowTrigger, params: dict[str, Any], sources: list[str]) -> str:
        self.calls.append((trig.id, params, sources))
        return f"run-{len(self.calls)}"


def _cron_trigger(store: MetadataStore, expr: str, created: datetime) -> WorkflowTrigger:
    return store.create_workflow_trigger(
        WorkflowTrigger(
            id="t-cron",
            kind="cron",
            workflow="m:f",
            params_json=json.dumps({"tag": "x"}),
            cron=expr,
            owner="alice",
            created_at=created,
        )
    )


def test_cron_fires_when_due_and_a_missed_schedule_runs_once(store: MetadataStore) -> None:
    _cron_trigger(store, "*/5 * * * *", datetime(2026, 11, 27, 1, 1, tzinfo=UTC))
    rec = Recorder()
    sched = TriggerScheduler(store, rec)
    assert sched.tick(datetime(2026, 11, 27, 1, 4, 59, tzinfo=UTC)) == []
    assert sched.tick(datetime(2026, 11, 27, 1, 5, 0, tzinfo=UTC)) == ["run-1"]
    assert rec.calls == [("t-cron", {"tag": "x"}, [])]
    assert sched.tick(datetime(2026, 11, 27, 1, 5, 30, tzinfo=UTC)) == []
    # "down" for 3 hours: 36 ticks missed, one run on start, then the normal rhythm
    back = datetime(2026, 11, 27, 4, 7, tzinfo=UTC)
    assert sched.tick(back) == ["run-2"]
    assert sched.tick(back + timedelta(seconds=1)) == []
    assert sched.tick(datetime(2026, 11, 27, 4, 10, tzinfo=UTC)) == ["run-3"]
    assert store.get_workflow_trigger("t-cron").last_fired_at == datetime(
        2026, 11, 27, 4, 10, tzinfo=UTC
    )
    # the registration survives a restart of the store (it is a row, not memory)
    store.update_workflow_trigger("t-cron", enabled=False)
    assert sched.tick(datetime(2026, 11, 28, tzinfo=UTC)) == []


def _commit(store: MetadataStore, cid: str, parent: str | None) -> Commit:
    commit = Commit(
        id=cid,
        dataset="iris",
        parent=parent,
        mode=CommitMode.APPEND,
        author="alice",
        created_at=datetime.now(UTC),
        row_count=1,
        size_bytes=1,
        version_hash=cid,
        arrow_schema="s",
    )
    return store.add_commit(commit, expected_head=parent)


def test_commit_trigger_fires_once_per_new_head(store: MetadataStore) -> None:
    store.create_dataset(Dataset(name="iris", created_at=datetime.now(UTC), created_by="alice"))
    _commit(store, "c1", None)
    store.create_workflow_trigger(
        WorkflowTrigger(
            id="t-commit",
            kind="commit",
            workflow="m:f",
            dataset="iris",
            owner="alice",
            created_at=datetime.now(UTC),
            last_commit="c1",
        )
    )
    rec = Recorder()
    sched = TriggerScheduler(store, rec)
    now = datetime.now(UTC)
    assert sched.tick(now) == []  # c1 predates the registration
    _commit(store, "c2", "c1")
    assert sched.tick(now) == ["run-1"]
    assert rec.calls == [("t-commit", {"dataset": "iris", "commit": "c2"}, ["commit:c2"])]
    assert sched.tick(now) == []


def test_a_broken_trigger_does_not_stop_the_others(store: MetadataStore) -> None:
    _cron_trigger(store, "* * * * *", datetime(2026, 11, 27, 1, 0, tzinfo=UTC))

    def boom(trig: WorkflowTrigger, params: dict[str, Any], sources: list[str]) -> str:
        raise InvalidInput("factory gone")

    sched = TriggerScheduler(store, boom)
    assert sched.tick(datetime(2026, 11, 27, 1, 2, tzinfo=UTC)) == []
    # marked fired: a failing workflow is not retried every second
    assert store.get_workflow_trigger("t-cron").last_fired_at is not None
