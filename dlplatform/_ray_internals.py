"""Ray's private internals, fenced: every use the platform makes of a private Ray name
(``ray._private``, ``ray._raylet``, ``ray.serve._private``, ``ray.autoscaler._private``,
``ray.experimental.internal_kv._internal_kv_*``, ``ray.serve.context._get_global_client``) and
every patch of Ray Serve lives here, behind small functions the rest of the platform calls.

Written for Ray ``RAY_SERIES`` (2.60.x). Each private name is declared once as an ``Internal``
(where it lives, which names Ray's code around it must still use, why the platform needs it)
and reached only through ``_resolve``; this module imports no private Ray module by name.
``check_installed_ray`` (run by ``dlp up`` before it starts a head) compares ``ray.__version__``
with ``RAY_SERIES`` and checks every declared name:

- another Ray version: a ``RayVersionWarning``, and the platform goes on if every name holds;
- a name the platform cannot run without (``CORE``, and ``fast_ingress_internals()`` when
  the fast ingress is on): ``BackendUnavailable`` naming it and what to do;
- a name whose feature degrades gracefully (``OPTIONAL``): a ``RayVersionWarning`` saying what
  is lost.

A patch (``patch_once``) checks its target again every time and raises ``RayPatchError`` when
Ray's internals look different: a replica then refuses to start, and says why, instead of
serving without the patch. ``tests/unit/test_ray_internals.py`` is the tripwire for a Ray
upgrade: every declared name must exist in the installed Ray, and no private Ray module may be
imported here past the declarations.

What the patches are for:

- Serve's fast ingress (HAProxy in front of directly reachable replicas) uses fixed paths and
  binds its stats and Prometheus listeners on every interface; Serve starts HAProxy through
  ``write_wrapper``'s script, which rewrites the config it generates (``_WRAPPER`` says what).
  ``serve._ingress`` gives each head its own paths and ports.
- Every replica's inter-deployment gRPC server binds ``[::]`` (``bind_replica_grpc_to_node_ip``).
- Serve's per-request latency histograms cost the node's metrics agent a third of a core under
  load (``cap_serve_latency_samples``).

Ray is imported inside the functions here: the CLI and the SDK import modules that import this
one, and must not load Ray.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import random
import shlex
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

from dlplatform.errors import BackendUnavailable

RAY_SERIES = "2.60"
"""The Ray release series (``major.minor``) whose internals this module was written against."""

_MARK = "_dlp_patched"
_ABSENT = object()


class RayPatchError(RuntimeError):
    """A Ray internal the platform patches or relies on is missing or changed: this Ray is not
    the version the platform was built against."""


class RayVersionWarning(UserWarning):
    """The installed Ray is not the series the platform was written for, or lacks an internal
    whose feature then degrades."""


@dataclass(frozen=True)
class Internal:
    """A private name in Ray that the platform uses or replaces.

    Args:
        module: the module holding it, e.g. ``ray.serve._private.replica``.
        path: its dotted path in the module (``name`` or ``Class.attribute``).
        uses: names Ray's code in ``module`` (in the class, for a method or a class) must still
            reference: the patched name itself where Ray calls it through a module global, and
            the attributes the platform reads.
        why: what the platform needs it for (quoted in every error).
    """

    module: str
    path: str
    why: str
    uses: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.module}.{self.path}"


# --- the declared internals ------------------------------------------------------------------

_REPLICA = "ray.serve._private.replica"
_SERVE_CONSTANTS = "ray.serve._private.constants"
_RAY_CONSTANTS = "ray._private.ray_constants"

REPLICA_GRPC_BIND = Internal(
    _REPLICA,
    "add_port_to_grpc_server",
    uses=("add_port_to_grpc_server",),  # Ray calls it through this module global
    why="binding each replica's gRPC server to the node's address, not every interface",
)
SERVE_LATENCY_REPORT = Internal(
    _REPLICA,
    "ReplicaMetricsManager._report_cached_metrics",
    uses=(
        "_report_cached_metrics",
        "_cached_metrics_interval_s",
        "_cached_latencies",
        "_cached_ingress_processing_latencies",
    ),
    why="sampling Serve's per-request latency histograms (cap_serve_latency_samples)",
)
REPLICA_PATCHES = (REPLICA_GRPC_BIND, SERVE_LATENCY_REPORT)
"""What every platform replica patches at start (``serve._ingress.prepare_replica_process``)."""

AUTH_CONFIG = Internal(
    "ray._raylet",
    "Config.initialize",
    why="re-reading Ray's auth mode after the platform sets RAY_AUTH_MODE in-process",
)
AUTH_TOKEN_CACHE = Internal(
    "ray._raylet",
    "AuthenticationTokenLoader.reset_cache",
    why="re-reading Ray's auth token after the platform sets RAY_AUTH_TOKEN_PATH in-process",
)
AUTH_TOKEN_LOADER = Internal(
    "ray._raylet",
    "AuthenticationTokenLoader.instance",
    why="re-reading Ray's auth token after the platform sets RAY_AUTH_TOKEN_PATH in-process",
)
LOOPBACK_SWITCH = Internal(
    _RAY_CONSTANTS,
    "ENABLE_RAY_CLUSTER",
    why="a driver resolving its node address as the loopback head does (read once at import)",
)
SERVE_CONTROLLER_NAME = Internal(
    _SERVE_CONSTANTS, "SERVE_CONTROLLER_NAME", why="finding the running Serve's HTTP port"
)
SERVE_NAMESPACE = Internal(
    _SERVE_CONSTANTS, "SERVE_NAMESPACE", why="finding the running Serve's HTTP port"
)
DASHBOARD_ADDRESS = Internal(
    _RAY_CONSTANTS, "DASHBOARD_ADDRESS", why="finding the Jobs API (the Ray CLI reads it so)"
)
DASHBOARD_KV_NAMESPACE = Internal(
    _RAY_CONSTANTS, "KV_NAMESPACE_DASHBOARD", why="finding the Jobs API (the Ray CLI reads it so)"
)
INTERNAL_KV_GET = Internal(
    "ray.experimental.internal_kv",
    "_internal_kv_get",
    why="finding the Jobs API (the Ray CLI reads it so)",
)
CORE = (
    *REPLICA_PATCHES,
    AUTH_CONFIG,
    AUTH_TOKEN_LOADER,
    AUTH_TOKEN_CACHE,
    LOOPBACK_SWITCH,
    SERVE_CONTROLLER_NAME,
    SERVE_NAMESPACE,
    DASHBOARD_ADDRESS,
    DASHBOARD_KV_NAMESPACE,
    INTERNAL_KV_GET,
)
"""What a platform head cannot run without: ``dlp up`` refuses a Ray that lacks one."""

SERVE_GLOBAL_CLIENT = Internal(
    "ray.serve.context",
    "_get_global_client",
    why="dropping a closed handle from Serve's handle cache (forget_serve_handle)",
)
SERVE_HANDLE_CACHE = Internal(
    "ray.serve._private.client",
    "ServeControllerClient",
    uses=("handle_cache",),
    why="dropping a closed handle from Serve's handle cache (forget_serve_handle)",
)
RAY_UP_PREPARE = Internal(
    "ray.autoscaler._private.util",
    "prepare_config",
    why="validating a `ray up` cluster config offline (ray_up_config)",
)
RAY_UP_VALIDATE = Internal(
    "ray.autoscaler._private.util",
    "validate_config",
    why="validating a `ray up` cluster config offline (ray_up_config)",
)
RAY_UP_BOOTSTRAP = Internal(
    "ray.autoscaler._private.commands",
    "_bootstrap_config",
    why="validating a local-provider `ray up` config offline (ray_up_config)",
)
OPTIONAL = (
    SERVE_GLOBAL_CLIENT,
    SERVE_HANDLE_CACHE,
    RAY_UP_PREPARE,
    RAY_UP_VALIDATE,
    RAY_UP_BOOTSTRAP,
)
"""Names whose feature degrades without them: a warning at start, an error only on use."""

HAPROXY_TEMPLATE = Internal(
    "ray.serve._private.haproxy_templates",
    "HAPROXY_CONFIG_TEMPLATE",
    why="knowing every listener of Serve's HAProxy config (the wrapper moves them to loopback)",
)
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
"""Serve's settings ``serve._ingress.fast_ingress_env`` sets per head (Serve 2.60 reads each
once, into the constant of the same name in ``ray.serve._private.constants``)."""

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


# --- checks ----------------------------------------------------------------------------------


def problems(internal: Internal) -> list[str]:
    """What is missing in the installed Ray for ``internal`` to work (empty: nothing)."""
    try:
        module = importlib.import_module(internal.module)
    except ImportError as exc:
        return [f"{internal}: module {internal.module} cannot be imported ({exc})"]
    owner, name = _owner(module, internal.path)
    if owner is None or getattr(owner, name, _ABSENT) is _ABSENT:
        return [f"{internal} is missing ({internal.why})"]
    if not internal.uses:
        return []
    found = getattr(owner, name)
    if inspect.isclass(found):
        scope: Any = found  # a class: the code of its own methods
    elif inspect.isclass(owner):
        scope = owner  # a method: the code of its class
    else:
        scope = module  # a module-level name: the module's own functions and classes
    used = _referenced_names(scope, module.__name__)
    absent = [n for n in internal.uses if n not in used]
    if absent:
        where = getattr(scope, "__qualname__", None) or module.__name__
        return [f"{internal}: {where} no longer uses {', '.join(absent)} ({internal.why})"]
    return []


def fast_ingress_internals() -> tuple[Internal, ...]:
    """What Serve's fast ingress needs to stay private: the settings ``SERVE_HEAD_ENV`` and
    ``serve._ingress.fast_ingress_env`` set, and the config template the wrapper rewrites."""
    # not at module level: `dlp status` imports this module, and serve.spec loads the records
    from dlplatform.serve.spec import SERVE_HEAD_ENV

    settings = (
        Internal(_SERVE_CONSTANTS, name, why="the fast ingress sets it")
        for name in (*SERVE_HEAD_ENV, *HAPROXY_ENV)
    )
    return (HAPROXY_TEMPLATE, *settings)


def replica_patch_problems() -> list[str]:
    """What the installed Ray lacks for the patches every replica applies (empty: nothing)."""
    return [p for internal in REPLICA_PATCHES for p in problems(internal)]


def fast_ingress_problems() -> list[str]:
    """What the installed Ray lacks for the fast ingress to stay private (empty: nothing): the
    settings ``fast_ingress_env`` sets, and the HAProxy listeners the wrapper knows."""
    found = [p for internal in fast_ingress_internals() for p in problems(internal)]
    if problems(HAPROXY_TEMPLATE):
        return found
    template = str(_resolve(HAPROXY_TEMPLATE))
    binds = {ln.strip() for ln in template.splitlines() if ln.strip().startswith("bind ")}
    if not binds:
        found.append("Serve's HAProxy config template (HAPROXY_CONFIG_TEMPLATE) has no listener")
    found += [
        f"Serve's HAProxy config has a listener the loopback wrapper does not know: {b!r}"
        for b in sorted(binds - HAPROXY_BINDS)
    ]
    return found


def check_installed_ray(*, fast_ingress: bool) -> None:
    """Check the installed Ray before a head starts: its version against ``RAY_SERIES`` (a
    warning), then every private name the platform uses (an error for those it cannot run
    without, a warning for those whose feature degrades).

    Raises:
        BackendUnavailable: a ``CORE`` name, or with ``fast_ingress`` a fast-ingress one,
            is missing or changed; the message lists them and what to do.
    """
    import ray  # not at module level: the CLI imports this module and must not load Ray

    version = str(ray.__version__)
    if version.split(".")[:2] != RAY_SERIES.split("."):
        warnings.warn(
            RayVersionWarning(
                f"Ray {version} is installed; the platform was written for Ray {RAY_SERIES}.x "
                "and relies on some of its private internals. They were checked and are "
                "present, but their behaviour may differ: install the Ray version pinned in "
                "pyproject.toml."
            ),
            stacklevel=2,
        )
    found = [p for internal in CORE for p in problems(internal)]
    if found:
        raise BackendUnavailable(
            f"Ray {version} lacks internals the platform relies on: {'; '.join(found)}. "
            "Install the Ray version pinned in pyproject.toml."
        )
    found = fast_ingress_problems() if fast_ingress else []
    if found:
        raise BackendUnavailable(
            f"Ray {version} lacks Serve internals the fast ingress relies on: "
            f"{'; '.join(found)}. Set DLP_FAST_INGRESS=false to start with Serve's default "
            "proxy, or install the Ray version pinned in pyproject.toml."
        )
    found = [p for internal in OPTIONAL for p in problems(internal)]
    if found:
        warnings.warn(
            RayVersionWarning(
                f"Ray {version} lacks internals some platform features use; those features "
                f"will fail or be skipped: {'; '.join(found)}."
            ),
            stacklevel=2,
        )


# --- the functions the platform calls --------------------------------------------------------


def reload_auth_config() -> None:
    """Make this process's Ray read its auth mode and token again from the environment (Ray
    caches both per process)."""
    _resolve(AUTH_CONFIG)("")
    _resolve(AUTH_TOKEN_LOADER)().reset_cache()


def resolve_node_address_as_loopback_head() -> None:
    """Make this driver resolve its node address as a head started with
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` does: Ray reads that switch once, at import, into
    ``ray_constants.ENABLE_RAY_CLUSTER`` (the caller sets the variable as well)."""
    _resolve(LOOPBACK_SWITCH)  # raises when Ray no longer has it: setting it would do nothing
    setattr(importlib.import_module(LOOPBACK_SWITCH.module), LOOPBACK_SWITCH.path, False)


def serve_controller() -> Any | None:
    """The running Serve controller's actor handle, or None when Serve is not running."""
    import ray  # not at module level: the CLI imports this module and must not load Ray

    try:
        return ray.get_actor(_resolve(SERVE_CONTROLLER_NAME), namespace=_resolve(SERVE_NAMESPACE))
    except ValueError:
        return None


def dashboard_address() -> str | None:
    """The dashboard's URL (``http://host:port``) as the connected cluster's GCS records its
    address (None: no dashboard): where the Jobs and state APIs answer."""
    value = _resolve(INTERNAL_KV_GET)(
        _resolve(DASHBOARD_ADDRESS), namespace=_resolve(DASHBOARD_KV_NAMESPACE)
    )
    if not value:
        return None
    address = value.decode() if isinstance(value, bytes) else str(value)
    return address if "://" in address else f"http://{address}"


def forget_serve_handle(handle: object) -> None:
    """Drop ``handle`` from Serve's handle cache in this process (after ``shutdown_async``: a
    closed handle bound to a finished event loop must not be handed out again)."""
    cache = _resolve(SERVE_GLOBAL_CLIENT)().handle_cache
    for key in [k for k, v in cache.items() if v is handle]:
        del cache[key]


def ray_up_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` as ``ray up`` would use it: prepared and validated by Ray's autoscaler, and
    bootstrapped when its provider is ``local`` (no cloud call). ``config`` is left as it was
    (Ray's functions fill in what they read). Raises whatever Ray raises."""
    prepared: dict[str, Any] = _resolve(RAY_UP_PREPARE)(copy.deepcopy(config))
    _resolve(RAY_UP_VALIDATE)(prepared)
    if prepared.get("provider", {}).get("type") == "local":
        bootstrap = _resolve(RAY_UP_BOOTSTRAP)
        bootstrapped: dict[str, Any] = bootstrap(copy.deepcopy(config), no_config_cache=True)
        return bootstrapped
    return prepared


# --- patches of Serve ------------------------------------------------------------------------


def patch_once(internal: Internal, wrap: Callable[[Any], Any]) -> None:
    """Replace ``internal`` (a callable) with ``wrap(original)``, once per process.

    Raises:
        RayPatchError: the target is missing, not callable, or Ray's code around it changed.
    """
    found = problems(internal)
    owner, name = _owner(importlib.import_module(internal.module), internal.path)
    original = getattr(owner, name, None) if owner is not None else None
    if not found and not callable(original):
        found = [f"{internal} is not callable ({internal.why})"]
    if found:
        import ray  # only for the message; Ray is loaded already when a replica patches

        raise RayPatchError(
            f"Ray {ray.__version__} differs from the Ray Serve {RAY_SERIES} internals the "
            f"platform patches: {'; '.join(found)}. Install the Ray version in pyproject.toml."
        )
    if getattr(original, _MARK, False):
        return
    patched = wrap(original)
    setattr(patched, _MARK, True)
    setattr(owner, name, patched)


def bind_replica_grpc_to_node_ip() -> None:
    """Make this process's Serve replica open its inter-deployment gRPC server on the node's
    address instead of every interface.

    Ray 2.60 binds that server to ``[::]:0`` in every replica (the gateway's and each model's),
    while callers reach it at ``<node ip>:<port>``; on a machine with an outward interface any
    host could then call the replica directly, past the gateway's tokens. Called from the
    platform's replica constructors: Serve starts that server after ``__init__``.

    Raises:
        RayPatchError: Ray's internals differ from 2.60's (``REPLICA_GRPC_BIND``).
    """

    def wrap(original: Any) -> Any:
        def add_port(server: object, address: str) -> int:
            if address.startswith("[::]:"):
                import ray.util  # loaded already: this runs inside a Serve replica

                ip = ray.util.get_node_ip_address()
                host = f"[{ip}]" if ":" in ip else ip
                address = f"{host}:{address[len('[::]:') :]}"
            return int(original(server, address))

        return add_port

    patch_once(REPLICA_GRPC_BIND, wrap)


def cap_serve_latency_samples(per_second: int) -> None:
    """Give Serve's own per-request latency histograms of this replica process a sample cap: at
    most ``per_second`` observations a second per series.

    Ray 2.60's metrics agent turns every histogram observation of every process back into one
    OpenTelemetry ``record`` call (``record_histogram_aggregated_batch`` loops over each bucket's
    count). A replica records two per request (processing and ingress latency), so at 3,000
    requests a second the node's agent spent a third of a core on them, on a machine whose other
    core the replica needs. Serve's request counters stay exact; only its latency histograms are
    sampled (uniformly, so their quantiles stay unbiased; their ``_count`` undercounts).

    Raises:
        RayPatchError: Ray's internals differ from 2.60's (``SERVE_LATENCY_REPORT``).
    """

    def wrap(original: Any) -> Any:
        def report(self: Any) -> None:
            interval_s = float(getattr(self, "_cached_metrics_interval_s", 0) or 0)
            limit = max(1, round(per_second * interval_s))
            for pending in _latency_buffers(self):
                if len(pending) > limit:
                    kept = random.sample(list(pending), limit)
                    pending.clear()
                    pending.extend(kept)
            original(self)

        return report

    patch_once(SERVE_LATENCY_REPORT, wrap)


def _latency_buffers(manager: Any) -> list[Any]:
    """The manager's pending latency samples: ``{route: deque}`` and, per protocol,
    ``{tags: list}`` (``SERVE_LATENCY_REPORT`` checks that Ray still keeps both)."""
    found: list[Any] = []
    per_route = getattr(manager, "_cached_latencies", None)
    if isinstance(per_route, dict):
        found.extend(per_route.values())
    per_protocol = getattr(manager, "_cached_ingress_processing_latencies", None)
    if isinstance(per_protocol, dict):
        for per_tags in per_protocol.values():
            if isinstance(per_tags, dict):
                found.extend(per_tags.values())
    return [buf for buf in found if isinstance(buf, (list, deque))]


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


def write_wrapper(
    directory: Path, binary: str, *, frontend: str | None = None, api_port: int | None = None
) -> Path:
    """The script Serve runs instead of HAProxy: it rewrites the config Serve generated from
    its template (``HAPROXY_BINDS``), then runs ``binary``.

    ``frontend`` (``serve._ingress.frontend_bind``'s answer) and ``api_port``: where the HTTP
    frontend on that port listens instead of loopback.
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


# --- helpers ---------------------------------------------------------------------------------


def _resolve(internal: Internal) -> Any:
    """The object ``internal`` names in the installed Ray.

    Raises:
        RayPatchError: it is missing (``check_installed_ray`` says so at start).
    """
    found = problems(internal)
    if found:
        raise RayPatchError("; ".join(found))
    owner, name = _owner(importlib.import_module(internal.module), internal.path)
    return getattr(owner, name)


def _owner(module: ModuleType, path: str) -> tuple[Any, str]:
    """The object holding the last name of ``path``, and that name (owner None: not found)."""
    *parents, name = path.split(".")
    owner: Any = module
    for part in parents:
        owner = getattr(owner, part, None)
        if owner is None:
            return None, name
    return owner, name


def _referenced_names(scope: Any, module_name: str) -> set[str]:
    """Every global and attribute name the code of ``scope`` (a class, or a module's own
    functions and classes) refers to, nested functions included."""
    names: set[str] = set()
    for code in _codes(scope, module_name):
        names.update(code.co_names)
    return names


def _codes(scope: Any, module_name: str) -> Iterator[CodeType]:
    for value in vars(scope).values():
        func = getattr(value, "__func__", value)  # staticmethod, classmethod
        func = getattr(func, "fget", func)  # property
        if isinstance(func, FunctionType) and func.__module__ == module_name:
            yield from _nested(func.__code__)
        elif inspect.ismodule(scope) and inspect.isclass(value) and value.__module__ == module_name:
            yield from _codes(value, module_name)  # a module's classes, not a class's own


def _nested(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _nested(const)
