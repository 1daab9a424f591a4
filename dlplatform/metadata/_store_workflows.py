"""Workflow runs, steps, trigger registrations and the workflow registry in DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata.records import (
    RunStatus,
    WorkflowRegistration,
    WorkflowRun,
    WorkflowStep,
    WorkflowTrigger,
    invalid_input,
    utcnow,
)

_MUTABLE = {"status", "started_at", "ended_at", "error"}
_TRIGGER_MUTABLE = {"enabled", "last_fired_at", "last_commit"}


class WorkflowTables:
    _db: Database

    def create_workflow_run(self, run: WorkflowRun) -> WorkflowRun:
        with self._db.tx() as cur:
            insert(cur, "workflow_runs", run.model_dump(mode="python"), f"workflow run {run.id!r}")
        return run

    def get_workflow_run(self, run_id: str) -> WorkflowRun:
        rows = self._db.dicts("SELECT * FROM workflow_runs WHERE id = ?", [run_id])
        if not rows:
            raise NotFound(f"workflow run {run_id!r} does not exist")
        return WorkflowRun(**rows[0])

    def list_workflow_runs(
        self, *, limit: int = 100, offset: int = 0, statuses: Sequence[RunStatus] = ()
    ) -> list[WorkflowRun]:
        """Newest first; only those in ``statuses`` when given."""
        where, params = "", []
        if statuses:
            where = f"WHERE status IN ({', '.join('?' for _ in statuses)}) "
            params = [RunStatus(s).value for s in statuses]
        rows = self._db.dicts(
            f"SELECT * FROM workflow_runs {where}ORDER BY created_at DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [WorkflowRun(**r) for r in rows]

    def update_workflow_run(self, run_id: str, **changes: Any) -> WorkflowRun:
        bad = set(changes) - _MUTABLE
        if bad:
            raise InvalidInput(f"cannot change {sorted(bad)} of a workflow run")
        current = self.get_workflow_run(run_id)
        try:
            updated = WorkflowRun.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid_input(exc, f"change of workflow run {run_id!r}") from exc
        if changes:
            dumped = updated.model_dump(mode="python")
            sets = ", ".join(f"{k} = ?" for k in changes)
            self._db.run(
                f"UPDATE workflow_runs SET {sets} WHERE id = ?",
                [*(dumped[k] for k in changes), run_id],
            )
        return updated

    def put_workflow_step(self, step: WorkflowStep) -> WorkflowStep:
        """Create or replace the state of one step of a run."""
        self.put_workflow_steps([step])
        return step

    def put_workflow_steps(self, steps: Sequence[WorkflowStep]) -> int:
        """Create or replace the state of several steps (of existing runs) in one transaction."""
        for run_id in {s.run_id for s in steps}:
            self.get_workflow_run(run_id)
        with self._db.tx() as cur:
            for step in steps:
                cur.execute(
                    "DELETE FROM workflow_steps WHERE run_id = ? AND step_id = ?",
                    [step.run_id, step.step_id],
                )
                insert(cur, "workflow_steps", step.model_dump(mode="python"), "workflow step")
        return len(steps)

    def get_workflow_step(self, run_id: str, step_id: str) -> WorkflowStep:
        rows = self._db.dicts(
            "SELECT * FROM workflow_steps WHERE run_id = ? AND step_id = ?", [run_id, step_id]
        )
        if not rows:
            raise NotFound(f"step {step_id!r} of workflow run {run_id!r} does not exist")
        return WorkflowStep(**rows[0])

    def list_workflow_steps(self, run_id: str) -> list[WorkflowStep]:
        rows = self._db.dicts(
            "SELECT * FROM workflow_steps WHERE run_id = ? ORDER BY started_at NULLS LAST, step_id",
            [run_id],
        )
        return [WorkflowStep(**r) for r in rows]

    def start_workflow_step(
        self, run_id: str, step_id: str, started_at: datetime | None = None
    ) -> None:
        """Mark a step RUNNING and count one more attempt (called by a retried step's own task)."""
        self.advance_workflow_steps(run_id, started=[(step_id, True)], at=started_at)

    def finish_workflow_step(
        self,
        run_id: str,
        step_id: str,
        status: RunStatus,
        *,
        output_ref: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the end of a step. A step that already SUCCEEDED keeps its output.

        Raises:
            InvalidInput: ``status`` is not final.
        """
        self.advance_workflow_steps(run_id, finished=[(step_id, status, output_ref, error)])

    def advance_workflow_steps(
        self,
        run_id: str,
        *,
        started: Sequence[tuple[str, bool]] = (),
        finished: Sequence[tuple[str, RunStatus, str | None, str | None]] = (),
        at: datetime | None = None,
    ) -> None:
        """Record step transitions of one run in one transaction (the engine calls this once per
        scheduling round, not once per step).

        Args:
            started: (step id, whether to count an attempt): the step becomes RUNNING at ``at``.
            finished: (step id, final status, output_ref, error); a SUCCEEDED step is left as is.

        Raises:
            InvalidInput: a finished status is not final.
        """
        ended = at or utcnow()
        rows = []
        for step_id, status, output_ref, error in finished:
            status = RunStatus(status)
            if not status.is_final:
                raise InvalidInput(f"a step ends with a final status, not {status.value}")
            rows.append([step_id, status.value, output_ref, error])
        with self._db.tx() as cur:
            if rows:  # one statement for the whole batch: executemany costs ~1 ms a row
                values = ", ".join("(?, ?, ?, ?)" for _ in rows)
                cur.execute(
                    "UPDATE workflow_steps AS w SET status = v.status, output_ref = v.output_ref, "
                    "error = v.error, ended_at = ? "
                    f"FROM (VALUES {values}) AS v(step_id, status, output_ref, error) "
                    "WHERE w.run_id = ? AND w.step_id = v.step_id AND w.status <> 'SUCCEEDED'",
                    [ended, *(x for r in rows for x in r), run_id],
                )
            for count in (True, False):
                ids = [sid for sid, c in started if c is count]
                if ids:
                    marks = ", ".join("?" for _ in ids)
                    cur.execute(
                        "UPDATE workflow_steps SET status = 'RUNNING', "
                        f"attempts = attempts + {1 if count else 0}, started_at = ?, "
                        f"ended_at = NULL, error = NULL WHERE run_id = ? AND step_id IN ({marks})",
                        [ended, run_id, *ids],
                    )

    # --- triggers ---------------------------------------------------------------------------

    def create_workflow_trigger(self, trigger: WorkflowTrigger) -> WorkflowTrigger:
        with self._db.tx() as cur:
            insert(
                cur,
                "workflow_triggers",
                trigger.model_dump(mode="python"),
                f"workflow trigger {trigger.id!r}",
            )
        return trigger

    def get_workflow_trigger(self, trigger_id: str) -> WorkflowTrigger:
        rows = self._db.dicts("SELECT * FROM workflow_triggers WHERE id = ?", [trigger_id])
        if not rows:
            raise NotFound(f"workflow trigger {trigger_id!r} does not exist")
        return WorkflowTrigger(**rows[0])

    def list_workflow_triggers(self, *, enabled_only: bool = False) -> list[WorkflowTrigger]:
        where = "WHERE enabled" if enabled_only else ""
        rows = self._db.dicts(f"SELECT * FROM workflow_triggers {where} ORDER BY created_at, id")
        return [WorkflowTrigger(**r) for r in rows]

    def update_workflow_trigger(self, trigger_id: str, **changes: Any) -> WorkflowTrigger:
        bad = set(changes) - _TRIGGER_MUTABLE
        if bad:
            raise InvalidInput(f"cannot change {sorted(bad)} of a workflow trigger")
        current = self.get_workflow_trigger(trigger_id)
        try:
            updated = WorkflowTrigger.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid_input(exc, f"change of workflow trigger {trigger_id!r}") from exc
        if changes:
            dumped = updated.model_dump(mode="python")
            sets = ", ".join(f"{k} = ?" for k in changes)
            self._db.run(
                f"UPDATE workflow_triggers SET {sets} WHERE id = ?",
                [*(dumped[k] for k in changes), trigger_id],
            )
        return updated

    def delete_workflow_trigger(self, trigger_id: str) -> None:
        self.get_workflow_trigger(trigger_id)
        self._db.run("DELETE FROM workflow_triggers WHERE id = ?", [trigger_id])

    # --- registry (the admins' registrations; built-ins and entry points live in the code) ----

    def create_workflow_registration(
        self, registration: WorkflowRegistration
    ) -> WorkflowRegistration:
        """Raises AlreadyExists: the name is registered."""
        with self._db.tx() as cur:
            insert(
                cur,
                "workflow_registry",
                registration.model_dump(mode="python"),
                f"workflow {registration.name!r}",
            )
        return registration

    def get_workflow_registration(self, name: str) -> WorkflowRegistration:
        rows = self._db.dicts("SELECT * FROM workflow_registry WHERE name = ?", [name])
        if not rows:
            raise NotFound(f"workflow {name!r} is not registered")
        return WorkflowRegistration(**rows[0])

    def list_workflow_registrations(self) -> list[WorkflowRegistration]:
        rows = self._db.dicts("SELECT * FROM workflow_registry ORDER BY name")
        return [WorkflowRegistration(**r) for r in rows]

    def delete_workflow_registration(self, name: str) -> None:
        """Raises NotFound."""
        self.get_workflow_registration(name)
        self._db.run("DELETE FROM workflow_registry WHERE name = ?", [name])
