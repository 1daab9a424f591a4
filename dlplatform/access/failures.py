"""Failed authentications per source (client address): what to audit, and when to refuse.

Why: every request with a bogus token used to write one audit row through the single metadata
actor (300 rows in 2.1 s from one client, measured live), so a client could fill the audit log
and slow every other caller. ``AuthFailures`` keeps one small record per source in memory:

- the first failure from a source in a window of ``window_s`` seconds is audited as before
  (with the token's id when it has our shape, and the source);
- later failures in that window are only counted; they are written as one row,
  ``N failed authentications from X in the last W s``, when the window has closed (checked on
  later requests) or on the next failure after it;
- a source with ``max_failures`` failures in one window is blocked for ``block_s`` seconds: its
  requests are answered 429 before any token lookup, and their number goes into the next row.

It holds no store and writes nothing itself: ``failed`` says whether to audit a failure on its
own, ``take_reports`` hands back the aggregated rows that are due. ``access.AuthCache`` (the
gateway's authenticator) does the writing. The state is per process: each gateway replica counts
its own requests. The source is the TCP peer the gateway sees; behind a proxy that does not
keep client addresses, every client shares one source.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from dlplatform.errors import TooManyRequests

WINDOW_S = 60.0
MAX_FAILURES = 20
BLOCK_S = 60.0
MAX_SOURCES = 10_000
_SWEEP_EVERY_S = 1.0

Observe = Callable[[str], None]
"""Called with ``"refused"`` (a presented token was refused: 401) or ``"throttled"`` (a blocked
source was answered 429), e.g. to count them as a Prometheus series."""


@dataclass(frozen=True)
class FailureReport:
    """One aggregated audit row: what a source did since its first audited failure."""

    source: str
    failures: int
    throttled: int
    window_s: float
    latest_reason: str
    blocked_for_s: float | None

    @property
    def detail(self) -> str:
        parts = []
        if self.failures:
            parts.append(
                f"{self.failures} failed authentications from {self.source} in the last "
                f"{self.window_s:g} s (latest: {self.latest_reason})"
            )
        if self.throttled:
            parts.append(f"{self.throttled} requests from {self.source} refused with 429")
        if self.blocked_for_s is not None:
            parts.append(f"{self.source} blocked for {self.blocked_for_s:g} s")
        return "; ".join(parts)


@dataclass
class _Source:
    window_start: float
    failures: int = 0  # in this window, the audited first one included
    unreported: int = 0  # counted in this window, not yet in a report
    throttled: int = 0  # 429 answers not yet in a report
    blocked_until: float = -math.inf
    latest: str = ""


class AuthFailures:
    """Per-source failure windows, the block list and the counters (thread-safe).

    Args:
        observe: called once per refused or throttled request (outside the lock).
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(
        self,
        *,
        window_s: float = WINDOW_S,
        max_failures: int = MAX_FAILURES,
        block_s: float = BLOCK_S,
        max_sources: int = MAX_SOURCES,
        observe: Observe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window_s <= 0 or block_s < 0 or max_failures < 1 or max_sources < 1:
            raise ValueError("window_s and max_failures must be positive, block_s not negative")
        self.window_s = window_s
        self.max_failures = max_failures
        self.block_s = block_s
        self._max_sources = max_sources
        self._observe = observe
        self._clock = clock
        self._lock = threading.Lock()
        self._sources: dict[str, _Source] = {}
        self._reports: list[FailureReport] = []
        self._next_sweep = -math.inf
        self.counts = {"refused": 0, "throttled": 0}
        """Totals of this process since start (what ``observe`` was told)."""

    def check(self, source: str) -> None:
        """Refuse a request from a blocked source before its token is looked up.

        Raises:
            TooManyRequests: ``source`` is blocked; the message says for how long.
        """
        with self._lock:
            state = self._sources.get(source)
            now = self._clock()
            if state is None or state.blocked_until <= now:
                return
            state.throttled += 1
            self.counts["throttled"] += 1
            wait_s = max(1, math.ceil(state.blocked_until - now))
        if self._observe is not None:
            self._observe("throttled")
        raise TooManyRequests(
            f"too many failed authentications from {source}: try again in {wait_s} s",
            retry_after_s=wait_s,
        )

    def failed(self, source: str, reason: str) -> bool:
        """Count a refused token from ``source``; True when this failure is to be audited on
        its own (the first of a window), False when it goes into an aggregated row."""
        with self._lock:
            now = self._clock()
            state = self._sources.get(source)
            alone = state is None or now - state.window_start >= self.window_s
            if state is None:
                self._make_room(now)
                state = self._sources[source] = _Source(window_start=now)
            elif alone:
                self._close(source, state)  # the window that ended: its row is due now
                state.window_start, state.failures = now, 0
            state.failures += 1
            state.latest = reason
            if not alone:
                state.unreported += 1
            if state.failures >= self.max_failures and state.blocked_until <= now:
                state.blocked_until = now + self.block_s
                self._close(source, state, blocked_for_s=self.block_s)
                state.window_start = -math.inf  # after the block, the next failure starts anew
            self.counts["refused"] += 1
        if self._observe is not None:
            self._observe("refused")
        return alone

    def take_reports(self) -> list[FailureReport]:
        """The aggregated rows that are due (each is handed out once): windows that closed with
        failures counted but not audited, blocks begun, 429 answers given. Cheap to call on
        every request: closed windows are looked for at most once a second."""
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._next_sweep = now + _SWEEP_EVERY_S
                self._sweep(now)
            reports, self._reports = self._reports, []
        return reports

    def _sweep(self, now: float) -> None:
        for source, state in list(self._sources.items()):
            if now - state.window_start < self.window_s or state.blocked_until > now:
                continue  # still counting, or blocked: its 429s are reported when it ends
            self._close(source, state)
            del self._sources[source]

    def _close(self, source: str, state: _Source, blocked_for_s: float | None = None) -> None:
        if state.unreported or state.throttled or blocked_for_s is not None:
            self._reports.append(
                FailureReport(
                    source=source,
                    failures=state.failures if state.unreported else 0,
                    throttled=state.throttled,
                    window_s=self.window_s,
                    latest_reason=state.latest,
                    blocked_for_s=blocked_for_s,
                )
            )
        state.unreported = state.throttled = 0

    def _make_room(self, now: float) -> None:
        if len(self._sources) < self._max_sources:
            return
        self._sweep(now)
        while len(self._sources) >= self._max_sources:  # many live sources: drop the oldest
            # ... that is not blocked: evicting a blocked source would lift its block
            source = min(
                self._sources,
                key=lambda s: (self._sources[s].blocked_until > now, self._sources[s].window_start),
            )
            self._close(source, self._sources.pop(source))
