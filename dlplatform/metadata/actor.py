"""The metadata actor: the one process in a cluster that owns the DuckDB file.

``connect_store(settings)`` finds the detached, named actor in the platform's namespace (or starts
it on the head node: ``dlplatform._actors``) and returns a ``StoreClient``, which implements the
store's interface (``store.STORE_METHODS``): every call is forwarded to the actor and returns the
same records, raising the same typed errors.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

import ray

from dlplatform._actors import ActorClient, answer, get_or_create, kill_named_actor
from dlplatform.config import Settings
from dlplatform.metadata.retention import RetentionSweeper
from dlplatform.metadata.store import STORE_METHODS, MetadataStore

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
        if method not in STORE_METHODS:
            return ("err", "invalid_input", f"metadata store has no method {method!r}")
        if method in _BLOCKING:  # would hold one of the few threads of ``call``
            return ("err", "invalid_input", f"call {method} through {_BLOCKING[method]}")
        run = lambda: getattr(self._store, method)(*args, **kwargs)  # noqa: E731
        # ValueError (pydantic's ValidationError included): bad input, not a crash
        return answer(run, what=f"metadata store {method}", bad_input=(ValueError,))

    def ping(self) -> str:
        return "ok"

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


_READ_PREFIXES = ("get_", "list_", "count_", "read_", "export_")
_READS = frozenset({"run_version", "token_epoch", "deployment_change", "upstream", "downstream",
                    "edges_of", "latest_metrics", "referenced_artifacts", "resolve_alias", "schema_version",
                    "user_for_token_hash", "ping", "search_runs", "latest_rollout",
                    "next_rollout_seq", "version_window", "usage_of", "list_usage"})  # fmt: skip
_IDEMPOTENT_WRITES = frozenset({"update_run", "update_user", "update_dataset", "touch_token",
                                "log_params", "put_deployment", "update_workflow_run",
                                "update_workflow_trigger"})  # fmt: skip
"""Writes that leave the same state however often they run (they set values)."""


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


P = ParamSpec("P")

if TYPE_CHECKING:  # the client declares the store's interface: a misspelt method is a type error
    _StoreInterface = MetadataStore
else:  # and has, at run time, one forwarding method per method of it (``_forwarder`` below)
    _StoreInterface = object


class StoreClient(ActorClient, _StoreInterface):
    """The ``MetadataStore`` interface (``STORE_METHODS``), each call forwarded to the metadata
    actor: same records, same typed errors. A call safe to repeat (``retry_safe``) waits out a
    restart of the actor."""

    what = "the metadata actor"

    @property
    def path(self) -> str:
        return str(self._get(self._handle.path.remote))

    def call_async(
        self,
        method: Callable[Concatenate[MetadataStore, P], Any],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> ray.ObjectRef:  # type: ignore[type-arg]
        """Fire ``method`` (e.g. ``MetadataStore.log_prediction_batch``) without waiting (metric
        batches, prediction logs); ``ray.get`` or await the ref for its reply (``unwrap`` it)."""
        return self._handle.call.remote(method.__name__, args, kwargs)

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


def _forwarder(method: str) -> Callable[..., Any]:
    def forward(self: StoreClient, *args: Any, **kwargs: Any) -> Any:
        send = lambda: self._handle.call.remote(method, args, kwargs)  # noqa: E731
        return self._ask(send, retry=retry_safe(method, kwargs))

    forward.__name__ = forward.__qualname__ = method
    forward.__doc__ = getattr(MetadataStore, method).__doc__
    return forward


for _method in STORE_METHODS:
    setattr(StoreClient, _method, _forwarder(_method))


def connect_store(settings: Settings, *, create: bool = True, timeout_s: float = 60) -> StoreClient:
    """The client of the platform's metadata actor (Ray must be initialised).

    Args:
        create: start the actor on the head node when it does not exist yet.

    Raises:
        BackendUnavailable: Ray is not initialised, or the actor cannot be found or started.
    """
    args = (str(settings.metadata_path), settings.prediction_input_retention_days)
    handle = get_or_create(MetadataActor, ACTOR_NAME, settings.namespace, args,
                           what="the metadata actor", create=create, timeout_s=timeout_s)  # fmt: skip
    return StoreClient(handle)


def stop_store(settings: Settings) -> bool:
    """Kill the metadata actor (its state is in the DuckDB file). Returns whether one ran."""
    return kill_named_actor(ACTOR_NAME, settings.namespace)
