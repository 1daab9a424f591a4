"""Resource usage intervals and quotas in DuckDB (see ``dlplatform.usage``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata._db import Database
from dlplatform.metadata.records import Quota, UsageInterval

MAX_USAGE_INTERVALS = 200_000
"""The most intervals one usage query reads (a window that overlaps more is refused)."""

_OPEN = "kind = ? AND subject = ? AND end_at IS NULL"
_SELECT = (
    "SELECT u.kind, u.subject, u.owner, u.dataset, u.start_at, "
    "coalesce(u.end_at, r.ended_at) AS end_at, u.cpus, u.gpus, u.peak_mem_bytes "
    "FROM usage_intervals u LEFT JOIN runs r ON u.kind = 'run' AND r.id = u.subject"
)
"""Intervals as they are read: a run's interval still open after its run ended ends at the
run's ``ended_at``."""


class UsageTables:
    _db: Database

    def open_usage(self, interval: UsageInterval) -> UsageInterval:
        """Start an interval; an interval the subject still holds ends where this one starts
        (a deployment scaled or rolled: one subject holds one interval at a time)."""
        with self._db.tx() as cur:
            cur.execute(
                f"UPDATE usage_intervals SET end_at = ? WHERE {_OPEN} AND start_at < ?",
                [interval.start_at, interval.kind, interval.subject, interval.start_at],
            )
            cur.execute(
                "INSERT OR IGNORE INTO usage_intervals (kind, subject, owner, dataset, start_at, "
                "end_at, cpus, gpus, peak_mem_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    interval.kind, interval.subject, interval.owner, interval.dataset,
                    interval.start_at, interval.end_at, interval.cpus, interval.gpus,
                    interval.peak_mem_bytes,
                ],
            )  # fmt: skip
        return interval

    def close_usage(self, kind: Literal["run", "deployment"], subject: str, at: datetime) -> None:
        """End the interval ``subject`` holds (none: nothing happens)."""
        self._db.run(f"UPDATE usage_intervals SET end_at = ? WHERE {_OPEN}", [at, kind, subject])

    def record_peak_memory(
        self, peaks: dict[str, int], kind: Literal["run", "deployment"] = "run"
    ) -> None:
        """Raise the peak memory of the open intervals of runs or deployments (subject ->
        bytes sampled)."""
        if not peaks:
            return
        with self._db.tx() as cur:
            for subject, peak in peaks.items():
                cur.execute(
                    "UPDATE usage_intervals SET peak_mem_bytes = greatest(coalesce("
                    f"peak_mem_bytes, 0), ?) WHERE {_OPEN}",
                    [int(peak), kind, subject],
                )

    def close_ended_run_usage(self) -> None:
        """End the open intervals of runs that ended (at the run's ``ended_at``)."""
        self._db.run(
            "UPDATE usage_intervals SET end_at = runs.ended_at FROM runs WHERE "
            "usage_intervals.kind = 'run' AND usage_intervals.end_at IS NULL AND "
            "runs.id = usage_intervals.subject AND runs.ended_at IS NOT NULL"
        )

    def list_usage(
        self,
        since: datetime,
        until: datetime,
        *,
        kind: Literal["run", "deployment"] | None = None,
        owner: str | None = None,
        subject: str | None = None,
    ) -> list[UsageInterval]:
        """The intervals that overlap ``[since, until)``, oldest first. A run's interval still
        open after its run ended comes back ending at the run's ``ended_at``.

        Raises:
            InvalidInput: more than ``MAX_USAGE_INTERVALS`` overlap the window.
        """
        where = ["u.start_at < ?", "coalesce(u.end_at, r.ended_at, ?) > ?"]
        params: list[object] = [until, until, since]
        for column, value in (("kind", kind), ("owner", owner), ("subject", subject)):
            if value is not None:
                where.append(f"u.{column} = ?")
                params.append(value)
        rows = self._db.dicts(
            f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY u.start_at, u.kind, u.subject "
            f"LIMIT {MAX_USAGE_INTERVALS + 1}",
            params,
        )
        if len(rows) > MAX_USAGE_INTERVALS:
            raise InvalidInput(
                f"more than {MAX_USAGE_INTERVALS} usage intervals overlap this window; "
                "ask for a shorter one"
            )
        return [UsageInterval(**r) for r in rows]

    def usage_of(self, kind: Literal["run", "deployment"], subject: str) -> list[UsageInterval]:
        """Every interval of one run or deployment, oldest first (the most recent
        ``MAX_USAGE_INTERVALS``). Depends on the database alone, so the gateway's read cache
        can keep it (``shared_reads.CACHED``): a job's page pays no store call for it."""
        rows = self._db.dicts(
            f"{_SELECT} WHERE u.kind = ? AND u.subject = ? ORDER BY u.start_at DESC "
            f"LIMIT {MAX_USAGE_INTERVALS}",
            [kind, subject],
        )
        return [UsageInterval(**r) for r in reversed(rows)]

    # --- quotas ------------------------------------------------------------------------------

    def put_quota(self, quota: Quota) -> Quota:
        """Set the limits of a user or group (replacing the ones it had)."""
        self._db.run(
            "INSERT OR REPLACE INTO quotas (scope, name, max_cpus, max_gpus, gpu_hours_per_day, "
            "updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [quota.scope, quota.name, quota.max_cpus, quota.max_gpus, quota.gpu_hours_per_day,
             quota.updated_by, quota.updated_at],
        )  # fmt: skip
        return quota

    def list_quotas(self) -> list[Quota]:
        rows = self._db.dicts("SELECT * FROM quotas ORDER BY scope DESC, name")
        return [Quota(**r) for r in rows]

    def delete_quota(self, scope: Literal["user", "group"], name: str) -> Quota:
        """Remove a quota; returns it.

        Raises:
            NotFound: ``scope`` ``name`` has no quota.
        """
        rows = self._db.dicts("SELECT * FROM quotas WHERE scope = ? AND name = ?", [scope, name])
        if not rows:
            raise NotFound(f"{scope} {name!r} has no quota")
        self._db.run("DELETE FROM quotas WHERE scope = ? AND name = ?", [scope, name])
        return Quota(**rows[0])
