"""The platform on a connected cluster: Ray Serve, the gateway app (``dlp-gateway`` at ``/``)
and what ``deploy_platform`` starts beside it (metadata actor, admin token, training scheduler,
workflow manager, recorded deployments, rollout driver); the gateway's health probe.
"""

from __future__ import annotations

import ray
from ray import serve

from dlplatform import _ray_internals as ray_internals
from dlplatform.access import bootstrap_admin
from dlplatform.api.gateway import deploy_gateway
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.runtime.cluster import GATEWAY_APP, Progress, write_admin_token
from dlplatform.serve import restore_deployments
from dlplatform.serve.rollout import ensure_driver
from dlplatform.train.scheduler import connect_scheduler
from dlplatform.workflows import ensure_manager


def serve_http_port() -> int | None:
    """The HTTP port of the cluster's running Serve proxies, or None when Serve is not running."""

    controller = ray_internals.serve_controller()
    if controller is None:
        return None
    return int(ray.get(controller.get_http_config.remote(), timeout=30).port)


def start_serve(host: str, port: int) -> int:
    """Start Serve on ``host:port`` unless it runs already; returns the port it really uses.

    Serve's HTTP options apply only on the first start in a cluster, so a second caller gets the
    first caller's port.
    """

    running = serve_http_port()
    if running is not None:
        return running
    serve.start(
        proxy_location="HeadOnly",
        http_options={"host": host, "port": port},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )
    return serve_http_port() or port


def _gateway_running() -> bool:

    try:
        app = serve.status().applications.get(GATEWAY_APP)
    except Exception:  # Serve not started or unreachable: deploy again
        return False
    return app is not None and str(getattr(app.status, "value", app.status)) == "RUNNING"


def deploy_platform(
    settings: Settings, progress: Progress | None = None, *, serve_host: str | None = None
) -> int:
    """On a connected cluster: metadata actor, admin token, Serve and the gateway app.

    ``serve_host``: the host of Serve's ``http_options`` when it is not ``settings.host`` (under
    the fast ingress, loopback: HAProxy's frontend alone listens on ``settings.host``).
    Returns the gateway's HTTP port. Idempotent: what runs already is kept.
    """

    if progress:
        progress("starting the metadata actor")
    backend = Backend.connect(settings)
    secret = bootstrap_admin(backend.store)
    if secret is not None:
        write_admin_token(settings, secret)
    if progress:
        progress("starting Ray Serve and the API gateway")
    port = start_serve(serve_host or settings.host, settings.port)
    fresh = not _gateway_running()
    if fresh:
        deploy_gateway(settings)

    if progress:
        progress("starting the training scheduler and the workflow manager")
    # The scheduler's first pass marks FAILED, with the reason, every run left RUNNING by a
    # platform that stopped without `dlp down` (its Ray job is gone with the old head). Its warm
    # pool of training workers starts now, not with the first job (they end with the scheduler).
    connect_scheduler(settings).warm_pool()
    ensure_manager(settings)  # triggers fire, a missed schedule runs once, RUNNING runs resume
    if progress and fresh:
        progress("redeploying recorded models")
    for info in restore_deployments(backend) if fresh else []:
        if progress:
            progress(f"model {info.name}@{info.version}: {info.status}")

    ensure_driver(settings)  # after the restore: RUNNING rollouts go on from their recorded step
    return port
