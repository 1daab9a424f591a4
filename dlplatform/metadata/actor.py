"""The metadata actor: the one process in a cluster that owns the DuckDB file.

``connect_store(settings)`` finds the detached, named actor in the platform's namespace (or starts
it on the head node) and returns a ``StoreClient`` that has the same methods as ``MetadataStore``:
every call is forwarded to the actor and returns the same records, raising the same typed errors.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from typing import Any

import ray

from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable, DLPlatformError, error_for_code
from dlplatform.metadata.retention import RetentionSweeper
from dlplatform.metadata.store import MetadataStore

ACTOR_NAME = "dlp-metadata"
MAX_TOKEN_WATCHERS = 512
"""Threads of the actor that may wait in ``wait_token_epoch`` at once (one per model replica).
A thread is started only when a waiter needs it; a replica past this many waits its turn and,
until then, trusts no remembered token (``serve._auth.TokenCache``)."""
_WATCH = "token_watch"
MAX_RUN_WATCHERS = 256
"""Threads of the actor that may wait in ``wait_run_change`` at once (people following a job:
``dlp train submit --wait``, ``job.wait()``, the UI); a follower past this many waits its turn."""
_RUN_WATCH = "run_watch"
MAX_DEPLOYMENT_WATCHERS = 512
"""Threads of the actor that may wait in ``wait_deployment_change`` at once (one per dedicated
model replica, which follows its deployment's traffic split); one past this many waits its turn
and keeps the split it has until then."""
_DEPLOYMENT_WATCH = "deployment_watch"
_BLOCKING = {
    "wait_token_epoch": "watch_token_epoch",
    "wait_run_change": "watch_run",
    "wait_deployment_change": "watch_deployment",
}
"""Store methods that block, and the ``StoreClient`` method that calls each in its own group."""


class _MetadataActor:
    """Holds the ``MetadataStore``; threads are serialised by the store's own lock."""

    def __init__(self, path: str, prediction_input_retention_days: float = 0.0) -> None:
        self._store = MetadataStore(path)
        with contextlib.suppress(OSError):  # without it the gateway just asks every time
            self._store.publish_generation()  # for the gateway's read cache (``shared_reads``)
        self._retention = RetentionSweeper(self._store, prediction_input_retention_days).start()

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        if method.startswith("_") or not hasattr(MetadataStore, method):
            return ("err", "invalid_input", f"metadata store has no method {method!r}")
        if method in _BLOCKING:  # would hold one of the few threads of ``call``
            return ("err", "invalid_input", f"call {method} through {_BLOCKING[method]}")
        try:
            return ("ok", getattr(self._store, method)(*args, **kwargs))
        except DLPlatformError as exc:
            return ("err", exc.code, exc.message)
        except ValueError as exc:  # pydantic's ValidationError included: bad input, not a crash
            return ("err", "invalid_input", f"{method}: {exc}")
        except Exception as exc:  # a bug: report it typed instead of as "actor unavailable"
            return (
                "err",
                "internal",
                f"metadata store {method} failed: {type(exc).__name__}: {exc}",
            )

    def path(self) -> str:
        return self._store.path

    def pid(self) -> int:
        """This process's id (operators' and crash tests' handle on it)."""
        return os.getpid()

    @ray.method(concurrency_group=_WATCH)
    def wait_token_epoch(self, known: int | None, timeout_s: float) -> int:
        """``MetadataStore.wait_token_epoch``, in a thread group of its own: a long poll that
        tells each model replica of a revocation the moment the store makes it."""
        return self._store.wait_token_epoch(known, timeout_s)

    @ray.method(concurrency_group=_RUN_WATCH)
    def wait_run_change(self, run_id: str, known: int | None, timeout_s: float) -> int:
        """``MetadataStore.wait_run_change``, in a thread group of its own: a follower of a job
        learns of each new metric point or status the moment the store has it."""
        return self._store.wait_run_change(run_id, known, timeout_s)

    @ray.method(concurrency_group=_DEPLOYMENT_WATCH)
    def wait_deployment_change(self, name: str, known: int | None, timeout_s: float) -> int:
        """``MetadataStore.wait_deployment_change``, in a thread group of its own: a model
        replica learns of a new traffic split (a rollout's step, a rollback) the moment the
        store has it."""
        return self._store.wait_deployment_change(name, known, timeout_s)


MetadataActor = ray.remote(
    num_cpus=0,
    max_concurrency=16,
    max_restarts=-1,
    concurrency_groups={
        _WATCH: MAX_TOKEN_WATCHERS,
        _RUN_WATCH: MAX_RUN_WATCHERS,
        _DEPLOYMENT_WATCH: MAX_DEPLOYMENT_WATCHERS,
    },
)(_MetadataActor)


def _head_node_id() -> str | None:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    return None


def head_actor_options(name: str, namespace: str) -> dict[str, Any]:
    """Ray options of a platform actor: detached, named, pinned to the head node when known."""
    options: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "lifetime": "detached",
        "get_if_exists": True,
    }
    head = _head_node_id()
    if head is not None:
        options["scheduling_strategy"] = (
            ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(head, soft=False)
        )
    return options


FAILOVER_WAIT_S = 30.0
"""How long a call that is safe to repeat waits for a restarting metadata actor."""
FAILOVER_PAUSE_S = 0.1
_READ_PREFIXES = ("get_", "list_", "count_", "read_", "export_")
_READS = frozenset({"run_version", "token_epoch", "deployment_change", "upstream", "downstream",
                    "edges_of", "latest_metrics", "referenced_artifacts", "resolve_alias", "schema_version",
                    "user_for_token_hash", "ping", "search_runs", "latest_rollout",
                    "next_rollout_seq", "version_window", "usage_of", "list_usage"})  # fmt: skip
_IDEMPOTENT_WRITES = frozenset({"update_run", "update_user", "update_dataset", "touch_token",
                                "log_params", "put_deployment", "update_workflow_run",
                                "update_workflow_trigger"})  # fmt: skip
"""Writes that leave the same state however often they run (they set values)."""


def call_actor(
    send: Callable[[], Any], *, retry: bool, what: str, timeout_s: float | None = None
) -> Any:
    """``ray.get`` of the call ``send`` makes to a platform actor (metadata, scheduler, workflow
    manager: all restart by themselves). While one restarts, calls fail fast with
    ``ActorUnavailableError``; a call that is safe to repeat (``retry``) is sent again until the
    actor is back, for up to ``FAILOVER_WAIT_S``, so its caller sees a delay, not an error.

    Raises:
        BackendUnavailable: the actor is gone, did not come back in time, or failed a call that
            must not run twice; or ``timeout_s`` passed.
    """
    deadline: float | None = None
    while True:
        try:
            return ray.get(send(), timeout=timeout_s)
        except ray.exceptions.ActorUnavailableError as exc:
            if not retry:
                raise BackendUnavailable(f"{what} is unavailable: {exc}") from exc
            deadline = deadline or time.monotonic() + FAILOVER_WAIT_S
            if time.monotonic() > deadline:
                raise BackendUnavailable(
                    f"{what} did not come back within {FAILOVER_WAIT_S:g} s"
                ) from exc
            time.sleep(FAILOVER_PAUSE_S)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as exc:
            raise BackendUnavailable(f"{what} is unavailable: {exc}") from exc


def retry_safe(method: str, kwargs: dict[str, Any]) -> bool:
    """Whether a call may be sent again when the actor died while it was in flight (it may have
    run): reads, idempotent writes, and writes carrying an idempotency key (a repeat is answered
    with the first one's result or ``AlreadyExists``, which the services resolve)."""
    return (
        method.startswith(_READ_PREFIXES)
        or method in _READS
        or method in _IDEMPOTENT_WRITES
        or kwargs.get("idempotency_key") is not None
    )


class StoreClient:
    """A ``MetadataStore`` look-alike that forwards each call to the metadata actor."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_") or not callable(getattr(MetadataStore, method, None)):
            raise AttributeError(method)

        def forward(*args: Any, **kwargs: Any) -> Any:
            reply = self._call(method, args, kwargs)
            if reply[0] == "ok":
                return reply[1]
            raise error_for_code(reply[1], reply[2])

        forward.__name__ = method
        return forward

    def _call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return call_actor(
            lambda: self._handle.call.remote(method, args, kwargs),
            retry=retry_safe(method, kwargs), what="the metadata actor",
        )  # fmt: skip

    def call_async(self, method: str, *args: Any, **kwargs: Any) -> ray.ObjectRef:  # type: ignore[type-arg]
        """Fire a call without waiting (e.g. metric batches); ``ray.get`` the ref for its reply."""
        return self._handle.call.remote(method, args, kwargs)

    def watch_token_epoch(self, known: int | None, timeout_s: float) -> ray.ObjectRef:  # type: ignore[type-arg]
        """The store's token epoch once it differs from ``known`` (or after ``timeout_s``), as
        a ref to await: a replica keeps one such call pending to learn of revocations at once.
        A restart of the actor fails the pending call."""
        return self._handle.wait_token_epoch.remote(known, timeout_s)

    def watch_run(self, run_id: str, known: int | None, timeout_s: float) -> ray.ObjectRef:  # type: ignore[type-arg]
        """The run's change counter once it differs from ``known`` (or after ``timeout_s``), as
        a ref to await (``MetadataStore.wait_run_change``)."""
        return self._handle.wait_run_change.remote(run_id, known, timeout_s)

    def watch_deployment(self, name: str, known: int | None, timeout_s: float) -> ray.ObjectRef:  # type: ignore[type-arg]
        """The deployment's change counter once it differs from ``known`` (or after
        ``timeout_s``), as a ref to await (``MetadataStore.wait_deployment_change``)."""
        return self._handle.wait_deployment_change.remote(name, known, timeout_s)

    def __reduce__(self) -> tuple[Any, ...]:
        return (StoreClient, (self._handle,))


def connect_store(settings: Settings, *, create: bool = True, timeout_s: float = 60) -> StoreClient:
    """The client of the platform's metadata actor (Ray must be initialised).

    Args:
        create: start the actor on the head node when it does not exist yet.

    Raises:
        BackendUnavailable: Ray is not initialised, or the actor cannot be found or started.
    """
    if not ray.is_initialized():
        raise BackendUnavailable("Ray is not initialised; call dlplatform.connect() first")
    try:
        handle = ray.get_actor(ACTOR_NAME, namespace=settings.namespace)
    except ValueError:
        if not create:
            raise BackendUnavailable("the metadata actor is not running; run `dlp up`") from None
        options = head_actor_options(ACTOR_NAME, settings.namespace)
        handle = MetadataActor.options(**options).remote(
            str(settings.metadata_path), settings.prediction_input_retention_days
        )
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(handle.path.remote(), timeout=max(1.0, deadline - time.monotonic()))
            return StoreClient(handle)
        except ray.exceptions.GetTimeoutError as exc:
            raise BackendUnavailable("the metadata actor did not start in time") from exc
        except ray.exceptions.RayActorError as exc:
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"the metadata actor failed to start: {exc}") from exc
            time.sleep(0.5)


def stop_store(settings: Settings) -> bool:
    """Kill the metadata actor (its state is in the DuckDB file). Returns whether one ran."""
    return kill_named_actor(ACTOR_NAME, settings.namespace)


def kill_named_actor(name: str, namespace: str) -> bool:
    """Kill a platform actor for good (no restart). Returns whether one ran."""
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True
