"""The shared (multiplexed) application: many long-tail models on a few replicas.

``dlp serve deploy NAME --shared`` records the deployment as shared; the app ``dlp-shared-models``
owns the route prefix ``/models``, so ``POST /models/<name>`` reaches it whenever ``<name>`` has no
dedicated app (Serve routes by the longest matching prefix). A replica finds the model's version
through its deployment record (cached for ``RECORD_TTL_S``) and loads ``model@version`` with
``@serve.multiplexed``: at most ``max_models_per_replica`` models stay in memory, least recently
used first out. Evicted models stay on local disk as a verified copy of their artifact
(``<tmp>/dlp-model-cache-<uid>``, a directory private to the user), so a reload does not fetch
from a remote artifact root again. Clients may send the header ``serve_multiplexed_model_id: <model>@<version>`` to be routed to a
replica that already holds the model.

A request is authenticated before its model is looked up or loaded: a caller without a usable
token, or whose role lacks ``predict``, gets the same 401 or 403 whether the model exists or not,
and never makes a replica load one. Only a request without any token needs the deployment record
first (a deployment may allow anonymous calls); it too gets 401 for an unknown model.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from dlplatform._privatedir import make_private_dir
from dlplatform.context import Backend
from dlplatform.errors import (
    DLPlatformError,
    IntegrityError,
    NotFound,
    Unauthenticated,
    error_for_code,
)
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import check_name
from dlplatform.metadata.store import MetadataStore
from dlplatform.serve._auth import MISSING_TOKEN
from dlplatform.serve._model import ServedModel, load_served_model
from dlplatform.serve.deployment import (
    ReplicaBase,
    error_response,
    new_request_id,
    request_header,
    served_dtype,
)
from dlplatform.serve.spec import REPLICA_OPTIONS, ROUTE_PREFIX, DeploymentSpec

RECORD_TTL_S = 2.0
"""How long a shared replica trusts a deployment record (a rollout reaches it within this)."""
MAX_RECORDS = 10_000
"""Deployment records (found or not) a shared replica remembers, least recently used out."""
_MULTIPLEX_ATTR = "__serve_multiplex_wrapper"


class _LocalCache:
    """Verified local copies of model artifacts, keyed by their sha256."""

    def __init__(self, backend: Any) -> None:
        # a name anyone can guess: refused unless it is a private directory of this user
        root = Path(tempfile.gettempdir()) / f"dlp-model-cache-{os.getuid()}"
        make_private_dir(root, hint="set TMPDIR for the Ray workers to a private directory")
        self.local = ArtifactStore(str(root))
        self.remote = backend.artifacts
        self.backend = Backend(store=backend.store, artifacts=self.local, settings=backend.settings)
        self.fetches = 0

    def ensure(self, sha: str) -> None:
        if self.local.exists(sha):
            return
        with tempfile.TemporaryDirectory(prefix="dlp-fetch-") as tmp:
            copy = self.remote.get_dir(sha, Path(tmp) / "model")
            ref = self.local.put_dir(copy)
        self.fetches += 1
        if ref.sha256 != sha:  # same files must give the same manifest; refuse anything else
            self.local.delete(ref.sha256)
            raise IntegrityError(f"local copy of artifact {sha[:12]} does not match its hash")


@serve.deployment(name="shared", **REPLICA_OPTIONS)
@serve.ingress()
class SharedModelServer(ReplicaBase):
    """One replica of the multiplexed app: any shared deployment, loaded on demand (LRU)."""

    def __init__(self, config: dict[str, Any]) -> None:
        spec = DeploymentSpec.model_validate(config["spec"])
        self._setup_common(config["settings"], spec)
        self._max_models = spec.max_models_per_replica
        self._records: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._cache = _LocalCache(self._backend)
        self.loads = 0

    # --- which model: deployment records, cached ------------------------------------------------

    async def _find_record(self, name: str) -> tuple[Any, DeploymentSpec] | None:
        """The shared deployment ``name`` and its spec, or None when there is none."""
        now = time.monotonic()
        hit = self._records.get(name)
        if hit is None or hit[0] < now:
            reply = await self._store.call_async(MetadataStore.get_deployment, name)
            value: Any = reply[1] if reply[0] == "ok" else None
            if reply[0] != "ok" and reply[1] != "not_found":
                raise error_for_code(reply[1], reply[2])
            hit = (now + RECORD_TTL_S, value)
            self._records[name] = hit
            while len(self._records) > MAX_RECORDS:
                self._records.popitem(last=False)
        self._records.move_to_end(name)
        record = hit[1]
        spec = DeploymentSpec.model_validate_json(record.config_json) if record else None
        if record is None or spec is None or not spec.shared:
            return None
        return record, spec

    async def _record(self, name: str) -> tuple[Any, DeploymentSpec]:
        found = await self._find_record(name)
        if found is None:
            raise NotFound(f"no model is deployed at {ROUTE_PREFIX}/{name}")
        return found

    @staticmethod
    def _pick_version(record: Any) -> int:
        traffic = {int(v): int(w) for v, w in json.loads(record.traffic_json).items() if w > 0}
        if len(traffic) == 1:
            return next(iter(traffic))
        versions = list(traffic)
        return random.choices(versions, [traffic[v] for v in versions])[0]

    # --- loading: Serve's multiplexing (LRU per replica) ----------------------------------------

    @serve.multiplexed(max_num_models_per_replica=4)
    async def _get_model(self, model_id: str) -> ServedModel:
        model, _, version = model_id.rpartition("@")
        served = await asyncio.to_thread(self._load, model, int(version))
        self.loads += 1
        return served

    def _load(self, model: str, version: int) -> ServedModel:
        record = self._backend.store.get_model_version(model, version)
        self._cache.ensure(record.artifact_sha256)
        served = load_served_model(
            self._cache.backend, model, version, max_rows=self._spec.max_rows
        )
        served.predict(np.zeros((1, *served.shape), dtype=served_dtype(served)))
        return served

    async def _served(self, model: str, version: int) -> ServedModel:
        served = await self._get_model(f"{model}@{version}")
        wrapper = getattr(self, _MULTIPLEX_ATTR, None)
        if wrapper is not None and wrapper.max_num_models_per_replica != self._max_models:
            wrapper.max_num_models_per_replica = self._max_models
        return served

    def _loaded_ids(self) -> list[str]:
        wrapper = getattr(self, _MULTIPLEX_ATTR, None)
        return list(wrapper.models) if wrapper is not None else []

    # --- requests ---------------------------------------------------------------------------

    @staticmethod
    def _name_of(request: Request) -> str:
        path = request.scope.get("path", "")
        root = request.scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if path.startswith(ROUTE_PREFIX + "/"):
            path = path[len(ROUTE_PREFIX) :]
        return path.strip("/")

    async def _handle(self, request: Request) -> Response:
        start = time.perf_counter()
        request_id = new_request_id()
        self._start_publisher()
        refused = self._screen(request, request_id)
        if refused is not None:
            return refused
        name = self._name_of(request)
        try:
            if not _is_name(name):  # tells nothing of what is deployed
                raise NotFound(f"no model is deployed at {str(request.scope.get('path'))[:100]}")
            record, spec = await self._admit(request, name)
            served = await self._served(record.model, self._pick_version(record))
        except DLPlatformError as exc:
            return error_response(exc, request_id)
        return await self._serve_request(request, name, spec, served, request_id, start)

    async def _admit(self, request: Request, name: str) -> tuple[Any, DeploymentSpec]:
        """Authenticate and authorize, then find the deployment (never the other way round).

        Raises:
            Unauthenticated: no usable token; no token at all, unless the deployment exists and
                allows anonymous calls.
            PermissionDenied: the role lacks ``predict``.
            NotFound: an authorized caller named no shared deployment.
        """
        header = request_header(request, b"authorization")
        if header:
            await self._tokens.principal(header, f"deployment:{name}")
            return await self._record(name)
        found = await self._find_record(name)
        if found is None or not found[1].allow_anonymous:
            raise Unauthenticated(MISSING_TOKEN)
        return found

    async def predict_rows(self, name: str, inputs: Any) -> tuple[Any, ...]:
        """Prediction for an in-cluster caller that is already authorized (SDK, CLI)."""
        try:
            record, spec = await self._record(name)
            served = await self._served(record.model, self._pick_version(record))
        except DLPlatformError as exc:
            return ("err", exc.code, exc.message)
        return await self._predict_rows(name, spec, served, inputs)

    async def multiplex_stats(self) -> dict[str, Any]:
        """Loads, evictions and what this replica holds in memory now."""
        loaded = self._loaded_ids()
        return {
            "loads": self.loads,
            "evictions": self.loads - len(loaded),
            "loaded": loaded,
            "max_models_per_replica": self._max_models,
            "artifact_fetches": self._cache.fetches,
        }

    async def stats_for(self, name: str) -> dict[str, float]:
        """Request counters of one shared deployment on this replica, plus load/evict counts."""
        stats = self._metrics_for(name).stats()
        loaded = self._loaded_ids()
        stats.update(
            {"model_loads": float(self.loads), "model_evictions": float(self.loads - len(loaded))}
        )
        stats.update(self._auth_stats())
        return stats


def _is_name(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return False
    return True


def shared_app(settings: dict[str, Any], spec: DeploymentSpec) -> Any:
    """The multiplexed application (replicas and per-replica model count from ``spec``)."""
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
        }
    config = {"settings": settings, "spec": spec.model_dump(mode="json")}
    return SharedModelServer.options(**options).bind(config)


__all__ = ["SharedModelServer", "shared_app"]
