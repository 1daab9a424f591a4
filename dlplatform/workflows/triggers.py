"""Triggers: cron schedules (5-field expressions) and new commits of a dataset.

Registrations are ``WorkflowTrigger`` rows in the metadata store, so they survive restarts. The
workflow manager calls ``TriggerScheduler.tick(now)`` about once a second:

- a cron trigger fires when its next tick after ``last_fired_at`` (or its creation) has come; it then
  records ``now`` as ``last_fired_at``. Ticks missed while the platform was down therefore fire
  once on start, not once per missed tick;
- a commit trigger fires when the head of its dataset differs from the ``last_commit`` it saw; the
  new commit id is passed to the workflow as the parameters ``dataset`` and ``commit``. Several
  commits pushed while the platform was down fire once, for the head. Polling the dataset heads
  keeps the dataset service free of any knowledge of workflows.

Each firing starts exactly one run, also across a crash of the manager. The run's id is derived
from the firing (``run_id_for``: the trigger and its due cron tick, or the last commit it saw and
the head); the run is started first and the trigger marked fired after. A manager that dies in
between leaves the trigger due; the next one fires it again with the same id, the store refuses
the second run (``AlreadyExists``: the first one stands, and the restarted manager continues it),
and the trigger is marked. A workflow that fails to start otherwise is logged and the trigger
marked fired too: it is not retried every second (unless the metadata store was out of reach:
then the firing is tried again at the next tick).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from dlplatform.errors import AlreadyExists, BackendUnavailable, InvalidInput
from dlplatform.metadata import MetadataStore, WorkflowTrigger

log = logging.getLogger("dlplatform.workflows")

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = (  # name, low, high, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_DAYS = 366 * 5


def _number(text: str, low: int, high: int, names: dict[str, int], what: str) -> int:
    value = names.get(text.lower()) if names else None
    if value is None:
        if not text.isdigit():
            raise InvalidInput(f"{what} {text!r} is not a number")
        value = int(text)
    if not low <= value <= high:
        raise InvalidInput(f"{what} {value} is outside {low}-{high}")
    return value


def _field(text: str, low: int, high: int, names: dict[str, int], what: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise InvalidInput(f"{what} step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = (_number(a, low, high, names, what), _number(b, low, high, names, what))
            if start > end:
                raise InvalidInput(f"{what} range {base!r} runs backwards")
        elif base:
            start = _number(base, low, high, names, what)
            end = high if slash else start
        else:
            raise InvalidInput(f"{what}: empty item in {text!r}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class CronExpr:
    """A parsed 5-field cron expression (minute hour day-of-month month day-of-week), in UTC.

    Supports ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, month and
    weekday names (``jan``, ``mon``), Sunday as 0 or 7, and ``@hourly``/``@daily``/``@weekly``/
    ``@monthly``/``@yearly``. As in cron, when both day fields are restricted a day matches if
    either does.
    """

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> CronExpr:
        """Raises InvalidInput: not 5 fields, a value out of range, or a schedule that never fires."""
        if not isinstance(text, str) or len(text) > 200:
            raise InvalidInput("invalid cron expression: expected a string of 5 fields")
        expanded = _MACROS.get(text.strip().lower(), text)
        parts = expanded.split()
        if len(parts) != 5:
            raise InvalidInput(
                f"invalid cron expression {text!r}: expected 5 fields "
                f"(minute hour day-of-month month day-of-week), got {len(parts)}"
            )
        try:
            sets = [
                _field(p, lo, hi, names, name)
                for p, (name, lo, hi, names) in zip(parts, _FIELDS, strict=True)
            ]
        except InvalidInput as exc:
            raise InvalidInput(f"invalid cron expression {text!r}: {exc.message}") from None
        weekdays = frozenset(d % 7 for d in sets[4])
        expr = cls(
            text=text.strip(),
            minutes=sets[0],
            hours=sets[1],
            days=sets[2],
            months=sets[3],
            weekdays=weekdays,
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )
        expr.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))  # never-firing → InvalidInput
        return expr

    def _day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days
        dow = (t.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow

    def matches(self, t: datetime) -> bool:
        return (
            t.minute in self.minutes
            and t.hour in self.hours
            and t.month in self.months
            and self._day_matches(t)
        )

    def next_after(self, t: datetime) -> datetime:
        """The first matching minute strictly after ``t`` (naive times are taken as UTC).

        Raises:
            InvalidInput: nothing matches within 5 years (e.g. ``0 0 31 2 *``).
        """
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        t = t.astimezone(timezone.utc).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=_SEARCH_DAYS)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0)
            elif not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t
        raise InvalidInput(f"cron expression {self.text!r} never fires")


StartRun = Callable[[WorkflowTrigger, dict[str, Any], list[str], str], str]
"""Starts a run for a trigger: (trigger, params, lineage sources, run id) -> run id. Raises
AlreadyExists when a run with that id exists."""


def run_id_for(trigger: WorkflowTrigger, firing: str) -> str:
    """The id of the run a trigger starts for one firing (``firing``: its due tick, or the
    commits it moves between): the same each time that firing is tried, so that the store
    refuses a second run for it."""
    digest = hashlib.sha256(f"{trigger.id}\n{firing}".encode()).hexdigest()
    return f"wf-{digest[:12]}"


class TriggerScheduler:
    """Fires due triggers; ``tick(now)`` is called by the manager (and by tests with a set time)."""

    def __init__(self, store: MetadataStore, start: StartRun) -> None:
        self._store = store
        self._start = start
        self._lock = threading.Lock()

    def tick(self, now: datetime) -> list[str]:
        """Fire every due trigger once; returns the ids of the runs started."""
        started: list[str] = []
        with self._lock:
            triggers = self._store.list_workflow_triggers(enabled_only=True)
            disabled = {u.name for u in self._store.list_users() if u.disabled}
            heads: dict[str, str | None] | None = None
            for trig in triggers:
                if trig.owner in disabled:
                    # Nothing runs in a disabled user's name; its state is kept, so once the
                    # owner is enabled again a missed schedule or new head fires once.
                    continue
                try:
                    if trig.kind == "cron":
                        run_id = self._cron(trig, now)
                    else:
                        if heads is None:
                            heads = {d.name: d.head for d in self._store.list_datasets()}
                        run_id = self._commit(trig, heads.get(trig.dataset or ""))
                except Exception:  # one broken trigger must not stop the others
                    log.exception("workflow trigger %s (%s) failed to fire", trig.id, trig.workflow)
                    continue
                if run_id is not None:
                    started.append(run_id)
        return started

    def _cron(self, trig: WorkflowTrigger, now: datetime) -> str | None:
        expr = CronExpr.parse(trig.cron or "")
        due = expr.next_after(trig.last_fired_at or trig.created_at)
        if due > now:
            return None
        log.info("cron trigger %s fires %s (due %s)", trig.id, trig.workflow, due.isoformat())
        run_id = self._fire(trig, f"cron {due.isoformat()}", json.loads(trig.params_json), [])
        self._store.update_workflow_trigger(trig.id, last_fired_at=now)
        return run_id

    def _commit(self, trig: WorkflowTrigger, head: str | None) -> str | None:
        if head is None or head == trig.last_commit:
            return None
        params = {**json.loads(trig.params_json), "dataset": trig.dataset, "commit": head}
        log.info("commit trigger %s fires %s for %s@%s", trig.id, trig.workflow, trig.dataset, head)
        firing = f"commit {trig.last_commit} {head}"
        run_id = self._fire(trig, firing, params, [f"commit:{head}"])
        self._store.update_workflow_trigger(trig.id, last_commit=head)
        return run_id

    def _fire(
        self, trig: WorkflowTrigger, firing: str, params: dict[str, Any], sources: list[str]
    ) -> str | None:
        """Start the run of one firing; None when it does not start (the caller marks the
        trigger fired either way)."""
        run_id = run_id_for(trig, firing)
        try:
            return self._start(trig, params, sources, run_id)
        except AlreadyExists:
            log.info("trigger %s: run %s of this firing was started already", trig.id, run_id)
        except BackendUnavailable:
            raise  # the platform is out of reach: this firing is tried again at the next tick
        except Exception:  # a workflow that fails to start is not retried every second
            log.exception("workflow trigger %s (%s) failed to start", trig.id, trig.workflow)
        return None
