"""The Ray Serve deployment of one model: ``POST /models/<name>`` → predictions.

The hot path is a bare ASGI app (``@serve.ingress()`` + ``__serve_build_asgi_app__``): Serve
hands it the request's scope without wrapping it, and it answers with a prebuilt response (a
``__call__(request)`` deployment costs about 60 µs more per request, a FastAPI ingress inside the
replica about a third of the throughput, RAY_NOTES §9). Per request:

0. the ``Host`` header must be one of ``Settings.allowed_hosts`` (400 otherwise: DNS rebinding,
   the gateway's rule from ``dlplatform.hosts``), on every path Serve gives the replica (its
   proxy, HAProxy, a direct connection to the replica's port); then the method must be POST.
1. auth: ``Authorization: Bearer <token>`` → ``access.authenticate`` and ``access.authorize``
   (``predict``), remembered in the replica until a revocation, which reaches every replica at
   once (``_auth.TokenCache``). Anonymous access only if the deployment allows it.
2. validation against the version's signature (422 saying what was expected; 413 past the row
   limit), in ``ServedModel.encode``.
3. batching (``_batching.MicroBatcher``): concurrent requests are stacked into one forward pass
   per version. A request that is alone in the replica skips the batch queue (nothing could join
   it, and the queue's bookkeeping costs about a fifth of a small model's request).
4. the response ``{"outputs", "model", "version", "request_id"}``; the prediction log and metrics
   are buffered and flushed by a background task, off the request path.

A traffic split (``{version: weight}``) loads every version of the split into each replica
(standbys at weight 0 too) and picks one per request; the version is in every response. A new
split among the loaded versions (a rollout's step, a rollback, a promotion) is a change of
weights in place: every replica follows its deployment's record through a long poll on the
metadata actor and serves the new split within milliseconds. A split that needs a version the
replicas do not hold, or a new spec, is a redeploy that replaces the replicas in a rolling way
(new ones start before old ones stop), so requests keep succeeding.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import BadRequest, DLPlatformError, InvalidInput, NotFound, TooLarge
from dlplatform.hosts import AllowedHosts
from dlplatform.metadata.store import MetadataStore
from dlplatform.serve._auth import TokenCache
from dlplatform.serve._batching import MicroBatcher
from dlplatform.serve._ingress import prepare_replica_process
from dlplatform.serve._metrics import RequestMetrics
from dlplatform.serve._model import ServedModel, load_served_model
from dlplatform.serve._predlog import PredictionLog, RequestInputs
from dlplatform.serve.spec import REPLICA_OPTIONS, DeploymentSpec

logger = logging.getLogger(__name__)

_JSON = "application/json"


def _backend(settings: dict[str, Any]) -> Any:
    return Backend.connect(Settings(**settings), create=False)


def new_request_id() -> str:
    """32 random hex digits (the same 128 bits of entropy as a uuid4 hex, a third of its cost)."""
    return os.urandom(16).hex()


def error_response(exc: DLPlatformError, request_id: str) -> Response:
    body = {"error": exc.code, "message": exc.message, "request_id": request_id}
    return Response(json.dumps(body), status_code=exc.http_status, media_type=_JSON)


async def read_inputs(request: Request, max_bytes: int) -> tuple[Any, RequestInputs]:
    """The ``inputs`` of a JSON request body, and the body as the prediction log takes it.

    Raises:
        TooLarge: the body exceeds ``max_bytes``.
        InvalidInput: not JSON, or no ``inputs`` key.
    """
    body = await read_body(request, max_bytes)
    try:
        payload = json.loads(body)
    except ValueError:
        raise InvalidInput('the body must be JSON: {"inputs": [row, ...]}') from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvalidInput('the body must be a JSON object with "inputs": [row, ...]')
    return payload["inputs"], RequestInputs(body, payload)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body, read straight from the ASGI messages, stopping past ``max_bytes``.

    Raises:
        TooLarge: the body (or its declared length) exceeds ``max_bytes``.
        InvalidInput: the client went away before the body ended.
    """
    length = request_header(request, b"content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise TooLarge(f"request body of {length} bytes exceeds the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise InvalidInput("the request ended before its body did")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge(f"request body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def request_header(request: Request, name: bytes) -> str | None:
    """One request header (ASGI header names are lower case), without building ``Headers``."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def json_response(body: dict[str, Any], request_id: str, version: int) -> Response:
    return _PredictionResponse(
        json.dumps(body, separators=(",", ":"), default=_plain).encode(), request_id, version
    )


class _PredictionResponse(Response):
    """A 200 JSON response with the request id and version headers, built without Starlette's
    generic header handling (a tenth of the platform's own per-request work)."""

    media_type = _JSON

    def __init__(self, content: bytes, request_id: str, version: int) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
            (b"x-dlp-request-id", request_id.encode()),
            (b"x-model-version", str(version).encode()),
        ]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class ReplicaBase:
    """What a dedicated and a shared model replica have in common: auth, logging, metrics."""

    def _setup_common(self, settings: dict[str, Any], spec: DeploymentSpec) -> None:
        prepare_replica_process()  # before Serve starts the replica's gRPC server
        self._init_common(_backend(settings), spec)

    def _init_common(self, backend: Any, spec: DeploymentSpec) -> None:
        """The replica's state over ``backend`` (unit tests build a replica with this alone)."""
        self._backend = backend
        self._store = self._backend.store
        self._spec = spec
        self._max_bytes = self._backend.settings.max_request_bytes
        self._hosts = AllowedHosts(self._backend.settings.allowed_hosts)
        self._tokens = TokenCache(self._store, _epoch_watch(self._store))
        self._metrics: dict[str, RequestMetrics] = {}
        self._logs: dict[str, PredictionLog] = {}
        self._publisher: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._batcher: MicroBatcher[ServedModel] = MicroBatcher(
            infer_grouped, spec.max_batch_size, spec.batch_wait_timeout_s
        )

    def __serve_build_asgi_app__(self) -> Any:
        """Serve's HTTP entry of this replica (the class is ``@serve.ingress()``): a bare ASGI
        app. A ``__call__(request)`` deployment costs about 60 µs more per request in Serve
        2.60, which wraps the request and converts the returned response (measured at
        concurrency 1 behind the same HAProxy: 0.30 vs 0.24 ms for a do-nothing deployment)."""
        return asgi_app(self._handle)

    async def _handle(self, request: Request) -> Response:
        """One HTTP request to this replica."""
        raise NotImplementedError

    def _auth_stats(self) -> dict[str, float]:
        """Token look-ups made in the store (they climb with requests when the replica cannot
        remember tokens), and whether its revocation poll is live (1.0)."""
        return {
            "token_lookups": float(self._tokens.lookups),
            "token_watch_live": 1.0 if self._tokens.is_live else 0.0,
        }

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

    def _screen(self, request: Request, request_id: str) -> Response | None:
        """The answer to a request refused before anything else is looked at: a ``Host`` header
        that is not served here (400, as the gateway answers it), a method other than POST."""
        if not self._hosts.any_host:
            host = request_header(request, b"host")
            if not self._hosts.allows(host):
                return error_response(BadRequest(self._hosts.refusal(host)), request_id)
        if request.method != "POST":
            return Response(
                json.dumps({"error": "method_not_allowed", "message": "use POST"}),
                status_code=405,
                media_type=_JSON,
                headers={"allow": "POST"},
            )
        return None

    async def _authorize(self, request: Request, target: str, allow_anonymous: bool) -> str:
        header = request_header(request, b"authorization")
        if allow_anonymous and not header:
            return "anonymous"
        return await self._tokens.principal(header, target)

    async def _serve_request(
        self,
        request: Request,
        deployment: str,
        spec: DeploymentSpec,
        served: ServedModel,
        request_id: str,
        start: float,
    ) -> Response:
        """Validation, batched inference, logging: the shared tail of both apps, for a request
        the app has screened and authorized."""
        metrics = self._metrics_for(deployment)
        try:
            inputs, logged = await read_inputs(request, self._max_bytes)
            outputs = await self._infer_one(served, served.encode(inputs))
        except DLPlatformError as exc:
            metrics.error(served.model, served.version, exc.code)
            return error_response(exc, request_id)
        except Exception:
            logger.exception("prediction failed")
            metrics.error(served.model, served.version, "internal")
            # logged too: a version's error rate is judged from the log (``serve.rollout``)
            failed_ms = (time.perf_counter() - start) * 1000
            self._log_for(deployment, spec).record(
                request_id, served.model, served.version, None, None, failed_ms, "internal"
            )
            return error_response(DLPlatformError("prediction failed"), request_id)
        latency_ms = (time.perf_counter() - start) * 1000
        metrics.ok(served.model, served.version, latency_ms)
        self._log_for(deployment, spec).record(
            request_id, served.model, served.version, logged, outputs, latency_ms
        )
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
        request_id = new_request_id()
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
            return await self._batcher(served, x)
        finally:
            self._in_flight -= 1

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


@serve.deployment(name="model", **REPLICA_OPTIONS)
@serve.ingress()
class ModelServer(ReplicaBase):
    """One replica of a dedicated model deployment (one Serve app per deployed model)."""

    def __init__(self, config: dict[str, Any]) -> None:
        spec = DeploymentSpec.model_validate(config["spec"])
        self._name: str = config["deployment"]
        self._model: str = config["model"]
        self._setup_common(config["settings"], spec)
        # every version of the split is loaded, standbys (weight 0) too: a split among them is
        # then a change of weights in place (``follow_traffic``), not a redeploy
        self._versions: dict[int, ServedModel] = {
            int(v): load_served_model(self._backend, self._model, int(v), max_rows=spec.max_rows)
            for v in config["traffic"]
        }
        self._apply_traffic(config["traffic"])
        # one warm-up pass per version, so the first request does not pay torch's lazy init
        for served in self._versions.values():
            served.predict(np.zeros((1, *served.shape), dtype=served_dtype(served)))
        with contextlib.suppress(NotFound):  # the split may have moved since this app was built
            self._apply_traffic(_split_of(self._store.get_deployment(self._name)))
        self._follower: asyncio.Task[None] | None = None
        with contextlib.suppress(RuntimeError):  # Serve runs __init__ on the replica's loop
            self._follower = asyncio.get_running_loop().create_task(self._follow_traffic())

    def _apply_traffic(self, traffic: dict[Any, Any]) -> None:
        """Serve ``traffic`` (``{version: weight}``) from now on, if this replica holds every
        version with a positive weight (else keep the split it has: a redeploy is coming)."""
        split = {int(v): int(w) for v, w in traffic.items() if int(w) > 0}
        if split and split.keys() <= self._versions.keys():
            self._choices, self._weights = list(split), [split[v] for v in split]

    async def _follow_traffic(self) -> None:
        """Follow the deployment's record: a new split among the loaded versions (a rollout's
        step, a rollback) is served from the moment the store has it, by every replica."""
        known: int | None = None
        while True:
            try:
                changed = int(await self._store.watch_deployment(self._name, known, 30.0))
                if changed != known:
                    reply = await self._store.call_async(MetadataStore.get_deployment, self._name)
                    if reply[0] == "ok":
                        self._apply_traffic(_split_of(reply[1]))
                known = changed
            except asyncio.CancelledError:
                raise
            except Exception:  # the metadata actor restarting: keep the split, ask again
                logger.warning("following deployment %s's traffic failed; retrying", self._name)
                known = None
                await asyncio.sleep(1.0)

    def _start_publisher(self) -> None:
        if self._publisher is None:  # the first request (a replica built without __init__)
            super()._start_publisher()
            if getattr(self, "_follower", None) is None:
                self._follower = asyncio.get_running_loop().create_task(self._follow_traffic())

    def _pick(self) -> ServedModel:
        if len(self._choices) == 1:
            return self._versions[self._choices[0]]
        return self._versions[random.choices(self._choices, self._weights)[0]]

    async def _handle(self, request: Request) -> Response:
        start = time.perf_counter()
        request_id = new_request_id()
        self._start_publisher()
        refused = self._screen(request, request_id)
        if refused is not None:
            return refused
        served = self._pick()
        try:
            await self._authorize(request, f"deployment:{self._name}", self._spec.allow_anonymous)
        except DLPlatformError as exc:
            self._metrics_for(self._name).error(served.model, served.version, exc.code)
            return error_response(exc, request_id)
        return await self._serve_request(request, self._name, self._spec, served, request_id, start)

    async def predict_rows(self, inputs: Any) -> tuple[Any, ...]:
        """The same prediction for an in-cluster caller that is already authorized (SDK, CLI).

        Returns ``("ok", body)`` or ``("err", code, message)`` (typed errors survive the hop).
        """
        return await self._predict_rows(self._name, self._spec, self._pick(), inputs)

    async def stats(self) -> dict[str, float]:
        """This replica's request counters and latency percentiles, and its token checks."""
        return {**self._metrics_for(self._name).stats(), **self._auth_stats()}


def _split_of(record: Any) -> dict[str, int]:
    """The ``{version: weight}`` a deployment record says (standbys at weight 0 included)."""
    return dict(json.loads(record.traffic_json or "{}"))


def _epoch_watch(store: Any) -> Callable[[int | None, float], Awaitable[int]]:
    """How a replica waits for the store's token epoch: a long poll on the metadata actor."""

    async def watch(known: int | None, timeout_s: float) -> int:
        return int(await store.watch_token_epoch(known, timeout_s))

    return watch


def asgi_app(handle: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    """A bare ASGI app around ``handle``: HTTP requests in, its responses out, and the lifespan
    protocol answered. A plain coroutine function, so servers see an ASGI 3 app."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            response = await handle(Request(scope, receive))
            await response(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _lifespan(receive, send)

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    """The ASGI lifespan protocol of a replica's app: nothing to set up or tear down."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


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
