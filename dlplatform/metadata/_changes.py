"""Counters that followers wait on: the store moves one when something they follow changes.

The token epoch (model replicas forget remembered credentials) and each run's version (people
following a job) are such counters. They live in memory and start from a random base each time
the store is opened: a restarted store is never mistaken for the one before (whose waiters fail
anyway).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable

MAX_WAIT_S = 60.0
"""The longest one ``ChangeCounters.wait`` blocks."""


class ChangeCounters:
    """A counter per key, moved by ``bump``; ``wait`` answers as soon as a key's counter differs
    from what the caller knows. One instance per kind of follower: a bump wakes the waiters of
    its own instance only."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._base = secrets.randbits(40)
        self._counts: dict[str, int] = {}

    def _value(self, key: str) -> int:
        return self._base + self._counts.get(key, 0)

    def value(self, key: str) -> int:
        with self._changed:
            return self._value(key)

    def wait(self, key: str, known: int | None, timeout_s: float) -> int:
        """``value(key)`` as soon as it differs from ``known``, else after ``timeout_s`` (at most
        ``MAX_WAIT_S``). Blocks the calling thread."""
        timeout_s = min(max(float(timeout_s), 0.0), MAX_WAIT_S)
        with self._changed:
            self._changed.wait_for(lambda: self._value(key) != known, timeout_s)
            return self._value(key)

    def bump(self, keys: Iterable[str]) -> None:
        """Move the counters of ``keys`` (each once) and wake their waiters."""
        with self._changed:
            for key in set(keys):
                self._counts[key] = self._counts.get(key, 0) + 1
            self._changed.notify_all()
