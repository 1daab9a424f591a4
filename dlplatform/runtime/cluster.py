"""The files ``up`` keeps in a home: ``cluster.json`` (what it started or joined), the admin's
token; the records ``up``/``status``/``down`` return; whether the recorded cluster is live and
where (``api_url``) and whether (``wait_healthy``) its gateway answers.

Light: no Ray (``dlp backup`` and the backup service ask ``is_running``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Literal

import httpx
from pydantic import BaseModel

from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable
from dlplatform.runtime.processes import alive, port_open

CLUSTER_FILE = "cluster.json"
RAY_TOKEN_FILE = "ray_auth_token"
GATEWAY_APP = "dlp-gateway"

Progress = Callable[[str], None]


class ClusterRecord(BaseModel, frozen=True, extra="forbid"):
    """What ``up`` started or joined for one home (``<home>/cluster.json``)."""

    managed: bool  # True: `up` started the head and `down` stops it
    address: str  # GCS address host:port
    dashboard_url: str | None = None
    ports: dict[str, int] = {}
    temp_dir: str | None = None
    session_id: int | None = None  # pid of `ray start --block`, leader of the head's session
    pids: list[int] = []
    auth_mode: Literal["token", "disabled"] = "disabled"
    ray_token_path: str | None = None
    api_host: str = "127.0.0.1"
    api_port: int
    started_at: datetime
    log_file: str | None = None
    fast_ingress: bool = False  # HAProxy in front (Serve itself then listens on loopback)


class PlatformInfo(BaseModel, frozen=True, extra="forbid"):
    """Where the running platform answers (printed by ``dlp up``)."""

    home: str
    api_url: str
    ui_url: str
    dashboard_url: str | None
    token_file: str
    ray_address: str
    pids: list[int]
    started: bool  # whether this call started the Ray head


class AppStatus(BaseModel, frozen=True, extra="forbid"):
    name: str
    status: str
    message: str = ""
    deployments: dict[str, str] = {}


class PlatformStatus(BaseModel, frozen=True, extra="forbid"):
    """``dlp status``: the cluster, the platform's actors and apps, and their health."""

    home: str
    running: bool
    managed: bool = False
    ray_address: str | None = None
    dashboard_url: str | None = None
    api_url: str | None = None
    resources: dict[str, float] = {}
    metadata_actor: bool = False
    apps: list[AppStatus] = []
    gateway_healthy: bool = False
    pids_alive: list[int] = []


class DownResult(BaseModel, frozen=True, extra="forbid"):
    home: str
    stopped: bool
    message: str
    pids: list[int] = []


def cluster_file(settings: Settings) -> Path:
    return settings.home / CLUSTER_FILE


def read_cluster(settings: Settings) -> ClusterRecord | None:
    """The recorded cluster of this home, or None."""
    path = cluster_file(settings)
    try:
        return ClusterRecord.model_validate_json(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise BackendUnavailable(
            f"{path} is unreadable ({exc}); remove it and run `dlp up`"
        ) from exc


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_cluster(settings: Settings, record: ClusterRecord) -> None:
    write_private(cluster_file(settings), record.model_dump_json(indent=2))


def is_live(record: ClusterRecord) -> bool:
    if not record.managed:
        host, _, port = record.address.rpartition(":")
        return port_open(host, int(port))
    if record.session_id is None or not alive([record.session_id], record.session_id):
        return False
    return port_open("127.0.0.1", record.ports["gcs"])


def live_record(settings: Settings) -> ClusterRecord | None:
    record = read_cluster(settings)
    if record is not None and is_live(record):
        return record
    return None


def is_running(settings: Settings) -> bool:
    """Whether a platform that ``up`` started or joined runs under ``settings.home``: its
    ``cluster.json`` names a live head (or a reachable cluster). Starts nothing, loads no Ray.

    Raises:
        BackendUnavailable: ``cluster.json`` is unreadable.
    """
    return live_record(settings) is not None


def write_admin_token(settings: Settings, secret: str) -> None:
    """Write the admin's token to ``<home>/admin.token`` (mode 0600)."""
    write_private(settings.admin_token_path, secret + "\n")


def wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``<url>/api/v1/healthz`` until it answers 200.

    Raises:
        BackendUnavailable: it did not answer in time.
    """

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            reply = httpx.get(f"{url}/api/v1/healthz", timeout=5)
            if reply.status_code == 200:
                return
            # The Host check answering also means the gateway is up (bound to a name that is
            # not in allowed_hosts, e.g. a public address).
            if reply.status_code == 400 and b'"bad_request"' in reply.content:
                return
            last = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise BackendUnavailable(f"the gateway at {url} did not become healthy: {last}")


def api_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"
