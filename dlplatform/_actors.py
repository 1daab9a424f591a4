"""The one boundary to the platform's actors: metadata store, training scheduler, workflow manager,
rollout driver.

Each is a detached, named actor in the platform's namespace that Ray restarts after a crash
(``max_restarts=-1``). What they share lives here, once:

- ``get_or_create``: find the actor by name, or start it (pinned to the head node), and ping it;
- ``answer`` (actor side): run a call and reply ``("ok", value)`` or ``("err", code, message)``;
- ``call_actor`` / ``unwrap`` (caller side): ``ray.get`` that waits out a restart for calls that
  are safe to repeat, and the typed error (``errors.error_for_code``) an ``"err"`` reply stands for;
- ``ActorClient``: the base of each actor's typed client;
- ``kill_named_actor``: stop one for good.

Imports Ray, ``config`` and ``errors`` only; each actor's module imports this one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar

import ray

from dlplatform.errors import BackendUnavailable, DLPlatformError, error_for_code

Reply = tuple[Any, ...]
"""``("ok", value)`` or ``("err", code, message)``: how an actor answers a call that may fail."""

FAILOVER_WAIT_S = 30.0
"""How long a call that is safe to repeat waits for a restarting actor."""
FAILOVER_PAUSE_S = 0.1
START_WAIT_S = 60.0
"""How long ``get_or_create`` waits for a new (or restarting) actor to answer its ping."""
_START_PAUSE_S = 0.5

log = logging.getLogger(__name__)


# --- actor side ---------------------------------------------------------------------------------


def answer(
    fn: Callable[[], Any],
    *,
    what: str,
    bad_input: tuple[type[Exception], ...] = (),
) -> Reply:
    """Run ``fn`` in an actor and reply: its value, the code and message of the platform error it
    raised, ``invalid_input`` for ``bad_input`` exceptions, and ``internal`` (logged, with the
    cause) for any other exception: a bug is reported typed instead of as "actor unavailable"."""
    try:
        return ("ok", fn())
    except DLPlatformError as exc:
        return ("err", exc.code, exc.message)
    except bad_input as exc:
        return ("err", "invalid_input", f"{what}: {exc}")
    except Exception as exc:
        log.exception("%s failed", what)
        return ("err", "internal", f"{what} failed: {type(exc).__name__}: {exc}")


# --- caller side --------------------------------------------------------------------------------


def unwrap(reply: Reply) -> Any:
    """The value of an ``answer`` reply.

    Raises:
        DLPlatformError: the typed error the actor replied with.
    """
    if reply[0] == "ok":
        return reply[1]
    raise error_for_code(reply[1], reply[2])


def call_actor(
    send: Callable[[], Any], *, retry: bool, what: str, timeout_s: float | None = None
) -> Any:
    """``ray.get`` of the call ``send`` makes to a platform actor. While one restarts, calls fail
    fast with ``ActorUnavailableError``; a call that is safe to repeat (``retry``) is sent again
    until the actor is back, for up to ``FAILOVER_WAIT_S``, so its caller sees a delay, not an
    error.

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


def ping(handle: Any, *, what: str, timeout_s: float = START_WAIT_S) -> None:
    """Wait until the actor answers its ``ping``: one that is starting, or restarting after a
    crash or a failed start, is waited for up to ``timeout_s``.

    Raises:
        BackendUnavailable: it did not answer in time.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ray.get(handle.ping.remote(), timeout=max(1.0, deadline - time.monotonic()))
            return
        except ray.exceptions.GetTimeoutError as exc:
            raise BackendUnavailable(f"{what} did not start in time") from exc
        except ray.exceptions.RayActorError as exc:  # ActorUnavailableError included
            if time.monotonic() > deadline:
                raise BackendUnavailable(f"{what} failed to start: {exc}") from exc
            time.sleep(_START_PAUSE_S)


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


def _head_node_id() -> str | None:
    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return str(node["NodeID"])
    return None


def get_or_create(
    actor: Any,
    name: str,
    namespace: str,
    args: tuple[Any, ...] = (),
    *,
    what: str,
    create: bool = True,
    on_head: bool = True,
    wait: bool = True,
    timeout_s: float = START_WAIT_S,
) -> Any:
    """The handle of the named platform actor, started from ``actor`` (a ``ray.remote`` class)
    with ``args`` when missing, and pinged (``wait``) so that the call after this one finds it.

    Args:
        what: the actor in messages ("the training scheduler").
        create: start the actor when it does not exist yet.
        on_head: pin a new actor to the head node (``head_actor_options``).

    Raises:
        BackendUnavailable: Ray is not initialised; the actor is missing and ``create`` is False;
            or it does not answer within ``timeout_s``.
    """
    if not ray.is_initialized():
        raise BackendUnavailable(f"Ray is not initialised; {what} needs dlplatform.connect()")
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        if not create:
            raise BackendUnavailable(f"{what} is not running; run `dlp up`") from None
        if on_head:
            options = head_actor_options(name, namespace)
        else:
            options = {"name": name, "namespace": namespace, "lifetime": "detached",
                       "get_if_exists": True}  # fmt: skip
        handle = actor.options(**options).remote(*args)
    if wait:
        ping(handle, what=what, timeout_s=timeout_s)
    return handle


def kill_named_actor(name: str, namespace: str) -> bool:
    """Kill a platform actor for good (no restart). Returns whether one ran."""
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True


class ActorClient:
    """Base of a platform actor's typed client: one method per actor method, each a ``_get``
    (a plain reply) or an ``_ask`` (an ``answer`` reply, unwrapped into its typed error)."""

    what: ClassVar[str] = "the actor"

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def _get(
        self, send: Callable[[], Any], *, retry: bool = True, timeout_s: float | None = None
    ) -> Any:
        """The reply of the call ``send`` makes; ``retry``: it waits out a restart of the actor
        (the call is safe to repeat)."""
        return call_actor(send, retry=retry, what=self.what, timeout_s=timeout_s)

    def _ask(
        self, send: Callable[[], Any], *, retry: bool = True, timeout_s: float | None = None
    ) -> Any:
        """The value of the ``answer`` reply of the call ``send`` makes, or its typed error."""
        return unwrap(self._get(send, retry=retry, timeout_s=timeout_s))

    @property
    def handle(self) -> Any:
        """The actor's Ray handle (for calls that are awaited as refs)."""
        return self._handle

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._handle,))
