"""A per-call metric API for training code, buffered and flushed in batches off the caller's path.

``log_metric(key, value, step)`` only appends to an in-memory buffer (about a microsecond). A
background thread sends the buffer to the store in one ``log_metric_batch`` call every
``flush_interval_s`` (default 1 s) and on ``close()``/``flush()``. If the process is killed, at most
the points of the last interval are lost; ``close()`` (or leaving the ``with`` block) loses nothing.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any


class MetricLogger:
    """Buffered metric logging for one process. Thread-safe.

    Args:
        store: a ``MetadataStore`` or the metadata actor's ``StoreClient``.
        run_id: default run of ``log_metric`` calls.
        flush_interval_s: the longest a point waits in the buffer.
        max_buffer: flush early when this many points are waiting.
    """

    def __init__(
        self, store: Any, run_id: str, *, flush_interval_s: float = 1.0, max_buffer: int = 50_000
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._interval = flush_interval_s
        self._max = max_buffer
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._cols: tuple[list[str], list[str], list[float], list[int], list[float]] = (
            [], [], [], [], [])  # fmt: skip
        self._wake = threading.Event()
        self._closed = False
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._loop, name="dlp-metric-flush", daemon=True)
        self._thread.start()

    def log_metric(
        self, key: str, value: float, step: int = 0, *, run_id: str | None = None
    ) -> None:
        """Buffer one point; returns at once."""
        if self._closed:
            raise RuntimeError("MetricLogger is closed")
        with self._lock:
            runs, keys, values, steps, stamps = self._cols
            runs.append(run_id or self._run_id)
            keys.append(key)
            values.append(float(value))
            steps.append(int(step))
            stamps.append(time.time())
            full = len(keys) >= self._max
        if full:
            self._wake.set()

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        for key, value in metrics.items():
            self.log_metric(key, value, step)

    def flush(self) -> int:
        """Send what is buffered now; returns the number of points sent."""
        with self._flush_lock:
            with self._lock:
                cols = self._cols
                self._cols = ([], [], [], [], [])
            if not cols[0]:
                return 0
            try:
                self._store.log_metric_batch(*cols)
            except Exception as exc:  # keep training alive; report on close
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return 0
            return len(cols[0])

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self._interval)
            self._wake.clear()
            self.flush()

    def close(self) -> None:
        """Flush everything and stop the background thread."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
