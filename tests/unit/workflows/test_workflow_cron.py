"""The 5-field cron parser and the trigger scheduler (in-process store, injected clock)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from dlplatform.errors import BackendUnavailable, InvalidInput
from dlplatform.metadata import (
    Commit,
    CommitMode,
    Dataset,
    MetadataStore,
    WorkflowRun,
    WorkflowTrigger,
)
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

    def __call__(
        self, trig: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str
    ) -> str:
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

    def boom(trig: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str) -> str:
        raise InvalidInput("factory gone")

    sched = TriggerScheduler(store, boom)
    assert sched.tick(datetime(2026, 11, 27, 1, 2, tzinfo=UTC)) == []
    # marked fired: a failing workflow is not retried every second
    assert store.get_workflow_trigger("t-cron").last_fired_at is not None


# --- after downtime and crashes: each firing starts exactly one run (#19) ----------------------


class Starter:
    """Starts runs as the manager does, as far as the store sees it: a workflow run row with the
    id it is given (the store refuses a taken id with AlreadyExists)."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.started: list[str] = []

    def __call__(
        self, trig: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str
    ) -> str:
        run = WorkflowRun(
            id=run_id,
            workflow=trig.workflow,
            params_json=json.dumps(params),
            owner=trig.owner,
            created_at=datetime.now(UTC),
        )
        self.store.create_workflow_run(run)
        self.started.append(run_id)
        return run_id


class Crash(Exception):
    """The manager's process dies here."""


def _crash_on_mark(monkeypatch: pytest.MonkeyPatch, store: MetadataStore) -> None:
    def crash(trigger_id: str, **changes: Any) -> WorkflowTrigger:
        raise Crash(trigger_id)

    monkeypatch.setattr(store, "update_workflow_trigger", crash)


def _iris_commit_trigger(store: MetadataStore) -> None:
    """Dataset ``iris`` at commit c1 and an on-commit trigger that has seen c1."""
    store.create_dataset(Dataset(name="iris", created_at=datetime.now(UTC), created_by="alice"))
    _commit(store, "c1", None)
    store.create_workflow_trigger(
        WorkflowTrigger(
            id="t-commit", kind="commit", workflow="m:f", dataset="iris", owner="alice",
            created_at=datetime.now(UTC), last_commit="c1",
        )
    )  # fmt: skip


def test_a_long_downtime_fires_a_cron_trigger_once(store: MetadataStore) -> None:
    _cron_trigger(store, "*/10 * * * *", datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    start = Starter(store)
    back = datetime(2026, 11, 29, 13, 4, 12, tzinfo=UTC)  # 2.5 days down: 361 ticks missed
    (first,) = TriggerScheduler(store, start).tick(back)
    sched = TriggerScheduler(store, start)  # and again with the next manager
    assert sched.tick(back + timedelta(seconds=1)) == []
    assert sched.tick(datetime(2026, 11, 29, 13, 9, 59, tzinfo=UTC)) == []
    (second,) = sched.tick(datetime(2026, 11, 29, 13, 10, 0, tzinfo=UTC))
    assert start.started == [first, second] and first != second
    assert {r.id for r in store.list_workflow_runs()} == {first, second}


def test_a_commit_trigger_fires_once_for_the_head_after_downtime(store: MetadataStore) -> None:
    _iris_commit_trigger(store)
    for cid, parent in (("c2", "c1"), ("c3", "c2"), ("c4", "c3")):  # pushed while down
        _commit(store, cid, parent)
    rec = Recorder()
    now = datetime.now(UTC)
    assert TriggerScheduler(store, rec).tick(now) == ["run-1"]
    assert rec.calls == [("t-commit", {"dataset": "iris", "commit": "c4"}, ["commit:c4"])]
    assert TriggerScheduler(store, rec).tick(now) == []
    assert store.get_workflow_trigger("t-commit").last_commit == "c4"


def test_a_crash_between_starting_a_cron_run_and_marking_the_trigger_starts_no_second_run(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cron_trigger(store, "0 3 * * *", datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    start = Starter(store)
    _crash_on_mark(monkeypatch, store)
    TriggerScheduler(store, start).tick(datetime(2026, 11, 27, 3, 0, 5, tzinfo=UTC))
    monkeypatch.undo()
    (started,) = start.started  # the run started; the trigger is still due
    assert store.get_workflow_trigger("t-cron").last_fired_at is None
    # the restarted manager, two nightly ticks later: the firing it finds is the one started
    back = datetime(2026, 11, 29, 3, 0, 5, tzinfo=UTC)
    assert TriggerScheduler(store, start).tick(back) == []
    assert store.get_workflow_trigger("t-cron").last_fired_at == back
    assert start.started == [started]
    assert [r.id for r in store.list_workflow_runs()] == [started]
    # and the schedule goes on
    assert len(TriggerScheduler(store, start).tick(back + timedelta(days=1))) == 1


def test_a_crash_between_starting_a_commit_run_and_marking_the_trigger(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _iris_commit_trigger(store)
    _commit(store, "c2", "c1")
    start = Starter(store)
    now = datetime.now(UTC)
    _crash_on_mark(monkeypatch, store)
    TriggerScheduler(store, start).tick(now)
    monkeypatch.undo()
    assert len(start.started) == 1 and store.get_workflow_trigger("t-commit").last_commit == "c1"
    # restarted with the same head: c2's run was started, nothing more
    assert TriggerScheduler(store, start).tick(now) == []
    assert store.get_workflow_trigger("t-commit").last_commit == "c2"
    # a crash again, then commits while down: one more run, for the newest head
    _commit(store, "c3", "c2")
    _crash_on_mark(monkeypatch, store)
    TriggerScheduler(store, start).tick(now)
    monkeypatch.undo()
    _commit(store, "c4", "c3")
    _commit(store, "c5", "c4")
    (last,) = TriggerScheduler(store, start).tick(now)
    assert len(start.started) == 3 and start.started[-1] == last
    params = [json.loads(r.params_json)["commit"] for r in store.list_workflow_runs()]
    assert sorted(params) == ["c2", "c3", "c5"]
    assert TriggerScheduler(store, start).tick(now) == []


def test_a_firing_the_store_could_not_take_is_tried_again(store: MetadataStore) -> None:
    _cron_trigger(store, "* * * * *", datetime(2026, 11, 27, 1, 0, tzinfo=UTC))
    ids: list[str] = []

    def flaky(
        trig: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str
    ) -> str:
        ids.append(run_id)
        if len(ids) == 1:
            raise BackendUnavailable("metadata actor is unavailable")
        return run_id

    sched = TriggerScheduler(store, flaky)
    now = datetime(2026, 11, 27, 1, 2, tzinfo=UTC)
    assert sched.tick(now) == []
    assert store.get_workflow_trigger("t-cron").last_fired_at is None  # still due
    assert sched.tick(now + timedelta(seconds=1)) == [ids[0]]
    assert ids[0] == ids[1]  # the same firing, the same run id
