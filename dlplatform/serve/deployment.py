"""The Ray Serve deployment of one model: ``POST /models/<name>`` → predictions.

The hot path is a plain ``async __call__(request)`` returning a Starlette ``Response`` (a FastAPI
ingress inside the replica costs about a third of the throughput, RAY_NOTES §9). Per request:

1. auth: ``Authorization: Bearer <token>`` → the token's sha256 → principal with ``predict``
   permission. Lookups go to the metadata actor once and are cached in the replica for
   ``TOKEN_TTL_S`` (so a revoked token stops working within that time). Anonymous access only if
   the deployment allows it.
2. validation against the version's signature (422 saying what was expected; 413 past the row
   limit), in ``ServedModel.encode``.
3. ``@serve.batch``: concurrent requests are stacked into one forward pass per version. A
   request that is alone in the replica skips the batch queue (nothing could join it, and the
   queue's bookkeeping costs about a fifth of a small model's request).
4. the response ``{"outputs", "model", "version", "request_id"}``; the prediction log and metrics
   are buffered and flushed by a background task, off the request path.

A traffic split (``{version: weight}``) loads every version with a positive weight into each
replica and picks one per request; the version is in every response. A redeploy replaces the
replicas in a rolling way (new ones start before old ones stop), so requests keep succeeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
import uuid
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from dlplatform.errors import (
    DLPlatformError,
    InvalidInput,
    PermissionDenied,
    TooLarge,
    Unauthenticated,
)
from dlplatform.serve._ingress import bind_replica_grpc_to_node_ip
from dlplatform.serve._metrics import RequestMetrics
from dlplatform.serve._model import ServedModel, load_served_model
from dlplatform.serve._predlog import PredictionLog, RawJSON, raw_inputs
from dlplatform.serve.spec import QUIET_LOGGING, DeploymentSpec

logger = logging.getLogger(__name__)

TOKEN_TTL_S = 10.0
"""How long a replica trusts a token lookup (a revoked token works at most this long)."""
_MAX_CACHED_TOKENS = 10_000
_JSON = "application/json"


def _backend(settings: dict[str, Any]) -> Any:
    from dlplatform.config import Settings
    from dlplatform.context import Backend
    from dlplatform.metadata.actor import connect_store
    from dlplatform.metadata.artifacts import ArtifactStore

    conf = Settings(**settings)
    return Backend(
        store=connect_store(conf, create=False),
        artifacts=ArtifactStore.from_settings(conf),
        settings=conf,
    )


def error_response(exc: DLPlatformError, request_id: str) -> Response:
    body = {"error": exc.code, "message": exc.message, "request_id": request_id}
    return Response(json.dumps(body), status_code=exc.http_status, media_type=_JSON)


class TokenCache:
    """Token → principal name, checked for the ``predict`` permission, cached for a short TTL."""

    def __init__(self, store: Any, ttl_s: float = TOKEN_TTL_S) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._cache: dict[str, tuple[float, str | None, DLPlatformError | None]] = {}

    async def principal(self, header: str | None, target: str) -> str:
        """The name of the caller allowed to predict.

        Raises:
            Unauthenticated: no, unknown or revoked token.
            PermissionDenied: the token's role lacks ``predict``.
        """
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("missing bearer token (Authorization: Bearer <token>)")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is None or hit[0] < now:
            hit = await self._lookup(key, target, now)
        if hit[2] is not None:
            raise hit[2]
        assert hit[1] is not None
        return hit[1]

    async def _lookup(
        self, key: str, target: str, now: float
    ) -> tuple[float, str | None, DLPlatformError | None]:
        from dlplatform.access import Permission, Principal

        reply = await self._store.call_async("user_for_token_hash", key)
        entry: tuple[float, str | None, DLPlatformError | None]
        expires = now + self._ttl_s
        if reply[0] != "ok":
            if reply[1] != "not_found":
                from dlplatform.errors import error_for_code

                raise error_for_code(reply[1], reply[2])  # not cached: the actor may be back
            entry = (expires, None, Unauthenticated("invalid or revoked token"))
        else:
            user, _info = reply[1]
            principal = Principal.of(user)
            if user.disabled:
                entry = (expires, None, Unauthenticated("user is disabled"))
            elif not principal.can(Permission.PREDICT):
                reason = f"role {principal.role.value} lacks permission predict"
                self._store.call_async(
                    "append_audit", principal.name, "predict", target, "denied", reason
                )
                entry = (
                    expires,
                    None,
                    PermissionDenied(f"{principal.name} may not predict on {target}: {reason}"),
                )
            else:
                entry = (expires, principal.name, None)
        if len(self._cache) >= _MAX_CACHED_TOKENS:
            self._cache.clear()
        self._cache[key] = entry
        return entry


async def read_inputs(request: Request, max_bytes: int) -> tuple[Any, RawJSON | None]:
    """The ``inputs`` of a JSON request body, and their JSON text when it can be cut out as is.

    Raises:
        TooLarge: the body exceeds ``max_bytes``.
        InvalidInput: not JSON, or no ``inputs`` key.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise TooLarge(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes")
    body = await request.body()
    if len(body) > max_bytes:
        raise TooLarge(f"request body of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput('the body must be JSON: {"inputs": [row, ...]}') from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvalidInput('the body must be a JSON object with "inputs": [row, ...]')
    return payload["inputs"], raw_inputs(body, payload)


def json_response(body: dict[str, Any], request_id: str, version: int) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":"), default=_plain),
        media_type=_JSON,
        headers={"x-dlp-request-id": request_id, "x-model-version": str(version)},
    )


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ReplicaBase:
    """What a dedicated and a shared model replica have in common: auth, logging, metrics."""

    def _setup_common(self, settings: dict[str, Any], spec: DeploymentSpec) -> None:
        bind_replica_grpc_to_node_ip()  # Serve starts the replica's gRPC server after __init__
        self._backend = _backend(settings)
        self._store = self._backend.store
        self._spec = spec
        self._max_bytes = self._backend.settings.max_request_bytes
        self._tokens = TokenCache(self._store)
        self._metrics: dict[str, RequestMetrics] = {}
        self._logs: dict[str, PredictionLog] = {}
        self._publisher: asyncio.Task[None] | None = None
        self._in_flight = 0

    def _metrics_for(self, deployment: str) -> RequestMetrics:
        found = self._metrics.get(deployment)
        if found is None:
            found = self._metrics[deployment] = RequestMetrics(deployment)
        return found

    def _log_for(self, deployment: str, spec: DeploymentSpec) -> PredictionLog:
        found = self._logs.get(deployment)
        if found is None:
            found = self._logs[deployment] = PredictionLog(
                self._store,
                deployment,
                sample_rate=spec.log_sample_rate,
                flush_interval_s=spec.log_flush_interval_s,
            )
        return found

    def _start_publisher(self) -> None:
        if self._publisher is None:
            self._publisher = asyncio.get_running_loop().create_task(self._publish_loop())

    async def _publish_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for metrics in list(self._metrics.values()):
                try:
                    metrics.publish()
                except Exception:  # metrics must never break serving
                    logger.exception("publishing metrics failed")

    async def _authorize(self, request: Request, target: str, allow_anonymous: bool) -> str:
        if allow_anonymous and not request.headers.get("authorization"):
            return "anonymous"
        return await self._tokens.principal(request.headers.get("authorization"), target)

    async def _serve_request(
        self,
        request: Request,
        deployment: str,
        spec: DeploymentSpec,
        served: ServedModel,
        request_id: str,
        start: float,
    ) -> Response:
        """Auth, validation, batched inference, logging: the shared tail of both apps."""
        metrics = self._metrics_for(deployment)
        try:
            if request.method != "POST":
                return Response(
                    json.dumps({"error": "method_not_allowed", "message": "use POST"}),
                    status_code=405,
                    media_type=_JSON,
                    headers={"allow": "POST"},
                )
            await self._authorize(request, f"deployment:{deployment}", spec.allow_anonymous)
            inputs, raw = await read_inputs(request, self._max_bytes)
            outputs = await self._infer_one(served, served.encode(inputs))
        except DLPlatformError as exc:
            metrics.error(served.model, served.version, exc.code)
            return error_response(exc, request_id)
        except Exception:
            logger.exception("prediction failed")
            metrics.error(served.model, served.version, "internal")
            return error_response(DLPlatformError("prediction failed"), request_id)
        latency_ms = (time.perf_counter() - start) * 1000
        metrics.ok(served.model, served.version, latency_ms)
        self._log_for(deployment, spec).record(
            request_id, served.model, served.version, inputs if raw is None else raw, outputs,
            latency_ms,
        )  # fmt: skip
        body = {
            "outputs": outputs,
            "model": served.model,
            "version": served.version,
            "request_id": request_id,
        }
        return json_response(body, request_id, served.version)

    async def _predict_rows(
        self, deployment: str, spec: DeploymentSpec, served: ServedModel, inputs: Any
    ) -> tuple[Any, ...]:
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        self._start_publisher()
        metrics = self._metrics_for(deployment)
        try:
            outputs = await self._infer_one(served, served.encode(inputs))
        except DLPlatformError as exc:
            metrics.error(served.model, served.version, exc.code)
            return ("err", exc.code, exc.message)
        latency_ms = (time.perf_counter() - start) * 1000
        metrics.ok(served.model, served.version, latency_ms)
        self._log_for(deployment, spec).record(
            request_id, served.model, served.version, inputs, outputs, latency_ms
        )
        return (
            "ok",
            {
                "outputs": outputs,
                "model": served.model,
                "version": served.version,
                "request_id": request_id,
            },
        )

    async def _infer_one(self, served: ServedModel, x: np.ndarray) -> list[Any]:
        """Outputs for one request's rows: batched with concurrent requests, inline when alone.

        One turn of the event loop first: requests that arrived together each run up to here
        (their handlers never wait for I/O once the body is in), and then see each other.
        """
        self._in_flight += 1
        try:
            await asyncio.sleep(0)
            if self._in_flight <= 1:
                return infer_grouped([(served, x)])[0]
            return await self._infer((served, x))
        finally:
            self._in_flight -= 1

    async def _infer(self, item: tuple[ServedModel, np.ndarray]) -> list[Any]:
        raise NotImplementedError

    async def flush_log(self) -> dict[str, int]:
        """Write the buffered prediction logs now (tests, shutdown); returns their counters."""
        out = {"flushed": 0, "dropped": 0, "errors": 0}
        for log in list(self._logs.values()):
            await log.flush()
            out["flushed"] += log.flushed
            out["dropped"] += log.dropped
            out["errors"] += log.errors
        return out

    async def __del__(self) -> None:
        for log in list(self._logs.values()):
            with contextlib.suppress(Exception):
                await log.close()


@serve.deployment(
    name="model",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,
    graceful_shutdown_wait_loop_s=0.5,
    graceful_shutdown_timeout_s=10,
    logging_config=QUIET_LOGGING,
)
class ModelServer(ReplicaBase):
    """One replica of a dedicated model deployment (one Serve app per deployed model)."""

    def __init__(self, config: dict[str, Any]) -> None:
        spec = DeploymentSpec.model_validate(config["spec"])
        self._name: str = config["deployment"]
        self._model: str = config["model"]
        self._setup_common(config["settings"], spec)
        traffic = {int(v): int(w) for v, w in config["traffic"].items() if int(w) > 0}
        self._versions: dict[int, ServedModel] = {
            v: load_served_model(self._backend, self._model, v, max_rows=spec.max_rows)
            for v in traffic
        }
        self._choices = list(traffic)
        self._weights = [traffic[v] for v in self._choices]
        self._infer.set_max_batch_size(spec.max_batch_size)
        self._infer.set_batch_wait_timeout_s(spec.batch_wait_timeout_s)
        # one warm-up pass per version, so the first request does not pay torch's lazy init
        for served in self._versions.values():
            served.predict(np.zeros((1, *served.shape), dtype=served_dtype(served)))

    def _pick(self) -> ServedModel:
        if len(self._choices) == 1:
            return self._versions[self._choices[0]]
        return self._versions[random.choices(self._choices, self._weights)[0]]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _infer(self, items: list[tuple[ServedModel, np.ndarray]]) -> list[list[Any]]:
        return infer_grouped(items)

    async def __call__(self, request: Request) -> Response:
        start = time.perf_counter()
        self._start_publisher()
        return await self._serve_request(
            request, self._name, self._spec, self._pick(), uuid.uuid4().hex, start
        )

    async def predict_rows(self, inputs: Any) -> tuple[Any, ...]:
        """The same prediction for an in-cluster caller that is already authorized (SDK, CLI).

        Returns ``("ok", body)`` or ``("err", code, message)`` (typed errors survive the hop).
        """
        return await self._predict_rows(self._name, self._spec, self._pick(), inputs)

    async def stats(self) -> dict[str, float]:
        """This replica's request counters and latency percentiles."""
        return self._metrics_for(self._name).stats()


def served_dtype(served: ServedModel) -> Any:
    return np.int64 if served.kind == "text" else np.float32


def infer_grouped(items: list[tuple[ServedModel, np.ndarray]]) -> list[list[Any]]:
    """One forward pass per model over a batch of (model, rows) items; results split per item."""
    results: list[list[Any]] = [[] for _ in items]
    groups: dict[int, list[int]] = {}
    for i, (served, _) in enumerate(items):
        groups.setdefault(id(served), []).append(i)
    for idx in groups.values():
        served = items[idx[0]][0]
        arrays = [items[i][1] for i in idx]
        x = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        outputs = served.predict(x)
        offset = 0
        for i, arr in zip(idx, arrays, strict=True):
            results[i] = outputs[offset : offset + len(arr)]
            offset += len(arr)
    return results


def model_app(
    settings: dict[str, Any],
    deployment: str,
    model: str,
    traffic: dict[int, int],
    spec: DeploymentSpec,
) -> Any:
    """The Serve application of a dedicated deployment, with the spec's scaling options."""
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": spec.num_cpus},
        "max_ongoing_requests": spec.max_ongoing_requests,
    }
    if spec.min_replicas == spec.max_replicas:
        options["num_replicas"] = spec.max_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": spec.min_replicas,
            "max_replicas": spec.max_replicas,
            "target_ongoing_requests": spec.target_ongoing_requests,
            "upscale_delay_s": 5,
            "downscale_delay_s": 60,
        }
    config = {
        "settings": settings,
        "deployment": deployment,
        "model": model,
        "traffic": {str(v): w for v, w in traffic.items()},
        "spec": spec.model_dump(mode="json"),
    }
    return ModelServer.options(**options).bind(config)
