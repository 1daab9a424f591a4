"""Runs, params and metrics in DuckDB."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pydantic import ValidationError

from dlplatform.errors import AlreadyExists, InvalidInput, NotFound
from dlplatform.metadata._changes import MAX_WAIT_S, ChangeCounters
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata._run_search import compile_search
from dlplatform.metadata.records import (
    MetricPoint,
    Run,
    RunArtifact,
    check_page,
    invalid_input,
    utcnow,
)

_SMALL_BATCH = 8

_RUN_MUTABLE = {
    "status",
    "started_at",
    "ended_at",
    "error",
    "result_json",
    "priority",
    "tags",
    "dataset_commit",
    "code_version",
    "spec_json",
    "name",
    "startup_json",
}


# The final point of each (run, key) in a batch (picked in Python: a GROUP BY with arg_max over
# a struct made a 10,000-point batch ~4x slower) replaces the stored one when its step is at least
# the stored one's: at equal steps the later point wins, in a batch the later in it.
_UPSERT_LATEST = (
    "INSERT INTO run_latest_metrics {source} ON CONFLICT (run_id, key) DO UPDATE SET "
    "value = excluded.value, step = excluded.step, ts = excluded.ts "
    "WHERE excluded.step >= run_latest_metrics.step"
)


def _latest_rows(batch: pa.Table) -> pa.Table:
    """The final point of each (run, key) of a batch: the highest (step, timestamp), the later
    one in the batch at a tie (a stable sort, then the last row of each group, in order)."""
    ordered = batch.sort_by([("step", "ascending"), ("ts", "ascending")])
    last = ordered.group_by(["run_id", "key"], use_threads=False).aggregate(
        [("value", "last"), ("step", "last"), ("ts", "last")]
    )
    return last.select(["run_id", "key", "value_last", "step_last", "ts_last"])


MAX_SEARCH_RUNS = 1000
"""The most runs one ``search_runs`` page holds."""

MAX_RUN_WAIT_S = MAX_WAIT_S
"""The longest one ``wait_run_change`` call blocks."""


class RunTables:
    _db: Database
    _run_changes: ChangeCounters  # made by MetadataStore.__init__

    # --- change notification: a follower learns of a new metric or status at once -----------

    def run_version(self, run_id: str) -> int:
        """A number that changes whenever the run is updated or gets metric points (in memory,
        from a random base each time the store is opened: see ``_changes``)."""
        return self._run_changes.value(run_id)

    def wait_run_change(self, run_id: str, known: int | None, timeout_s: float) -> int:
        """``run_version`` as soon as it differs from ``known``, else after ``timeout_s`` (at
        most ``MAX_RUN_WAIT_S``). Blocks the calling thread: the metadata actor runs it in a
        thread group of its own (``StoreClient.watch_run``), never through ``call``."""
        return self._run_changes.wait(run_id, known, timeout_s)

    def create_run(self, run: Run, *, idempotency_key: str | None = None) -> Run:
        """Record a new run.

        Args:
            idempotency_key: Recorded for ``run.owner`` in the same transaction (as a push's key,
                see ``add_commit``), so the run and its key become visible together or not at all.

        Raises:
            AlreadyExists: the run id is taken, or ``idempotency_key`` was recorded already (its
                run stands; look it up with ``get_run_by_submit_key``). Nothing was written.
        """
        with self._db.tx() as cur:
            if idempotency_key is not None:
                done = cur.execute(
                    "SELECT run_id FROM submit_keys WHERE user_name = ? AND key = ?",
                    [run.owner, idempotency_key],
                ).fetchone()
                if done is not None:
                    raise AlreadyExists(
                        f"submit key {idempotency_key!r} of {run.owner!r} already made run {done[0]}"
                    )
            insert(cur, "runs", run.model_dump(mode="python"), f"run {run.id!r}")
            if idempotency_key is not None:
                # A concurrent duplicate that got past the check above fails here and rolls the
                # run back.
                key_row = {
                    "user_name": run.owner,
                    "key": idempotency_key,
                    "run_id": run.id,
                    "created_at": utcnow(),
                }
                insert(cur, "submit_keys", key_row, f"submit key {idempotency_key!r}")
        return run

    def get_run_by_submit_key(self, user: str, key: str) -> Run:
        """The run a submit by ``user`` with idempotency ``key`` made.

        Raises:
            NotFound: no submit recorded that key.
        """
        row = self._db.one(
            "SELECT run_id FROM submit_keys WHERE user_name = ? AND key = ?", [user, key]
        )
        if row is None:
            raise NotFound(f"no submit by {user!r} with key {key!r}")
        return self.get_run(row[0])

    def get_run(self, run_id: str) -> Run:
        rows = self._db.dicts("SELECT * FROM runs WHERE id = ?", [run_id])
        if not rows:
            raise NotFound(f"run {run_id!r} does not exist")
        return Run(**rows[0])

    def list_runs(
        self,
        *,
        kind: str | None = None,
        status: Sequence[str] | None = None,
        parent_id: str | None = None,
        owner: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Run]:
        """Newest first, filtered by any of kind, status, parent and owner."""
        where, params = ["1 = 1"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status:
            where.append(f"status IN ({', '.join('?' for _ in status)})")
            params.extend(str(getattr(s, "value", s)) for s in status)
        if parent_id is not None:
            where.append("parent_id = ?")
            params.append(parent_id)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        rows = self._db.dicts(
            f"SELECT * FROM runs WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [Run(**r) for r in rows]

    def count_runs(
        self,
        *,
        kind: str | None = None,
        status: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> int:
        """How many runs ``list_runs`` would page through with the same filters."""
        where, params = ["1 = 1"], []
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        if status:
            where.append(f"status IN ({', '.join('?' for _ in status)})")
            params.extend(str(getattr(s, "value", s)) for s in status)
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        row = self._db.one(f"SELECT count(*) FROM runs WHERE {' AND '.join(where)}", params)
        return int(row[0]) if row else 0

    def update_run(self, run_id: str, **changes: Any) -> Run:
        """Change mutable fields of a run (status, times, error, result, ...); returns the new run."""
        bad = set(changes) - _RUN_MUTABLE
        if bad:
            raise InvalidInput(f"cannot change {sorted(bad)} of a run")
        current = self.get_run(run_id)
        try:
            updated = Run.model_validate({**current.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid_input(exc, f"change of run {run_id!r}") from exc
        if changes:
            dumped = updated.model_dump(mode="python")
            sets = ", ".join(f"{k} = ?" for k in changes)
            self._db.run(
                f"UPDATE runs SET {sets} WHERE id = ?", [*(dumped[k] for k in changes), run_id]
            )
            self._run_changes.bump([run_id])
        return updated

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        self.get_run(run_id)
        with self._db.tx() as cur:
            for key, value in params.items():
                cur.execute(
                    "INSERT OR REPLACE INTO params VALUES (?, ?, ?)", [run_id, str(key), str(value)]
                )

    def get_params(self, run_id: str) -> dict[str, str]:
        rows = self._db.dicts(
            "SELECT key, value FROM params WHERE run_id = ? ORDER BY key", [run_id]
        )
        return {r["key"]: r["value"] for r in rows}

    def log_metric_batch(
        self,
        run_ids: Sequence[str],
        keys: Sequence[str],
        values: Sequence[float],
        steps: Sequence[int],
        timestamps: Sequence[float] | None = None,
    ) -> int:
        """Append many metric points given as columns in one transaction; returns the count.

        This is the hot path (training loops, the buffered logger): one Arrow insert.
        """
        n = len(keys)
        if not (len(run_ids) == len(values) == len(steps) == n):
            raise InvalidInput("metric columns must have the same length")
        now = time.time()
        ts = list(timestamps) if timestamps is not None else [now] * n
        if len(ts) != n:
            raise InvalidInput("metric columns must have the same length")
        try:
            batch = pa.table(
                {
                    "run_id": pa.array(run_ids, pa.string()),
                    "key": pa.array(keys, pa.string()),
                    "value": pa.array(values, pa.float64()),
                    "step": pa.array(steps, pa.int64()),
                    "ts": pa.array([t or now for t in ts], pa.float64()),
                }
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise InvalidInput(f"invalid metric values: {exc}") from exc
        if n == 0:
            return 0
        latest = _latest_rows(batch)
        with self._db.tx() as con:
            if n <= _SMALL_BATCH:  # a VALUES insert is 2x cheaper than an Arrow scan here
                rows = [list(r.values()) for r in batch.to_pylist()]
                marks = ", ".join(["(?, ?, ?, ?, ?)"] * n)
                con.execute(f"INSERT INTO metrics VALUES {marks}", [v for r in rows for v in r])
            else:
                con.register("_metric_batch", batch)
                try:
                    con.execute("INSERT INTO metrics SELECT * FROM _metric_batch")
                finally:
                    con.unregister("_metric_batch")
            if latest.num_rows <= _SMALL_BATCH:
                marks = ", ".join(["(?, ?, ?, ?, ?)"] * latest.num_rows)
                con.execute(_UPSERT_LATEST.format(source=f"VALUES {marks}"),
                            [v for row in latest.to_pylist() for v in row.values()])  # fmt: skip
            else:
                con.register("_metric_latest", latest)
                try:
                    con.execute(_UPSERT_LATEST.format(source="SELECT * FROM _metric_latest"))
                finally:
                    con.unregister("_metric_latest")
        self._run_changes.bump(run_ids)
        return n

    def log_metrics(self, points: Sequence[MetricPoint]) -> int:
        """Append metric points in one transaction (convenience over ``log_metric_batch``)."""
        return self.log_metric_batch(
            [p.run_id for p in points],
            [p.key for p in points],
            [p.value for p in points],
            [p.step for p in points],
            [p.timestamp for p in points],
        )

    def get_metrics(
        self, run_id: str, key: str | None = None, *, limit: int | None = None, offset: int = 0
    ) -> list[MetricPoint]:
        """By key, step and time; one page when ``limit`` is given (every point otherwise)."""
        sql = "SELECT run_id, key, value, step, ts AS timestamp FROM metrics WHERE run_id = ?"
        params: list[Any] = [run_id]
        if key is not None:
            sql += " AND key = ?"
            params.append(key)
        # value too: points that tie on it are identical, so pages neither repeat nor skip one
        sql += " ORDER BY key, step, ts, value"
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            params += [limit, offset]
        return [MetricPoint(**r) for r in self._db.dicts(sql, params)]

    def count_metrics(self, run_id: str, key: str | None = None) -> int:
        sql, params = "SELECT count(*) FROM metrics WHERE run_id = ?", [run_id]
        if key is not None:
            sql, params = sql + " AND key = ?", [run_id, key]
        row = self._db.one(sql, params)
        return int(row[0]) if row else 0

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        """The last value of each metric key of a run."""
        rows = self._db.dicts(
            "SELECT key, last(value ORDER BY ts, step) AS value FROM metrics WHERE run_id = ? GROUP BY key",
            [run_id],
        )
        return {r["key"]: r["value"] for r in rows}

    # --- tracked runs: search, final metrics, artifacts --------------------------------------

    def search_runs(
        self,
        filter_text: str | None = None,
        order_by: str | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[Run], int]:
        """One page of the runs matching ``filter_text``, sorted by ``order_by`` (see
        ``_run_search`` for both languages), and how many match.

        Raises:
            InvalidInput: a malformed filter or sort (naming the token and its position), or a
                page out of range.
        """
        check_page(limit, offset, MAX_SEARCH_RUNS)
        q = compile_search(filter_text, order_by)
        rows = self._db.dicts(
            f"SELECT r.*, count(*) OVER () AS _total FROM runs r {q.joins} WHERE {q.where} "
            f"ORDER BY {q.order} LIMIT ? OFFSET ?",
            [*q.join_params, *q.where_params, limit, offset],
        )
        if not rows and offset:
            row = self._db.one(f"SELECT count(*) FROM runs r WHERE {q.where}", q.where_params)
            return [], int(row[0]) if row else 0
        total = int(rows[0]["_total"]) if rows else 0
        return [Run(**{k: v for k, v in r.items() if k != "_total"}) for r in rows], total

    def get_final_metrics(self, run_ids: Sequence[str]) -> dict[str, dict[str, float]]:
        """The final value of each metric key (the point at the highest step) of each run."""
        return self._by_run("run_latest_metrics", run_ids)

    def get_params_of(self, run_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """The params of each of ``run_ids`` (``get_params`` for many runs in one query)."""
        return self._by_run("params", run_ids)

    def _by_run(self, table: str, run_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``{run_id: {key: value}}`` from ``table`` (ours: params or run_latest_metrics)."""
        out: dict[str, dict[str, Any]] = {run_id: {} for run_id in run_ids}
        for chunk in _chunks(list(run_ids)):
            marks = ", ".join("?" for _ in chunk)
            for r in self._db.dicts(
                f"SELECT run_id, key, value FROM {table} WHERE run_id IN ({marks}) "
                "ORDER BY run_id, key",
                chunk,
            ):
                out[r["run_id"]][r["key"]] = r["value"]
        return out

    def add_run_artifact(self, artifact: RunArtifact) -> RunArtifact:
        """Record a file of a run; logging the same path again points it at the new bytes."""
        self._db.run(
            "INSERT OR REPLACE INTO run_artifacts VALUES (?, ?, ?, ?, ?)",
            [artifact.run_id, artifact.path, artifact.sha256, artifact.size_bytes,
             artifact.created_at],
        )  # fmt: skip
        return artifact

    def list_run_artifacts(self, run_id: str) -> list[RunArtifact]:
        rows = self._db.dicts(
            "SELECT * FROM run_artifacts WHERE run_id = ? ORDER BY path", [run_id]
        )
        return [RunArtifact(**r) for r in rows]

    def get_run_artifact(self, run_id: str, path: str) -> RunArtifact:
        """Raises NotFound."""
        rows = self._db.dicts(
            "SELECT * FROM run_artifacts WHERE run_id = ? AND path = ?", [run_id, path]
        )
        if not rows:
            raise NotFound(f"run {run_id} has no artifact {path!r}")
        return RunArtifact(**rows[0])


def _chunks(ids: list[str], size: int = 1000) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
