"""Start, join, inspect and stop the platform: ``up``, ``down``, ``status``, ``attach``.

``up`` starts a local Ray head as a background service (``ray start --head --block`` in a session
of its own, with a temp dir and free ports chosen for this home), or joins ``settings.ray_address``;
then it starts the metadata actor, creates the admin token on first start and deploys the gateway
(Ray Serve app ``dlp-gateway`` at ``/``). What it started is recorded in ``<home>/cluster.json``:
that is how ``attach``, ``status`` and ``down`` find it, and why two homes never collide.

``down`` stops exactly what ``up`` started: the gateway, the metadata actor, and the processes of
the head's session and the job drivers it started (never ``ray stop``, which would hit every Ray
process of the user).

After a hard stop (every process killed, no ``down``), ``up`` on the same home is the recovery:
it stops what the dead head left running, makes Ray's temp dir private again, checks the
database, starts a new head and, from the database, redeploys every recorded deployment, resumes
the RUNNING workflow runs (the manager) and fails the RUNNING jobs whose Ray job died with the
old head (the scheduler), saying why.

This module is an entry point (CLI, SDK ``connect``): it reads the caller's environment for Ray's
auth mode and sets Ray's auth variables in-process before connecting.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from dlplatform import _ray_internals as ray_internals
from dlplatform._privatedir import make_private_dir
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, InvalidInput

CLUSTER_FILE = "cluster.json"
RAY_TOKEN_FILE = "ray_auth_token"
GATEWAY_APP = "dlp-gateway"
_MAX_TEMP_DIR_CHARS = 40  # Ray puts ~60 more bytes of socket path under it; the limit is 107
_WORKER_PORTS = 200
_HEAD_START_TIMEOUT_S = 180.0
_STOP_GRACE_S = 15.0
_CONNECT_ATTEMPTS = 3
_HEAD_START_ATTEMPTS = 2

log = logging.getLogger("dlplatform.runtime")

# Set in the head's environment (inherited by every Ray worker) unless the caller set them.
HEAD_ENV_DEFAULTS: dict[str, str] = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_AIR_NEW_OUTPUT": "0",
    # A local head advertises 127.0.0.1 rather than the machine's outward address.
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    # Serve's controller restarts a proxy (HAProxy and its manager actor) after 3 failed health
    # checks in a row, one per period: with Serve's 10 s a killed HAProxy left the API
    # unanswered for about 35 s. A check is one admin-socket command.
    "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2",
    # A new proxy actor that is not ready within this is killed and started again. Serve's 5 s
    # is shorter than a worker's start on a loaded 2-core machine: the first proxy of each
    # `dlp up` and the replacement of a dead HAProxy were restarted over and over.
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
}

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


# --- cluster.json -----------------------------------------------------------------------------


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


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def _write_cluster(settings: Settings, record: ClusterRecord) -> None:
    _write_private(cluster_file(settings), record.model_dump_json(indent=2))


# --- processes --------------------------------------------------------------------------------


def _proc_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, process group,
    session, ...) of a live, non-zombie process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, session) of a live, non-zombie process, or None."""
    fields = _proc_fields(pid)
    return None if fields is None else (int(fields[2]), int(fields[3]))


def _session_pids(session_id: int) -> list[int]:
    """Every live process of the session led by ``session_id`` (the head and all it spawned)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[1] == session_id:
                out.append(int(entry.name))
    return sorted(out)


def _offspring(session_id: int) -> dict[int, int]:
    """pid → session of every live process outside the session ``session_id`` that descends
    from one of its members: Ray's job supervisors start each job's driver (a training job's
    ``python -m dlplatform.train.entrypoint``) in a session of its own."""
    parents: dict[int, tuple[int, int]] = {}  # pid -> (parent, session)
    for entry in Path("/proc").iterdir():
        fields = _proc_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            parents[int(entry.name)] = (int(fields[1]), int(fields[3]))
    out: dict[int, int] = {}
    for pid, (parent, session) in parents.items():
        ancestor, hops = parent, 0  # hops: a pid reused during the scan could make a loop
        while session != session_id and ancestor in parents and hops < 64:
            if parents[ancestor][1] == session_id:
                out[pid] = session
                break
            ancestor, hops = parents[ancestor][0], hops + 1
    return out


def _alive(pids: list[int], session_id: int | None) -> list[int]:
    """Recorded pids that still run in the recorded session (a reused pid does not count)."""
    alive = []
    for pid in pids:
        stat = _proc_stat(pid)
        if stat is not None and (session_id is None or stat[1] == session_id):
            alive.append(pid)
    return alive


def _stop_session(record: ClusterRecord, progress: Progress | None = None) -> list[int]:
    """SIGTERM, then SIGKILL, every process of the head's session and every process started
    from it in a session of its own (job drivers). Returns the pids signalled."""
    if record.session_id is None:
        return []
    session_id = record.session_id
    # Found once, while their parents live: once the session is gone they belong to init.
    offspring = _offspring(session_id)

    def remaining() -> list[int]:
        gone = [pid for pid, sid in offspring.items() if (_proc_stat(pid) or (0, 0))[1] != sid]
        return sorted(set(_session_pids(session_id)) | (offspring.keys() - set(gone)))

    targets = sorted(set(remaining()) | set(_alive(record.pids, session_id)))
    if not targets:
        return []
    if progress:
        progress(f"stopping {len(targets)} Ray processes")
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_GRACE_S
    while time.monotonic() < deadline and remaining():
        time.sleep(0.25)
    for _ in range(3):
        left = remaining()
        if not left:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    return targets


def _port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _is_live(record: ClusterRecord) -> bool:
    if not record.managed:
        host, _, port = record.address.rpartition(":")
        return _port_open(host, int(port))
    if record.session_id is None or not _alive([record.session_id], record.session_id):
        return False
    return _port_open("127.0.0.1", record.ports["gcs"])


def _free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct free ports chosen by the kernel, none of them in ``avoid`` (the
    gateway's port: Ray once gave its client server the port the gateway was about to take)."""
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in avoid:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as servers set it: the
    TIME_WAIT connections a just-stopped gateway leaves do not count as in use (without it
    ``dlp down && dlp up`` on the same port failed for about a minute)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PORTS_FREE_WAIT_S = 10.0
"""How long ``down`` waits for the ports its head used to be free again (a process that has
exited can hold a listening socket a moment longer while the kernel closes it)."""


def _wait_ports_free(ports: list[int]) -> list[int]:
    """Wait until every port in ``ports`` could be listened on again, for up to
    ``PORTS_FREE_WAIT_S``; returns those still taken (logged: something else holds them)."""
    deadline = time.monotonic() + PORTS_FREE_WAIT_S
    while True:
        taken = [p for p in ports if p and not _port_free(p)]
        if not taken or time.monotonic() > deadline:
            if taken:
                log.warning("ports %s are still in use after the head stopped", taken)
            return taken
        time.sleep(0.1)


def _worker_port_range(avoid: set[int]) -> tuple[int, int]:
    """A run of free ports below the kernel's ephemeral range, for Ray's workers."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(15000, 30000 - _WORKER_PORTS)
        ports = range(base, base + _WORKER_PORTS)
        if avoid.isdisjoint(ports) and all(_port_free(p) for p in ports):
            return base, base + _WORKER_PORTS - 1
    raise BackendUnavailable("found no free range of worker ports between 15000 and 30000")


def _temp_dir(settings: Settings) -> Path:
    """Ray's temp dir: ``<home>/ray``, or ``/tmp/dlp-<hash>`` when the home path is too long."""
    preferred = settings.ray_temp_dir
    if len(str(preferred)) <= _MAX_TEMP_DIR_CHARS:
        return preferred
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:8]
    return Path("/tmp") / f"dlp-{digest}"


def _private_temp_dir(temp_dir: Path, home: Path) -> None:
    """Make Ray's temp dir ours and private again before a head starts in it.

    Ray makes its temp dir world-writable (``try_make_directory_shared``: mode 777), so a second
    start on the same home (after ``dlp down`` or a crash) finds it so. Inside the home, which is
    private (0700), nobody else could have put anything there: it is made 0700 again and the last
    session's logs stay for a post-mortem. Under ``/tmp`` (a long home path) its contents cannot
    be trusted: they are removed first. ``make_private_dir`` refuses whatever is left.
    """
    with contextlib.suppress(OSError):
        info = os.lstat(temp_dir)
        if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o002:
            if temp_dir.parent == home:
                os.chmod(temp_dir, 0o700)
            else:
                shutil.rmtree(temp_dir, ignore_errors=True)
    make_private_dir(temp_dir)


def _ray_executable() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if found is None:
        raise BackendUnavailable("the `ray` command is not installed")
    return found


def _wants_token_auth() -> bool:
    """Token auth stays on unless the caller's environment explicitly disables it (tests)."""
    return os.environ.get("RAY_AUTH_MODE", "token").strip().lower() != "disabled"


def _ray_token(settings: Settings) -> Path:
    path = settings.home / RAY_TOKEN_FILE
    if not path.is_file():
        _write_private(path, secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def _start_head_retrying(settings: Settings, progress: Progress | None) -> ClusterRecord:
    """Start the head; once more if it failed (Ray gives its raylet 30 s, too short on a
    heavily loaded machine)."""
    for attempt in range(1, _HEAD_START_ATTEMPTS + 1):
        try:
            return _start_head(settings, progress)
        except BackendUnavailable:
            if attempt == _HEAD_START_ATTEMPTS:
                raise
            if progress:
                progress("the Ray head did not start; trying once more")
    raise AssertionError("unreachable")


def _ingress_env(settings: Settings, ports: dict[str, int]) -> dict[str, str]:
    """Serve's fast ingress for this head (``serve._ingress``), unless the settings turn it off.

    Raises:
        InvalidInput: ``settings.host`` cannot be served through HAProxy.
    """
    from dlplatform.serve._ingress import fast_ingress_env, frontend_bind, ingress_dir

    if not settings.fast_ingress:
        return {}
    frontend_bind(settings.host)  # refuse a host HAProxy cannot bind before making anything
    directory = ingress_dir(settings.home)
    make_private_dir(directory)
    return fast_ingress_env(
        directory,
        ports["haproxy_stats"],
        ports["haproxy_metrics"],
        api_host=settings.host,
        api_port=settings.port,
    )


def _start_head(settings: Settings, progress: Progress | None) -> ClusterRecord:
    # Serve's default proxy needs none of the fast ingress's internals
    ray_internals.check_installed_ray(fast_ingress=settings.fast_ingress)
    temp_dir = _temp_dir(settings)
    _private_temp_dir(temp_dir, settings.home)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    names = ["gcs", "dashboard", "client", "node_manager", "object_manager", "agent_listen",
             "agent_grpc", "runtime_env_agent", "metrics_export", "haproxy_stats",
             "haproxy_metrics"]  # fmt: skip
    ports = dict(zip(names, _free_ports(len(names), {settings.port}), strict=True))
    low, high = _worker_port_range(set(ports.values()) | {settings.port})
    ports["min_worker"], ports["max_worker"] = low, high
    token_auth = _wants_token_auth()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    for key, value in HEAD_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    ingress = _ingress_env(settings, ports)
    env.update(ingress)
    if progress and settings.fast_ingress and not ingress:
        progress("no HAProxy binary found: Serve keeps its default (slower) HTTP proxy")
    token_path: Path | None = None
    if token_auth:
        token_path = _ray_token(settings)
        env["RAY_AUTH_MODE"] = "token"
        env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    else:
        env["RAY_AUTH_MODE"] = "disabled"
    cmd = [
        _ray_executable(), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={ports['gcs']}",
        "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--dashboard-port={ports['dashboard']}",
        f"--ray-client-server-port={ports['client']}",
        f"--node-manager-port={ports['node_manager']}",
        f"--object-manager-port={ports['object_manager']}",
        f"--dashboard-agent-listen-port={ports['agent_listen']}",
        f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--runtime-env-agent-port={ports['runtime_env_agent']}",
        f"--metrics-export-port={ports['metrics_export']}",
        f"--min-worker-port={low}", f"--max-worker-port={high}",
        f"--num-cpus={max(os.cpu_count() or 1, 4)}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]  # fmt: skip
    log_file = logs / "ray-head.log"
    if progress:
        progress(f"starting a Ray head (temp dir {temp_dir}, log {log_file})")
    log_offset = log_file.stat().st_size if log_file.exists() else 0
    with open(log_file, "ab") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(settings.home),
        )  # fmt: skip
    record = ClusterRecord(
        managed=True,
        address=f"127.0.0.1:{ports['gcs']}",
        dashboard_url=f"http://127.0.0.1:{ports['dashboard']}",
        ports=ports,
        temp_dir=str(temp_dir),
        session_id=proc.pid,
        pids=[proc.pid],
        auth_mode="token" if token_auth else "disabled",
        ray_token_path=str(token_path) if token_path else None,
        api_host=settings.host,
        api_port=settings.port,
        started_at=datetime.now().astimezone(),
        log_file=str(log_file),
        fast_ingress=bool(ingress),
    )
    # Record it at once so that `down` can clean up even if the start fails half-way.
    _write_cluster(settings, record)
    deadline = time.monotonic() + _HEAD_START_TIMEOUT_S
    # `ray start` logs this line once the GCS, the raylet and the dashboard are all up.
    while not _head_started(log_file, log_offset) or not _port_open("127.0.0.1", ports["gcs"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_session(record)
            cluster_file(settings).unlink(missing_ok=True)
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            raise BackendUnavailable(f"the Ray head did not start (see {log_file}): {tail[0]}")
        time.sleep(0.25)
    return record


def _head_started(log_file: Path, offset: int) -> bool:
    try:
        with open(log_file, "rb") as fh:
            fh.seek(offset)
            return b"Ray runtime started" in fh.read()
    except OSError:
        return False


# --- connecting -------------------------------------------------------------------------------


def _auth_env_for(record: ClusterRecord | None) -> None:
    """Put Ray's auth variables in this process's environment before ``ray.init``.

    Only for a head that ``up`` started; joining another cluster follows the caller's environment.
    """
    if record is None or not record.managed:
        return
    if record.auth_mode == "token" and record.ray_token_path:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN_PATH"] = record.ray_token_path
        os.environ.pop("RAY_AUTH_TOKEN", None)
    else:
        os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_internals.reload_auth_config()  # Ray caches its config and the token per process


def _loopback_only() -> None:
    """Make this driver use 127.0.0.1 as its node address, like the local head it joins.

    The head runs with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` so that it advertises and binds
    loopback addresses; a driver must resolve addresses the same way, and Ray reads that switch
    once at import, hence the constant is set here as well.
    """
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_internals.resolve_node_address_as_loopback_head()


def _connect(settings: Settings, address: str, record: ClusterRecord | None) -> None:
    import ray

    if ray.is_initialized():
        return
    _auth_env_for(record)
    os.environ.pop("RAY_ADDRESS", None)
    if record is not None and record.managed:
        _loopback_only()
    for attempt in range(1, _CONNECT_ATTEMPTS + 1):
        try:
            ray.init(
                address=address,
                namespace=settings.namespace,
                log_to_driver=False,
                logging_level="WARNING",
                configure_logging=False,
            )
            return
        except (ConnectionError, RuntimeError, ValueError) as exc:
            # A loaded machine can make the first connection time out; try again.
            if attempt == _CONNECT_ATTEMPTS or isinstance(exc, ValueError):
                raise BackendUnavailable(f"cannot connect to Ray at {address}: {exc}") from exc
            time.sleep(2.0)


def _backend(settings: Settings, *, create: bool) -> Backend:
    from dlplatform.metadata.actor import connect_store
    from dlplatform.metadata.artifacts import ArtifactStore

    return Backend(
        store=connect_store(settings, create=create),
        artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )


def _live_record(settings: Settings) -> ClusterRecord | None:
    record = read_cluster(settings)
    if record is not None and _is_live(record):
        return record
    return None


def is_running(settings: Settings) -> bool:
    """Whether a platform that ``up`` started or joined runs under ``settings.home``: its
    ``cluster.json`` names a live head (or a reachable cluster). Starts nothing, loads no Ray.

    Raises:
        BackendUnavailable: ``cluster.json`` is unreadable.
    """
    return _live_record(settings) is not None


def attach(settings: Settings, *, start: bool) -> Backend:
    """Join the platform running under ``settings.home`` (or start it when ``start``).

    Reuses Ray when this process is already connected (tests, Serve replicas, job drivers).

    Raises:
        BackendUnavailable: nothing runs there and ``start`` is False, or it cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return _backend(settings, create=False)
    if settings.ray_address is not None:
        _connect(settings, settings.ray_address, read_cluster(settings))
        return _backend(settings, create=False)
    record = _live_record(settings)
    if record is None:
        if not start:
            raise BackendUnavailable(f"no platform is running under {settings.home}; run `dlp up`")
        up(settings)
        return _backend(settings, create=False)
    _connect(settings, record.address, record)
    return _backend(settings, create=False)


# --- up ---------------------------------------------------------------------------------------


def write_admin_token(settings: Settings, secret: str) -> None:
    """Write the admin's token to ``<home>/admin.token`` (mode 0600)."""
    _write_private(settings.admin_token_path, secret + "\n")


def serve_http_port() -> int | None:
    """The HTTP port of the cluster's running Serve proxies, or None when Serve is not running."""
    import ray  # not at module level: the CLI imports this module and must not load Ray

    controller = ray_internals.serve_controller()
    if controller is None:
        return None
    return int(ray.get(controller.get_http_config.remote(), timeout=30).port)


def start_serve(host: str, port: int) -> int:
    """Start Serve on ``host:port`` unless it runs already; returns the port it really uses.

    Serve's HTTP options apply only on the first start in a cluster, so a second caller gets the
    first caller's port.
    """
    from ray import serve

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
    from ray import serve

    try:
        app = serve.status().applications.get(GATEWAY_APP)
    except Exception:  # Serve not started or unreachable: deploy again
        return False
    return app is not None and str(getattr(app.status, "value", app.status)) == "RUNNING"


def wait_healthy(url: str, timeout_s: float = 60.0) -> None:
    """Poll ``<url>/api/v1/healthz`` until it answers 200.

    Raises:
        BackendUnavailable: it did not answer in time.
    """
    import httpx

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


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


def deploy_platform(
    settings: Settings, progress: Progress | None = None, *, serve_host: str | None = None
) -> int:
    """On a connected cluster: metadata actor, admin token, Serve and the gateway app.

    ``serve_host``: the host of Serve's ``http_options`` when it is not ``settings.host`` (under
    the fast ingress, loopback: HAProxy's frontend alone listens on ``settings.host``).
    Returns the gateway's HTTP port. Idempotent: what runs already is kept.
    """
    from dlplatform.access import bootstrap_admin
    from dlplatform.api.gateway import deploy_gateway
    from dlplatform.metadata.actor import connect_store
    from dlplatform.train.scheduler import connect_scheduler

    if progress:
        progress("starting the metadata actor")
    store = connect_store(settings)
    secret = bootstrap_admin(store)
    if secret is not None:
        write_admin_token(settings, secret)
    if progress:
        progress("starting Ray Serve and the API gateway")
    port = start_serve(serve_host or settings.host, settings.port)
    fresh = not _gateway_running()
    if fresh:
        deploy_gateway(settings)
    from dlplatform.metadata.artifacts import ArtifactStore
    from dlplatform.serve import restore_deployments
    from dlplatform.workflows import ensure_manager

    if progress:
        progress("starting the training scheduler and the workflow manager")
    # The scheduler's first pass marks FAILED, with the reason, every run left RUNNING by a
    # platform that stopped without `dlp down` (its Ray job is gone with the old head). Its warm
    # pool of training workers starts now, not with the first job (they end with the scheduler).
    connect_scheduler(settings).warm_pool()
    ensure_manager(settings)  # triggers fire, a missed schedule runs once, RUNNING runs resume
    if progress and fresh:
        progress("redeploying recorded models")
    backend = Backend(
        store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings
    )  # type: ignore[arg-type]
    for info in restore_deployments(backend) if fresh else []:
        if progress:
            progress(f"model {info.name}@{info.version}: {info.status}")
    from dlplatform.serve.rollout import ensure_driver

    ensure_driver(settings)  # after the restore: RUNNING rollouts go on from their recorded step
    return port


def up(settings: Settings, progress: Progress | None = None) -> PlatformInfo:
    """Start (or join) Ray and deploy the platform under ``settings.home``. Harmless when up.

    Raises:
        BackendUnavailable: Ray could not be started or reached, or the gateway did not start.
        InvalidInput: the gateway port is taken by something else.
        IntegrityError: the metadata database is damaged; nothing was started or written.
    """
    from dlplatform.serve import _ingress  # Serve's specs, only when starting

    make_private_dir(settings.home)
    started = False
    record = read_cluster(settings)
    if record is not None and not _is_live(record):
        if record.managed:
            _stop_session(record, progress)  # leftovers of a crashed head
        cluster_file(settings).unlink(missing_ok=True)
        record = None
    if record is None and settings.metadata_path.exists():
        # Before anything starts: the metadata actor would fail on a damaged file over and over.
        from dlplatform.metadata.backup import check_database

        check_database(settings.metadata_path)
    import ray

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
        if not _port_free(settings.port):
            raise InvalidInput(f"port {settings.port} is in use; choose another with --port")
        record = _start_head_retrying(settings, progress)
        started = True
    elif record is None:
        assert settings.ray_address is not None
        record = ClusterRecord(
            managed=False,
            address=settings.ray_address,
            auth_mode="token" if _wants_token_auth() else "disabled",
            ray_token_path=os.environ.get("RAY_AUTH_TOKEN_PATH"),
            api_host=settings.host,
            api_port=settings.port,
            started_at=datetime.now().astimezone(),
        )
    if progress:
        progress(f"connecting to Ray at {record.address}")
    try:
        _connect(settings, record.address, record)
        # Under the fast ingress Serve listens on loopback; HAProxy alone on settings.host.
        serve_host = _ingress.SERVE_HOST if record.fast_ingress else None
        port = deploy_platform(settings, progress, serve_host=serve_host)
    except BaseException:
        if started:
            _stop_session(record)
            cluster_file(settings).unlink(missing_ok=True)
        raise
    if record.managed and record.session_id is not None:
        pids = _session_pids(record.session_id)
        record = record.model_copy(update={"pids": pids, "api_port": port})
    else:
        record = record.model_copy(update={"api_port": port})
    _write_cluster(settings, record)
    api = _url(record.api_host, port)
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


# --- status and down --------------------------------------------------------------------------


def status(settings: Settings) -> PlatformStatus:
    """The cluster of this home, the metadata actor, the Serve apps and the gateway's health."""
    import ray

    record = read_cluster(settings)
    home = str(settings.home)
    if record is None or not _is_live(record):
        return PlatformStatus(home=home, running=False)
    _connect(settings, record.address, record)
    from ray import serve

    from dlplatform.metadata.actor import ACTOR_NAME

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
    api = _url(record.api_host, record.api_port)
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
        pids_alive=_alive(record.pids, record.session_id) if record.managed else [],
    )


def down(settings: Settings, progress: Progress | None = None) -> DownResult:
    """Stop what ``up`` started under this home, and nothing else.

    On a joined cluster (``--address``) only the gateway app and the metadata actor are removed.
    """
    import ray

    home = str(settings.home)
    record = read_cluster(settings)
    if record is None:
        return DownResult(home=home, stopped=False, message=f"no platform is running under {home}")
    if _is_live(record):
        try:
            _connect(settings, record.address, record)
            from ray import serve

            from dlplatform.metadata.actor import stop_store

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
        stopped = _stop_session(record, progress)
        left = _alive(record.pids, record.session_id)
        if record.session_id is not None:
            left = sorted(set(left) | set(_session_pids(record.session_id)))
        if left:
            raise BackendUnavailable(f"processes {left} of the Ray head did not stop")
        _wait_ports_free([record.api_port, *record.ports.values()])
    cluster_file(settings).unlink(missing_ok=True)
    what = (
        f"stopped the Ray head ({len(stopped)} processes)"
        if record.managed
        else ("removed the gateway and the metadata actor")
    )
    return DownResult(home=home, stopped=True, message=what, pids=stopped)
