"""``up``, ``attach`` and ``down``: start (or join) Ray and deploy the platform, join what
runs, stop exactly what ``up`` started.

An entry point (CLI, SDK ``connect``): it reads the caller's environment for Ray's auth mode and
sets Ray's auth variables in-process before connecting.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import datetime

import ray
from ray import serve

from dlplatform._privatedir import make_private_dir
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, InvalidInput
from dlplatform.metadata.actor import stop_store
from dlplatform.metadata.backup import check_database
from dlplatform.runtime.cluster import (
    GATEWAY_APP,
    ClusterRecord,
    DownResult,
    PlatformInfo,
    Progress,
    api_url,
    cluster_file,
    is_live,
    live_record,
    read_cluster,
    wait_healthy,
    write_cluster,
)
from dlplatform.runtime.connection import connect
from dlplatform.runtime.head import start_head, stop_session, wants_token_auth
from dlplatform.runtime.processes import alive, port_free, session_pids, wait_ports_free
from dlplatform.serve import _ingress

log = logging.getLogger(__name__)


def _backend(settings: Settings, *, create: bool) -> Backend:

    return Backend.connect(settings, create=create)


def attach(settings: Settings, *, start: bool) -> Backend:
    """Join the platform running under ``settings.home`` (or start it when ``start``).

    Reuses Ray when this process is already connected (tests, Serve replicas, job drivers).

    Raises:
        BackendUnavailable: nothing runs there and ``start`` is False, or it cannot be reached.
    """

    if ray.is_initialized():
        return _backend(settings, create=False)
    if settings.ray_address is not None:
        connect(settings, settings.ray_address, read_cluster(settings))
        return _backend(settings, create=False)
    record = live_record(settings)
    if record is None:
        if not start:
            raise BackendUnavailable(f"no platform is running under {settings.home}; run `dlp up`")
        up(settings)
        return _backend(settings, create=False)
    connect(settings, record.address, record)
    return _backend(settings, create=False)


def up(settings: Settings, progress: Progress | None = None) -> PlatformInfo:
    """Start (or join) Ray and deploy the platform under ``settings.home``. Harmless when up.

    Raises:
        BackendUnavailable: Ray could not be started or reached, or the gateway did not start.
        InvalidInput: the gateway port is taken by something else.
        IntegrityError: the metadata database is damaged; nothing was started or written.
    """
    # every component (gateway, scheduler, Serve apps) loads for `up` only, not `dlp down`
    from dlplatform.runtime.gateway import deploy_platform

    make_private_dir(settings.home)
    started = False
    record = read_cluster(settings)
    if record is not None and not is_live(record):
        if record.managed:
            stop_session(record, progress)  # leftovers of a crashed head
        cluster_file(settings).unlink(missing_ok=True)
        record = None
    if record is None and settings.metadata_path.exists():
        # Before anything starts: the metadata actor would fail on a damaged file over and over.

        check_database(settings.metadata_path)

    if record is None and ray.is_initialized():
        # This process is connected to a cluster already (a test session, a job): deploy there.
        record = ClusterRecord(
            managed=False,
            address=str(ray.get_runtime_context().gcs_address),
            api_host=settings.host,
            api_port=settings.port,
            started_at=datetime.now().astimezone(),
        )
    if record is None and settings.ray_address is None:
        if not port_free(settings.port):
            raise InvalidInput(f"port {settings.port} is in use; choose another with --port")
        record = start_head(settings, progress)
        started = True
    elif record is None:
        assert settings.ray_address is not None
        record = ClusterRecord(
            managed=False,
            address=settings.ray_address,
            auth_mode="token" if wants_token_auth() else "disabled",
            ray_token_path=os.environ.get("RAY_AUTH_TOKEN_PATH"),
            api_host=settings.host,
            api_port=settings.port,
            started_at=datetime.now().astimezone(),
        )
    if progress:
        progress(f"connecting to Ray at {record.address}")
    try:
        connect(settings, record.address, record)
        # Under the fast ingress Serve listens on loopback; HAProxy alone on settings.host.
        serve_host = _ingress.SERVE_HOST if record.fast_ingress else None
        port = deploy_platform(settings, progress, serve_host=serve_host)
    except BaseException:
        if started:
            stop_session(record)
            cluster_file(settings).unlink(missing_ok=True)
        raise
    if record.managed and record.session_id is not None:
        pids = session_pids(record.session_id)
        record = record.model_copy(update={"pids": pids, "api_port": port})
    else:
        record = record.model_copy(update={"api_port": port})
    write_cluster(settings, record)
    api = api_url(record.api_host, port)
    if progress:
        progress(f"waiting for {api}/api/v1/healthz")
    wait_healthy(api)
    return PlatformInfo(
        home=str(settings.home),
        api_url=f"{api}/api/v1",
        ui_url=f"{api}/ui",
        dashboard_url=record.dashboard_url,
        token_file=str(settings.admin_token_path),
        ray_address=record.address,
        pids=record.pids,
        started=started,
    )


def down(settings: Settings, progress: Progress | None = None) -> DownResult:
    """Stop what ``up`` started under this home, and nothing else.

    On a joined cluster (``--address``) only the gateway app and the metadata actor are removed.
    """

    home = str(settings.home)
    record = read_cluster(settings)
    if record is None:
        return DownResult(home=home, stopped=False, message=f"no platform is running under {home}")
    if is_live(record):
        try:
            connect(settings, record.address, record)

            if progress:
                progress("removing the gateway and the metadata actor")
            if record.managed:
                serve.shutdown()
            else:
                with contextlib.suppress(Exception):
                    serve.delete(GATEWAY_APP)
            stop_store(settings)
        except Exception as exc:  # the processes are stopped below in any case
            log.warning("clean shutdown of the platform failed: %s", exc)
        finally:
            if ray.is_initialized():
                ray.shutdown()
    stopped: list[int] = []
    if record.managed:
        stopped = stop_session(record, progress)
        left = alive(record.pids, record.session_id)
        if record.session_id is not None:
            left = sorted(set(left) | set(session_pids(record.session_id)))
        if left:
            raise BackendUnavailable(f"processes {left} of the Ray head did not stop")
        wait_ports_free([record.api_port, *record.ports.values()])
    cluster_file(settings).unlink(missing_ok=True)
    what = (
        f"stopped the Ray head ({len(stopped)} processes)"
        if record.managed
        else ("removed the gateway and the metadata actor")
    )
    return DownResult(home=home, stopped=True, message=what, pids=stopped)
