"""The local Ray head that ``up`` starts: ``ray start --head --block`` in a session of its own,
with a private temp dir, free ports, Ray's token and Serve's fast ingress; and stopping it again
(every process of its session and the job drivers started from it, never ``ray stop``).

Ray itself is not imported here: the head is a child process.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from dlplatform import _ray_internals as ray_internals
from dlplatform._privatedir import make_private_dir
from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable
from dlplatform.runtime.cluster import (
    RAY_TOKEN_FILE,
    ClusterRecord,
    Progress,
    cluster_file,
    write_cluster,
    write_private,
)
from dlplatform.runtime.processes import (
    alive,
    free_ports,
    offspring,
    port_free,
    port_open,
    proc_stat,
    session_pids,
)
from dlplatform.serve._ingress import fast_ingress_env, frontend_bind, ingress_dir

_MAX_TEMP_DIR_CHARS = 40  # Ray puts ~60 more bytes of socket path under it; the limit is 107
_WORKER_PORTS = 200
_HEAD_START_TIMEOUT_S = 180.0
_STOP_GRACE_S = 15.0
_HEAD_START_ATTEMPTS = 2

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


def stop_session(record: ClusterRecord, progress: Progress | None = None) -> list[int]:
    """SIGTERM, then SIGKILL, every process of the head's session and every process started
    from it in a session of its own (job drivers). Returns the pids signalled."""
    if record.session_id is None:
        return []
    session_id = record.session_id
    # Found once, while their parents live: once the session is gone they belong to init.
    children = offspring(session_id)

    def remaining() -> list[int]:
        gone = [pid for pid, sid in children.items() if (proc_stat(pid) or (0, 0))[1] != sid]
        return sorted(set(session_pids(session_id)) | (children.keys() - set(gone)))

    targets = sorted(set(remaining()) | set(alive(record.pids, session_id)))
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


def _worker_port_range(avoid: set[int]) -> tuple[int, int]:
    """A run of free ports below the kernel's ephemeral range, for Ray's workers."""
    rng = random.Random()
    for _ in range(50):
        base = rng.randrange(15000, 30000 - _WORKER_PORTS)
        ports = range(base, base + _WORKER_PORTS)
        if avoid.isdisjoint(ports) and all(port_free(p) for p in ports):
            return base, base + _WORKER_PORTS - 1
    raise BackendUnavailable("found no free range of worker ports between 15000 and 30000")


def _temp_dir(settings: Settings) -> Path:
    """Ray's temp dir: ``<home>/ray``, or ``/tmp/dlp-<hash>`` when the home path is too long."""
    preferred = settings.ray_temp_dir
    if len(str(preferred)) <= _MAX_TEMP_DIR_CHARS:
        return preferred
    digest = hashlib.sha256(str(settings.home).encode()).hexdigest()[:8]
    return Path("/tmp") / f"dlp-{digest}"


def private_temp_dir(temp_dir: Path, home: Path) -> None:
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


def wants_token_auth() -> bool:
    """Token auth stays on unless the caller's environment explicitly disables it (tests)."""
    return os.environ.get("RAY_AUTH_MODE", "token").strip().lower() != "disabled"


def _ray_token(settings: Settings) -> Path:
    path = settings.home / RAY_TOKEN_FILE
    if not path.is_file():
        write_private(path, secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def start_head(settings: Settings, progress: Progress | None) -> ClusterRecord:
    """Start the head; once more if it failed (Ray gives its raylet 30 s, too short on a
    heavily loaded machine)."""
    for attempt in range(1, _HEAD_START_ATTEMPTS + 1):
        try:
            return _start_head_once(settings, progress)
        except BackendUnavailable:
            if attempt == _HEAD_START_ATTEMPTS:
                raise
            if progress:
                progress("the Ray head did not start; trying once more")
    raise AssertionError("unreachable")


def ingress_env(settings: Settings, ports: dict[str, int]) -> dict[str, str]:
    """Serve's fast ingress for this head (``serve._ingress``), unless the settings turn it off.

    Raises:
        InvalidInput: ``settings.host`` cannot be served through HAProxy.
    """

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


def _start_head_once(settings: Settings, progress: Progress | None) -> ClusterRecord:
    # Serve's default proxy needs none of the fast ingress's internals
    ray_internals.check_installed_ray(fast_ingress=settings.fast_ingress)
    temp_dir = _temp_dir(settings)
    private_temp_dir(temp_dir, settings.home)
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    names = ["gcs", "dashboard", "client", "node_manager", "object_manager", "agent_listen",
             "agent_grpc", "runtime_env_agent", "metrics_export", "haproxy_stats",
             "haproxy_metrics"]  # fmt: skip
    ports = dict(zip(names, free_ports(len(names), {settings.port}), strict=True))
    low, high = _worker_port_range(set(ports.values()) | {settings.port})
    ports["min_worker"], ports["max_worker"] = low, high
    token_auth = wants_token_auth()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    for key, value in HEAD_ENV_DEFAULTS.items():
        env.setdefault(key, value)
    ingress = ingress_env(settings, ports)
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
    write_cluster(settings, record)
    deadline = time.monotonic() + _HEAD_START_TIMEOUT_S
    # `ray start` logs this line once the GCS, the raylet and the dashboard are all up.
    while not _head_started(log_file, log_offset) or not port_open("127.0.0.1", ports["gcs"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_session(record)
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
