"""Who may call a model endpoint: the replica's token check, remembered until a revocation.

A model replica answers a request in about 0.3 ms; asking the metadata actor about the token
costs about a millisecond more. So a replica remembers what ``access.authenticate`` and
``access.authorize`` (``predict``) answered about each token, and learns of every revocation at
once instead of after a TTL:

- The metadata store moves its *token epoch* whenever a credential loses power (a token revoked,
  a user disabled or given another role: ``MetadataStore.token_epoch``).
- Each replica keeps one long poll pending on the metadata actor
  (``StoreClient.watch_token_epoch``), answered the moment the epoch moves, else after
  ``WATCH_TIMEOUT_S``. No request waits for it: the request path reads one float and a dict.
- When the epoch moves the replica forgets every remembered answer; the next request with that
  token asks the store again. A revocation so reaches all replicas within the time of one actor
  reply (about a millisecond), without a store call per request.
- Remembered acceptances are used only while the poll is live (answered within its timeout plus
  a grace); a replica that lost it (actor restarting, too many watchers) asks the store on every
  request until it has it back: slower, never stale. ``TOKEN_TTL_S`` bounds an acceptance even
  then, and a token's own ``expires_at`` always does.

Why not the alternatives: a version check per request is a store round trip per request (the
cost this cache exists to avoid); a push from the revoking process cannot reach every replica
(Serve routes a call to one replica, and revocations start in the gateway, the training
scheduler and the workflow manager); a short TTL leaves a revoked token working for that long.

Accepted and refused tokens are remembered apart, each bounded and least recently used out, so
a flood of unknown tokens (which anyone can send) never pushes out the known ones. Keys are the
tokens' SHA-256 (``access.hash_token``): no secret stays in the replica's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar

from dlplatform.access import Permission, authenticate_token, authorize, hash_token
from dlplatform.errors import DLPlatformError, PermissionDenied, Unauthenticated
from dlplatform.metadata.records import utcnow

logger = logging.getLogger(__name__)

TOKEN_TTL_S = 300.0
"""Longest a replica trusts an accepted token without asking the store again. Revocations do
not wait for it (they arrive through the token epoch at once); it bounds what no revocation
reports, such as a run that ended without its token being revoked."""
REFUSAL_TTL_S = 5.0
"""How long a refused token is answered from memory (no store call, no second audit row)."""
WATCH_TIMEOUT_S = 30.0
"""How long one long poll for the token epoch waits on the metadata actor before it answers."""
WATCH_GRACE_S = 5.0
"""How late past its timeout a poll's answer may be before remembered acceptances stop counting."""
MAX_KNOWN_TOKENS = 10_000
MAX_REFUSED_TOKENS = 2_000
MISSING_TOKEN = "missing bearer token (Authorization: Bearer <token>)"

EpochWatch = Callable[[int | None, float], Awaitable[int]]
"""``watch(known, timeout_s)``: the token epoch once it differs from ``known``, else after
``timeout_s`` (``StoreClient.watch_token_epoch``, or ``MetadataStore.wait_token_epoch`` in a
thread)."""

K = TypeVar("K")
V = TypeVar("V")
_Refusal = tuple[float, type[DLPlatformError], str]  # until (monotonic), error class, message


class TokenCache:
    """``Authorization`` header → the name of a caller allowed to predict, remembered until a
    revocation (see the module docstring).

    Args:
        store: the metadata store (a ``StoreClient`` in a replica); called from a worker thread.
        watch: how to wait for the store's token epoch.
    """

    def __init__(
        self,
        store: Any,
        watch: EpochWatch,
        *,
        ttl_s: float = TOKEN_TTL_S,
        refusal_ttl_s: float = REFUSAL_TTL_S,
        watch_timeout_s: float = WATCH_TIMEOUT_S,
        max_known: int = MAX_KNOWN_TOKENS,
        max_refused: int = MAX_REFUSED_TOKENS,
    ) -> None:
        self._store = store
        self._watch = watch
        self._ttl_s = ttl_s
        self._refusal_ttl_s = refusal_ttl_s
        self._watch_timeout_s = watch_timeout_s
        self._max_known = max_known
        self._max_refused = max_refused
        self._known: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._refused: OrderedDict[tuple[str, str], _Refusal] = OrderedDict()
        self._generation = 0  # moves whenever a look-up under way may have been overtaken
        self._live_until = 0.0  # remembered acceptances count until then (monotonic)
        self._watcher: asyncio.Task[None] | None = None
        self.lookups = 0  # store look-ups made (tests, stats)

    @property
    def is_live(self) -> bool:
        """Whether the epoch poll is live, so that remembered acceptances are used."""
        return time.monotonic() < self._live_until

    async def principal(self, header: str | None, target: str) -> str:
        """The name of the caller allowed to predict on ``target``.

        Raises:
            Unauthenticated: no bearer token; an unknown, revoked or expired token; a disabled
                user.
            PermissionDenied: the role lacks ``predict``.
            BackendUnavailable: the metadata actor cannot be reached (not remembered).
        """
        self._start_watching()
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(MISSING_TOKEN)
        key = hash_token(token)
        now = time.monotonic()
        known = self._known.get(key)
        if known is not None and known[0] > now and now < self._live_until:
            self._known.move_to_end(key)
            return known[1]
        refused = self._refused.get((key, target))
        if refused is not None and refused[0] > now:
            self._refused.move_to_end((key, target))
            raise refused[1](refused[2])
        generation = self._generation
        self.lookups += 1
        try:
            name, keep_s = await asyncio.to_thread(self._check, token, target)
        except (Unauthenticated, PermissionDenied) as exc:
            entry = (now + self._refusal_ttl_s, type(exc), exc.message)
            _remember(self._refused, (key, target), entry, self._max_refused)
            raise
        # Remember only what no revocation can have overtaken: a look-up that began before the
        # epoch moved (or before the poll's first answer) may have read a token since revoked.
        if generation == self._generation and self.is_live and keep_s > 0:
            _remember(self._known, key, (now + min(self._ttl_s, keep_s), name), self._max_known)
        return name

    def _check(self, token: str, target: str) -> tuple[str, float]:
        """In a worker thread: the store's answer, and how long it may be remembered."""
        principal, info = authenticate_token(self._store, token)
        authorize(self._store, principal, Permission.PREDICT, target)
        return principal.name, _seconds_until(info.expires_at)

    def forget(self) -> None:
        """Forget every remembered answer (the token epoch moved, or its poll failed)."""
        self._known.clear()
        self._refused.clear()
        self._generation += 1

    def close(self) -> None:
        """Stop the epoch poll (tests; a replica keeps it for its lifetime)."""
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher = None

    def _start_watching(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.get_running_loop().create_task(self._watch_epoch())

    async def _watch_epoch(self) -> None:
        """Keep one epoch poll pending; forget everything when the epoch moves or a poll fails."""
        known: int | None = None
        failures = 0
        while True:
            try:
                epoch = await self._watch(known, self._watch_timeout_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if failures == 0:
                    logger.warning(
                        "lost the token epoch poll (%s); asking the store on every request "
                        "until it is back",
                        exc,
                    )
                self.forget()
                self._live_until = 0.0
                known = None
                failures += 1
                await asyncio.sleep(min(5.0, 0.05 * 2**failures))
                continue
            if failures:
                logger.warning("the token epoch poll is back")
                failures = 0
            if known is None:  # first answer: look-ups begun before it are not remembered
                self._generation += 1
            elif epoch != known:
                self.forget()
            known = epoch
            self._live_until = time.monotonic() + self._watch_timeout_s + WATCH_GRACE_S


def _remember(cache: OrderedDict[K, V], key: K, value: V, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        cache.popitem(last=False)


def _seconds_until(expires_at: datetime | None) -> float:
    if expires_at is None:
        return float("inf")
    return (expires_at - utcnow()).total_seconds()
