"""``status``: the cluster of a home, the metadata actor, the Serve apps and the gateway's health."""

from __future__ import annotations

import contextlib

import ray
from ray import serve

from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable
from dlplatform.metadata.actor import ACTOR_NAME
from dlplatform.runtime.cluster import (
    AppStatus,
    PlatformStatus,
    api_url,
    is_live,
    read_cluster,
    wait_healthy,
)
from dlplatform.runtime.connection import connect
from dlplatform.runtime.processes import alive


def status(settings: Settings) -> PlatformStatus:
    """The cluster of this home, the metadata actor, the Serve apps and the gateway's health."""

    record = read_cluster(settings)
    home = str(settings.home)
    if record is None or not is_live(record):
        return PlatformStatus(home=home, running=False)
    connect(settings, record.address, record)

    resources = {k: float(v) for k, v in ray.cluster_resources().items() if "node:" not in k}
    try:
        actor = ray.get_actor(ACTOR_NAME, namespace=settings.namespace)
        actor_ok = bool(ray.get(actor.path.remote(), timeout=10))
    except Exception:
        actor_ok = False
    apps: list[AppStatus] = []
    with contextlib.suppress(Exception):
        for name, app in serve.status().applications.items():
            apps.append(
                AppStatus(
                    name=name,
                    status=str(getattr(app.status, "value", app.status)),
                    message=app.message[:500],
                    deployments={
                        d: str(getattr(s.status, "value", s.status))
                        for d, s in app.deployments.items()
                    },
                )
            )
    api = api_url(record.api_host, record.api_port)
    healthy = True
    try:
        wait_healthy(api, timeout_s=3)
    except BackendUnavailable:
        healthy = False
    return PlatformStatus(
        home=home,
        running=True,
        managed=record.managed,
        ray_address=record.address,
        dashboard_url=record.dashboard_url,
        api_url=f"{api}/api/v1",
        resources=resources,
        metadata_actor=actor_ok,
        apps=apps,
        gateway_healthy=healthy,
        pids_alive=alive(record.pids, record.session_id) if record.managed else [],
    )
