"""The gateway's read cache: the hot reads answered from memory while nothing was written.

Each gateway request that reads metadata costs a call to the metadata actor (a few milliseconds
from a Serve replica, about half of a ``GET /datasets/NAME``). ``SharedReads`` wraps the actor's
``StoreClient`` and remembers the results of a few pure lookups (``CACHED``), each under the
write generation the actor published before the call was made (``_generation``). A remembered
result is used only while the generation is unchanged, and the actor moves it before any write
returns, so a read never misses a write that was acknowledged before the read began, whoever
made it (this gateway, a job, the scheduler, another replica).

The generation file is read from this machine's disk, so it is trusted only after the actor
confirmed its nonce (``get_generation_stamp``, asked again at most every ``CONFIRM_S``): a
gateway on another node than the actor, or an actor that publishes nothing, gets plain calls.
Errors (``NotFound``) are never remembered; lists come back as new lists.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlplatform.metadata._generation import SUFFIX, GenerationReader

CACHED = frozenset({"get_dataset", "list_datasets", "get_commit", "list_commits", "get_run",
                    "list_runs", "count_runs", "get_model", "list_models",
                    "list_model_versions", "resolve_alias", "get_metrics", "usage_of"})  # fmt: skip
"""Lookups whose answer depends on the database alone (no clock, no in-memory state)."""
MAX_ENTRIES = 2048
CONFIRM_S = 1.0


class SharedReads:
    """A ``StoreClient`` look-alike: ``CACHED`` reads from memory while valid, the rest passed
    through. ``database`` is the metadata file's path (the generation file lies beside it)."""

    def __init__(self, store: Any, database: str | Path) -> None:
        self._store = store
        self._reader = GenerationReader(f"{database}{SUFFIX}")
        self._entries: OrderedDict[Any, tuple[tuple[int, int], Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._confirmed: tuple[int, float] | None = None  # (nonce, when)
        self.hits = self.misses = 0

    def __getattr__(self, method: str) -> Any:
        target = getattr(self._store, method)
        if method not in CACHED:
            return target
        return lambda *args, **kwargs: self._read(method, target, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (SharedReads, (self._store, str(self._reader.path)[: -len(SUFFIX)]))

    def _read(
        self, method: str, call: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        stamp = self._stamp()
        key = (method, args, tuple(sorted(kwargs.items())))
        try:
            hash(key)
        except TypeError:  # a list argument
            stamp = None
        if stamp is not None:
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None and hit[0] == stamp:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return _fresh(hit[1])
        value = call(*args, **kwargs)  # taken under ``stamp``: a write since makes it stale
        if stamp is not None:
            with self._lock:
                self.misses += 1
                self._entries[key] = (stamp, value)
                self._entries.move_to_end(key)
                while len(self._entries) > MAX_ENTRIES:
                    self._entries.popitem(last=False)
        return _fresh(value)

    def _stamp(self) -> tuple[int, int] | None:
        """The file's (nonce, counter) if the live actor publishes it there, else None."""
        stamp = self._reader.stamp()
        if stamp is None:
            return None
        now = time.monotonic()
        confirmed = self._confirmed
        if confirmed is None or confirmed[0] != stamp[0] or now - confirmed[1] > CONFIRM_S:
            live = self._store.get_generation_stamp()
            if live is None or live[0] != stamp[0]:
                self._confirmed = None
                return None  # not the live actor's file: ask every time
            self._confirmed = (stamp[0], now)
            stamp = self._reader.stamp()
        return stamp


def _fresh(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
