"""Models, versions, aliases, deployments, predictions, feedback and alerts in DuckDB."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata._changes import ChangeCounters
from dlplatform.metadata._db import Database, insert
from dlplatform.metadata.records import (
    Alert,
    AliasEvent,
    Deployment,
    Feedback,
    LineageEdge,
    Model,
    ModelSummary,
    ModelVersion,
    Prediction,
    check_name,
    utcnow,
)


class ModelTables:
    _db: Database
    _deployment_changes: ChangeCounters  # made by MetadataStore.__init__

    def _add_edges_in(self, cur: Any, edges: list[LineageEdge]) -> None:
        raise NotImplementedError  # provided by the core store

    # --- models and versions ----------------------------------------------------------------

    def create_model(self, model: Model) -> Model:
        with self._db.tx() as cur:
            insert(cur, "models", model.model_dump(mode="python"), f"model {model.name!r}")
        return model

    def get_model(self, name: str) -> Model:
        rows = self._db.dicts("SELECT * FROM models WHERE name = ?", [name])
        if not rows:
            raise NotFound(f"model {name!r} does not exist")
        return Model(**rows[0])

    def list_models(self) -> list[ModelSummary]:
        """Every model by name, with the number of its newest version."""
        rows = self._db.dicts(
            "SELECT m.*, (SELECT max(v.version) FROM model_versions v WHERE v.model = m.name) "
            "AS latest_version FROM models m ORDER BY m.name"
        )
        return [ModelSummary(**r) for r in rows]

    def add_model_version(
        self,
        version: ModelVersion,
        *,
        owner: str = "unknown",
        edges_to: Sequence[tuple[str, str]] = (),
    ) -> ModelVersion:
        """Register ``version`` under the next free number of its model (created, owned by
        ``owner``, if missing).

        ``version.version`` is ignored and assigned here. ``edges_to`` are (src entity, relation)
        pairs; each becomes an edge src → this model version, in the same transaction.
        """
        with self._db.tx() as cur:
            if (
                cur.execute("SELECT 1 FROM models WHERE name = ?", [version.model]).fetchone()
                is None
            ):
                cur.execute(
                    "INSERT INTO models VALUES (?, ?, ?, ?)",
                    [version.model, "", owner, utcnow()],
                )
            row = cur.execute(
                "SELECT coalesce(max(version), 0) FROM model_versions WHERE model = ?",
                [version.model],
            ).fetchone()
            number = int(row[0] if row else 0) + 1
            final = version.model_copy(update={"version": number, "aliases": ()})
            insert(
                cur,
                "model_versions",
                final.model_dump(mode="python", exclude={"aliases"}),
                f"model version {version.model}@{number}",
            )
            dst = f"model_version:{version.model}@{number}"
            self._add_edges_in(
                cur, [LineageEdge(src=src, dst=dst, relation=rel) for src, rel in edges_to]
            )
        return final

    def _aliases_of(self, model: str) -> dict[int, tuple[str, ...]]:
        rows = self._db.dicts(
            "SELECT alias, version FROM model_aliases WHERE model = ? ORDER BY alias", [model]
        )
        out: dict[int, list[str]] = {}
        for r in rows:
            out.setdefault(r["version"], []).append(r["alias"])
        return {k: tuple(v) for k, v in out.items()}

    def get_model_version(self, model: str, version: int) -> ModelVersion:
        rows = self._db.dicts(
            "SELECT * FROM model_versions WHERE model = ? AND version = ?", [model, version]
        )
        if not rows:
            raise NotFound(f"model version {model}@{version} does not exist")
        return ModelVersion(**rows[0], aliases=self._aliases_of(model).get(version, ()))

    def list_model_versions(self, model: str) -> list[ModelVersion]:
        self.get_model(model)
        aliases = self._aliases_of(model)
        rows = self._db.dicts(
            "SELECT * FROM model_versions WHERE model = ? ORDER BY version DESC", [model]
        )
        return [ModelVersion(**r, aliases=aliases.get(r["version"], ())) for r in rows]

    def resolve_alias(self, model: str, alias: str) -> int:
        row = self._db.one(
            "SELECT version FROM model_aliases WHERE model = ? AND alias = ?", [model, alias]
        )
        if row is None:
            raise NotFound(f"model {model!r} has no alias {alias!r}")
        return int(row[0])

    def set_alias(self, model: str, alias: str, version: int, *, by: str) -> AliasEvent:
        """Point ``alias`` at ``version`` and record the move in the alias history."""
        if alias.isdigit():
            raise InvalidInput(f"alias {alias!r} must not be a number (it would shadow a version)")
        try:
            check_name(alias)
        except ValueError as exc:
            raise InvalidInput(f"alias: {exc}") from exc
        self.get_model_version(model, version)
        with self._db.tx() as cur:
            row = cur.execute(
                "SELECT version FROM model_aliases WHERE model = ? AND alias = ?", [model, alias]
            ).fetchone()
            previous = int(row[0]) if row else None
            cur.execute(
                "INSERT OR REPLACE INTO model_aliases VALUES (?, ?, ?)", [model, alias, version]
            )
            event = AliasEvent(
                model=model,
                alias=alias,
                version=version,
                previous_version=previous,
                by=by,
                at=utcnow(),
            )
            insert(cur, "alias_events", event.model_dump(mode="python"), "alias event")
        return event

    def alias_history(self, model: str) -> list[AliasEvent]:
        """Every alias move of ``model``, oldest first.

        Raises:
            NotFound: no such model (an empty history is a model never promoted).
        """
        self.get_model(model)
        rows = self._db.dicts('SELECT * FROM alias_events WHERE model = ? ORDER BY "at"', [model])
        return [AliasEvent(**r) for r in rows]

    # --- deployments ------------------------------------------------------------------------

    def put_deployment(self, deployment: Deployment) -> Deployment:
        """Create or replace a deployment record."""
        with self._db.tx() as cur:
            cur.execute("DELETE FROM deployments WHERE name = ?", [deployment.name])
            insert(cur, "deployments", deployment.model_dump(mode="python"), "deployment")
        self._deployment_changes.bump([deployment.name])  # its replicas follow its traffic
        return deployment

    def get_deployment(self, name: str) -> Deployment:
        rows = self._db.dicts("SELECT * FROM deployments WHERE name = ?", [name])
        if not rows:
            raise NotFound(f"deployment {name!r} does not exist")
        return Deployment(**rows[0])

    def list_deployments(self, *, limit: int | None = None, offset: int = 0) -> list[Deployment]:
        """By name; one page when ``limit`` is given (every deployment otherwise)."""
        sql, params = "SELECT * FROM deployments ORDER BY name", []
        if limit is not None:
            sql, params = sql + " LIMIT ? OFFSET ?", [limit, offset]
        return [Deployment(**r) for r in self._db.dicts(sql, params)]

    def count_deployments(self) -> int:
        row = self._db.one("SELECT count(*) FROM deployments")
        return int(row[0]) if row else 0

    def delete_deployment(self, name: str) -> None:
        self.get_deployment(name)
        self._db.run("DELETE FROM deployments WHERE name = ?", [name])
        self._deployment_changes.bump([name])

    def deployment_change(self, name: str) -> int:
        """A number that moves whenever the deployment ``name``'s record is written or deleted
        (in memory, ``_changes``): its replicas follow a traffic change through it."""
        return self._deployment_changes.value(name)

    def wait_deployment_change(self, name: str, known: int | None, timeout_s: float) -> int:
        """``deployment_change(name)`` as soon as it differs from ``known``, else after
        ``timeout_s``. Blocks the calling thread: the metadata actor runs it in a thread group
        of its own (``StoreClient.watch_deployment``), never through ``call``."""
        return self._deployment_changes.wait(name, known, timeout_s)

    # --- predictions, feedback, alerts ------------------------------------------------------

    def log_predictions(self, predictions: Sequence[Prediction]) -> int:
        with self._db.tx() as cur:
            cur.executemany(
                "INSERT OR IGNORE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [list(p.model_dump(mode="python").values()) for p in predictions],
            )
        return len(predictions)

    def log_prediction_batch(
        self,
        deployment: str,
        request_ids: Sequence[str],
        models: Sequence[str],
        versions: Sequence[int],
        timestamps: Sequence[float],
        inputs_json: Sequence[str],
        outputs_json: Sequence[str],
        latencies_ms: Sequence[float],
        errors: Sequence[str] | None = None,
    ) -> int:
        """Append many predictions given as columns, plus the lineage edge deployment → each.

        The serving hot path (one call per flush of a replica's buffer): Arrow inserts in one
        transaction, about 100x faster than ``log_predictions`` (row-by-row ``executemany``).
        ``timestamps`` are unix seconds. ``errors``: the error code of each request the replica
        failed to answer, "" for an answered one (default: all answered). Repeated request ids
        are ignored.
        """
        n = len(request_ids)
        if errors is None:
            errors = [""] * n
        columns = (models, versions, timestamps, inputs_json, outputs_json, latencies_ms, errors)
        if any(len(c) != n for c in columns):
            raise InvalidInput("prediction columns must have the same length")
        if n == 0:
            return 0
        try:
            check_name(deployment)
        except ValueError as exc:
            raise InvalidInput(f"deployment: {exc}") from exc
        try:
            at = pa.array([int(t * 1_000_000) for t in timestamps], pa.int64()).cast(
                pa.timestamp("us", tz="UTC")
            )
            rows = pa.table(
                {
                    "request_id": pa.array(request_ids, pa.string()),
                    "deployment": pa.array([deployment] * n, pa.string()),
                    "model": pa.array(models, pa.string()),
                    "version": pa.array(versions, pa.int32()),
                    "at": at,
                    "inputs_json": pa.array(inputs_json, pa.string()),
                    "outputs_json": pa.array(outputs_json, pa.string()),
                    "latency_ms": pa.array(latencies_ms, pa.float64()),
                    "error": pa.array(errors, pa.string()),
                }
            )
            edges = pa.table(
                {
                    "src": pa.array([f"deployment:{deployment}"] * n, pa.string()),
                    "dst": pa.array([f"prediction:{r}" for r in request_ids], pa.string()),
                    "relation": pa.array(["served"] * n, pa.string()),
                    "created_at": at,
                }
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise InvalidInput(f"invalid prediction values: {exc}") from exc
        with self._db.tx() as con:
            con.register("_prediction_batch", rows)
            con.register("_prediction_edges", edges)
            try:
                con.execute("INSERT OR IGNORE INTO predictions SELECT * FROM _prediction_batch")
                con.execute("INSERT OR IGNORE INTO lineage_edges SELECT * FROM _prediction_edges")
            finally:
                con.unregister("_prediction_batch")
                con.unregister("_prediction_edges")
        return n

    def get_prediction(self, request_id: str) -> Prediction:
        rows = self._db.dicts("SELECT * FROM predictions WHERE request_id = ?", [request_id])
        if not rows:
            raise NotFound(f"prediction {request_id!r} does not exist")
        return Prediction(**rows[0])

    def list_predictions(self, deployment: str, *, limit: int = 100) -> list[Prediction]:
        rows = self._db.dicts(
            'SELECT * FROM predictions WHERE deployment = ? ORDER BY "at" DESC LIMIT ?',
            [deployment, limit],
        )
        return [Prediction(**r) for r in rows]

    def purge_prediction_inputs(self, before: datetime) -> int:
        """Blank the logged inputs of predictions made before ``before`` (the retention rule);
        the request id, version, outputs and latency stay. Returns how many were blanked."""
        row = self._db.one(  # DuckDB answers an UPDATE with the number of rows it changed
            "UPDATE predictions SET inputs_json = '' WHERE \"at\" < ? AND inputs_json <> ''",
            [before],
        )
        return int(row[0]) if row else 0

    def add_feedback(self, feedback: Feedback) -> Feedback:
        self.get_prediction(feedback.request_id)
        with self._db.tx() as cur:
            insert(cur, "feedback", feedback.model_dump(mode="python"), "feedback")
        return feedback

    def list_feedback(self, request_id: str) -> list[Feedback]:
        rows = self._db.dicts(
            'SELECT * FROM feedback WHERE request_id = ? ORDER BY "at"', [request_id]
        )
        return [Feedback(**r) for r in rows]

    def create_alert(
        self, kind: str, target: str, message: str, severity: str = "warning"
    ) -> Alert:
        if severity not in {"info", "warning", "critical"}:
            raise InvalidInput(f"alert severity {severity!r} is not one of info, warning, critical")
        row = self._db.one(
            'INSERT INTO alerts (kind, severity, target, message, "at") VALUES (?, ?, ?, ?, ?) '
            "RETURNING *",
            [kind, severity, target, message, utcnow()],
        )
        assert row is not None
        return self.get_alert(int(row[0]))

    def get_alert(self, alert_id: int) -> Alert:
        rows = self._db.dicts("SELECT * FROM alerts WHERE id = ?", [alert_id])
        if not rows:
            raise NotFound(f"alert {alert_id} does not exist")
        return Alert(**rows[0])

    def list_alerts(self, *, include_resolved: bool = False, limit: int = 100) -> list[Alert]:
        where = "" if include_resolved else "WHERE resolved_at IS NULL"
        rows = self._db.dicts(f'SELECT * FROM alerts {where} ORDER BY "at" DESC LIMIT ?', [limit])
        return [Alert(**r) for r in rows]

    def resolve_alert(self, alert_id: int) -> Alert:
        self.get_alert(alert_id)
        self._db.run("UPDATE alerts SET resolved_at = ? WHERE id = ?", [utcnow(), alert_id])
        return self.get_alert(alert_id)
