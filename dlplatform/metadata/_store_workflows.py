"""Workflow runs and steps in DuckDB."""

from __future__ import annotations

from typing import Any

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata.records import WorkflowRun, WorkflowStep

_MUTABLE = {"status", "started_at", "ended_at", "error"}


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

    def list_workflow_runs(self, *, limit: int = 100, offset: int = 0) -> list[WorkflowRun]:
        rows = self._db.dicts(
            "SELECT * FROM workflow_runs ORDER BY created_at DESC LIMIT ? OFFSET ?", [limit, offset]
        )
        return [WorkflowRun(**r) for r in rows]

    def update_workflow_run(self, run_id: str, **changes: Any) -> WorkflowRun:
        bad = set(changes) - _MUTABLE
        if bad:
            raise InvalidInput(f"cannot change {sorted(bad)} of a workflow run")
        current = self.get_workflow_run(run_id)
        updated = WorkflowRun.model_validate({**current.model_dump(), **changes})
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
        self.get_workflow_run(step.run_id)
        with self._db.tx() as cur:
            cur.execute(
                "DELETE FROM workflow_steps WHERE run_id = ? AND step_id = ?",
                [step.run_id, step.step_id],
            )
            insert(cur, "workflow_steps", step.model_dump(mode="python"), "workflow step")
        return step

    def list_workflow_steps(self, run_id: str) -> list[WorkflowStep]:
        rows = self._db.dicts(
            "SELECT * FROM workflow_steps WHERE run_id = ? ORDER BY started_at NULLS LAST, step_id",
            [run_id],
        )
        return [WorkflowStep(**r) for r in rows]
