"""The gateway as a Ray Serve application: ``create_app`` inside a Serve replica.

The replica builds its ``Backend`` from ``Settings`` (passed as a plain dict) with the metadata
actor's ``StoreClient``: a replica never opens the DuckDB file. Deployed by ``dlp up`` as the app
``dlp-gateway`` at route prefix ``/`` (the API is under ``/api/v1``, the web UI under ``/ui``).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import replace
from typing import Any

from ray import serve
from ray.serve import Application

from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.metadata.actor import connect_store
from dlplatform.serve._ingress import prepare_replica_process

GATEWAY_APP = "dlp-gateway"
QUIET_LOGGING: dict[str, Any] = {"enable_access_log": False, "log_level": "WARNING"}


def log_to_stderr() -> None:
    """Send the platform's own warnings and errors (``dlplatform.*`` loggers: a failed request
    with its traceback and request id) to this process's stderr, which Ray keeps in the worker's
    ``.err`` log. Serve configures only its own logger in a replica, and nothing else reached a
    file: an operator given "internal error (request id ...)" found only the exception's type
    in the audit log. Idempotent."""
    logger = logging.getLogger("dlplatform")
    if any(getattr(h, "_dlp_stderr", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._dlp_stderr = True  # type: ignore[attr-defined]
    logger.addHandler(handler)


@serve.deployment(
    name="gateway",
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=100,
    logging_config=QUIET_LOGGING,
)
@serve.ingress()
class Gateway:
    """One replica of the HTTP gateway."""

    def __init__(self, settings: dict[str, Any]) -> None:
        prepare_replica_process()  # before Serve starts the replica's gRPC server
        log_to_stderr()
        self._settings = Settings(**settings)

    def __serve_build_asgi_app__(self) -> Any:
        # the app and the store's client: in the replica, not where ``dlp up`` deploys it
        from dlplatform.api.app import create_app
        from dlplatform.metadata.shared_reads import SharedReads

        backend = Backend.connect(self._settings, create=False)
        reads = SharedReads(backend.store, self._settings.metadata_path)
        return create_app(replace(backend, store=reads))  # type: ignore[arg-type]


def gateway_app(settings: Settings) -> Application:
    """The gateway application for ``settings`` (without the caller's token)."""
    return Gateway.bind(settings.model_dump(mode="json", exclude={"token"}))


def deploy_gateway(settings: Settings, *, name: str = GATEWAY_APP, route_prefix: str = "/") -> None:
    """Deploy (or redeploy) the gateway; returns when its replica is running."""
    serve.run(
        gateway_app(settings), name=name, route_prefix=route_prefix, logging_config=QUIET_LOGGING
    )


def build_gateway(args: dict[str, Any]) -> Application:
    """Serve application builder for config files (KubeRay ``serveConfigV2``, ``serve deploy``).

    ``args`` are ``Settings`` fields (e.g. ``home``, ``artifact_root``, ``allowed_hosts``); ``DLP_*``
    env vars fill the rest. Starts the metadata actor on the head node when it is not running.
    """
    settings = load_settings(**args)
    connect_store(settings)
    return gateway_app(settings)
