"""The prediction log of one replica: buffered on the request path, flushed in batches.

``record`` only appends a tuple to a list (no I/O, no JSON); a background asyncio task turns the
buffer into columns and sends them to the metadata actor's ``log_prediction_batch`` every
``flush_interval_s`` (or sooner when ``flush_rows`` are waiting). Inputs and outputs are kept for
a sampled share of requests (``sample_rate``); the request id, version, latency and error code (of
a request the replica failed to answer) always are. If the metadata actor is unreachable the
buffer is capped (oldest dropped, counted in ``dropped``), so serving never stalls on logging.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from dlplatform.metadata.store import MetadataStore

logger = logging.getLogger(__name__)

_Row = tuple[str, str, int, float, Any, Any, float, str]
"""request id, model, version, unix time, inputs, outputs, latency ms, error code ("" answered)"""


class PredictionLog:
    """Buffer of predictions of one deployment, flushed off the request path."""

    def __init__(
        self,
        store: Any,
        deployment: str,
        *,
        sample_rate: float = 1.0,
        flush_interval_s: float = 1.0,
        flush_rows: int = 5_000,
        max_buffer: int = 200_000,
    ) -> None:
        self._store = store
        self.deployment = deployment
        self.sample_rate = sample_rate
        self.flush_interval_s = flush_interval_s
        self.flush_rows = flush_rows
        self.max_buffer = max_buffer
        self._buffer: list[_Row] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.flushed = 0
        self.dropped = 0
        self.errors = 0

    def record(
        self,
        request_id: str,
        model: str,
        version: int,
        inputs: Any,
        outputs: Any,
        latency_ms: float,
        error: str = "",
    ) -> None:
        """Queue one prediction (cheap: no I/O, no serialisation); ``error``: the code of a
        request the replica failed to answer (its error rate is judged by ``serve.rollout``)."""
        keep = self.sample_rate >= 1.0 or random.random() < self.sample_rate
        self._buffer.append(
            (
                request_id,
                model,
                version,
                time.time(),
                inputs if keep else None,
                outputs if keep else None,
                latency_ms,
                error,
            )
        )
        if len(self._buffer) >= self.flush_rows:
            self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Send what is buffered; returns the rows written (0 on error, rows kept for retry)."""
        if not self._buffer:
            return 0
        rows, self._buffer = self._buffer, []
        columns = await _columns_in_slices(rows)
        try:
            reply = await self._store.call_async(
                MetadataStore.log_prediction_batch, self.deployment, *columns
            )
        except Exception as exc:  # the actor is down: keep the rows, bounded
            reply = ("err", "unavailable", str(exc))
        if reply[0] != "ok":
            self.errors += 1
            logger.warning("prediction log flush failed: %s", reply[2])
            self._buffer = _as_text(columns) + self._buffer  # kept as JSON text: compact
            excess = len(self._buffer) - self.max_buffer
            if excess > 0:
                del self._buffer[:excess]
                self.dropped += excess
            return 0
        self.flushed += len(rows)
        return len(rows)

    async def close(self) -> None:
        """Stop the flusher and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self.flush()


class RawJSON(str):
    """JSON text that is logged as it is: the client's own encoding of the value."""


def raw_inputs(body: bytes, payload: dict[str, Any]) -> RawJSON | None:
    """The text of ``inputs`` inside a request body ``{"inputs": ...}``, without re-encoding it.

    Encoding a row of floats back to JSON costs more than parsing it did (a sixth of a replica's
    CPU at full load). When ``inputs`` is the body's only key and the body has no escape (so no
    key can be spelled another way), the text between its colon and the closing brace is
    exactly the value. Anything else gives None and is encoded again.
    """
    if len(payload) != 1 or b"\\" in body or body.count(b'"inputs"') != 1:
        return None
    text = body.strip()
    if not (text.startswith(b"{") and text.endswith(b"}")):
        return None
    head = text[1:].lstrip()
    if not head.startswith(b'"inputs"'):
        return None
    rest = head[len(b'"inputs"') :].lstrip()
    if not rest.startswith(b":"):
        return None
    try:
        return RawJSON(rest[1:-1].strip().decode("utf-8"))
    except UnicodeDecodeError:
        return None


class RequestInputs:
    """A request's ``inputs`` as the log keeps them: the body and its parsed payload. Their JSON
    text is made when the log is flushed (``raw_inputs``, else encoded again), not on the
    request path."""

    __slots__ = ("body", "payload")

    def __init__(self, body: bytes, payload: dict[str, Any]) -> None:
        self.body = body
        self.payload = payload

    def json(self) -> str:
        raw = raw_inputs(self.body, self.payload)
        return str(raw) if raw is not None else _dump(self.payload["inputs"])


def _dump(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, RawJSON):
        return str(value)
    if isinstance(value, RequestInputs):
        return value.json()
    return json.dumps(value, separators=(",", ":"), default=str)


def _as_text(columns: tuple[list[Any], ...]) -> list[_Row]:
    """Rows back from their columns, inputs and outputs as the JSON text already made (a
    request's body and parsed payload take several times the memory of that text)."""
    ids, models, versions, times, inputs, outputs, latencies, errors = columns
    return [
        (rid, model, version, at, RawJSON(i) if i else None, RawJSON(o) if o else None, ms, err)
        for rid, model, version, at, i, o, ms, err in zip(
            ids, models, versions, times, inputs, outputs, latencies, errors, strict=True
        )
    ]


FLUSH_SLICE_ROWS = 64
"""Rows turned into JSON text between two turns of the event loop (about half a millisecond)."""


async def _columns_in_slices(
    rows: list[_Row],
) -> tuple[list[Any], ...]:
    """``_columns`` of a second's worth of rows, a slice at a time on the event loop.

    JSON for a second of logged requests takes milliseconds. On a worker thread it held the GIL
    for up to Python's 5 ms switch interval at a time, and every request arriving meanwhile
    waited that long (the p99 at concurrency 1); between slices, a request waits at most one.
    """
    columns: tuple[list[Any], ...] = tuple([] for _ in range(8))
    for start in range(0, len(rows), FLUSH_SLICE_ROWS):
        part_columns = _columns(rows[start : start + FLUSH_SLICE_ROWS])
        for whole, part in zip(columns, part_columns, strict=True):
            whole.extend(part)
        await asyncio.sleep(0)
    return columns


def _columns(rows: list[_Row]) -> tuple[list[Any], ...]:
    return (
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
        [_dump(r[4]) for r in rows],
        [_dump(r[5]) for r in rows],
        [r[6] for r in rows],
        [r[7] for r in rows],
    )
