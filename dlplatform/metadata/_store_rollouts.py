"""Rollouts of deployments, their events, and per-version numbers from the prediction log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dlplatform.errors import Conflict, NotFound
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata.records import Rollout, RolloutEvent, VersionWindow

MAX_LABELLED = 20_000
"""The most labelled predictions one ``version_window`` returns (the newest)."""


class RolloutTables:
    _db: Database

    def create_rollout(self, rollout: Rollout, event: RolloutEvent) -> Rollout:
        """Record a new RUNNING rollout and its first event.

        Raises:
            Conflict: the deployment has a RUNNING rollout already.
        """
        with self._db.tx() as cur:
            row = cur.execute(
                "SELECT id FROM rollouts WHERE deployment = ? AND status = 'RUNNING'",
                [rollout.deployment],
            ).fetchone()
            if row is not None:
                raise Conflict(
                    f"deployment {rollout.deployment!r} has a rollout in progress ({row[0]}); "
                    "wait for it to end or abort it"
                )
            insert(cur, "rollouts", rollout.model_dump(mode="python"), f"rollout {rollout.id}")
            insert(cur, "rollout_events", event.model_dump(mode="python"), "rollout event")
        return rollout

    def get_rollout(self, rollout_id: str) -> Rollout:
        rows = self._db.dicts("SELECT * FROM rollouts WHERE id = ?", [rollout_id])
        if not rows:
            raise NotFound(f"rollout {rollout_id!r} does not exist")
        return Rollout(**rows[0])

    def latest_rollout(self, deployment: str) -> Rollout:
        """The newest rollout of ``deployment``. Raises NotFound: it never had one."""
        rows = self._db.dicts(
            "SELECT * FROM rollouts WHERE deployment = ? ORDER BY created_at DESC LIMIT 1",
            [deployment],
        )
        if not rows:
            raise NotFound(f"deployment {deployment!r} has no rollout")
        return Rollout(**rows[0])

    def list_rollouts(
        self, *, deployment: str | None = None, running: bool = False, limit: int = 100
    ) -> list[Rollout]:
        """Newest first; of one deployment, and only RUNNING ones, when asked."""
        where: list[str] = []
        params: list[Any] = []
        if deployment is not None:
            where.append("deployment = ?")
            params.append(deployment)
        if running:
            where.append("status = 'RUNNING'")
        sql = "SELECT * FROM rollouts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.dicts(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit])
        return [Rollout(**r) for r in rows]

    def update_rollout(self, rollout: Rollout, event: RolloutEvent | None = None) -> Rollout:
        """Save ``rollout`` (and append ``event``) if it is still RUNNING in the store.

        Raises:
            NotFound: no such rollout.
            Conflict: it has ended already (an abort won the race).
        """
        with self._db.tx() as cur:
            row = cur.execute("SELECT status FROM rollouts WHERE id = ?", [rollout.id]).fetchone()
            if row is None:
                raise NotFound(f"rollout {rollout.id!r} does not exist")
            if row[0] != "RUNNING":
                raise Conflict(f"rollout {rollout.id} has ended ({row[0]})")
            values = rollout.model_dump(mode="python")
            sets = ", ".join(f'"{k}" = ?' for k in values if k != "id")
            cur.execute(
                f"UPDATE rollouts SET {sets} WHERE id = ?",
                [*(v for k, v in values.items() if k != "id"), rollout.id],
            )
            if event is not None:
                insert(cur, "rollout_events", event.model_dump(mode="python"), "rollout event")
        return rollout

    def next_rollout_seq(self, rollout_id: str) -> int:
        row = self._db.one(
            "SELECT coalesce(max(seq), 0) FROM rollout_events WHERE rollout_id = ?", [rollout_id]
        )
        return int(row[0] if row else 0) + 1

    def list_rollout_events(self, rollout_id: str) -> list[RolloutEvent]:
        rows = self._db.dicts(
            "SELECT * FROM rollout_events WHERE rollout_id = ? ORDER BY seq", [rollout_id]
        )
        return [RolloutEvent(**r) for r in rows]

    def version_window(self, deployment: str, version: int, since: datetime) -> VersionWindow:
        """Requests, failures, p99 latency and the labelled predictions of one version of
        ``deployment`` logged at or after ``since`` (the last label of a request counts)."""
        row = self._db.one(
            "SELECT count(*), count(*) FILTER (WHERE error <> ''), "
            "quantile_cont(latency_ms, 0.99) FILTER (WHERE error = '') "
            'FROM predictions WHERE deployment = ? AND version = ? AND "at" >= ?',
            [deployment, version, since],
        )
        requests, errors, p99 = row if row else (0, 0, None)
        labelled = self._db.dicts(
            'SELECT p.outputs_json, arg_max(f.label_json, f."at") AS label_json '
            "FROM predictions p JOIN feedback f ON f.request_id = p.request_id "
            "WHERE p.deployment = ? AND p.version = ? AND p.\"at\" >= ? AND p.error = '' "
            'GROUP BY p.request_id, p.outputs_json, p."at" ORDER BY p."at" DESC LIMIT ?',
            [deployment, version, since, MAX_LABELLED],
        )
        return VersionWindow(
            version=version,
            requests=int(requests),
            errors=int(errors),
            p99_ms=None if p99 is None else float(p99),
            labelled=tuple((r["outputs_json"], r["label_json"]) for r in labelled),
        )
