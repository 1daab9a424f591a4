"""The prediction log: columnar batch insert (with lineage) and the replica-side buffer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from dlplatform.errors import InvalidInput
from dlplatform.metadata import MetadataStore
from dlplatform.serve._predlog import PredictionLog


class _ActorProtocol:
    """The metadata actor's reply protocol (``("ok", value)``/``("err", code, msg)``) over a
    real in-process store, as ``StoreClient.call_async`` gives it to a replica."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store
        self.down = False

    async def _call(self, method: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
        if self.down:
            return ("err", "unavailable", "metadata actor is unavailable")
        return ("ok", getattr(self.store, method)(*args))

    def call_async(self, method: Callable[..., Any], *args: Any) -> Any:
        return self._call(method.__name__, args)


def test_log_prediction_batch_inserts_rows_and_lineage(store: MetadataStore) -> None:
    now = time.time()
    n = store.log_prediction_batch(
        "dep",
        ["r1", "r2"],
        ["m", "m"],
        [1, 2],
        [now, now],
        ["[[1,2]]", ""],
        ['["a"]', ""],
        [1.5, 2.5],
    )
    assert n == 2
    p = store.get_prediction("r1")
    assert (p.deployment, p.model, p.version, p.inputs_json, p.latency_ms) == (
        "dep",
        "m",
        1,
        "[[1,2]]",
        1.5,
    )
    assert abs(p.at.timestamp() - now) < 0.001
    assert [x.entity for x in store.upstream("prediction:r2")] == ["deployment:dep"]
    # repeated ids are ignored, not duplicated
    store.log_prediction_batch("dep", ["r1"], ["m"], [9], [now], [""], [""], [0.1])
    assert store.get_prediction("r1").version == 1
    assert store.log_prediction_batch("dep", [], [], [], [], [], [], []) == 0
    with pytest.raises(InvalidInput, match="same length"):
        store.log_prediction_batch("dep", ["r3"], [], [1], [now], [""], [""], [1.0])
    with pytest.raises(InvalidInput):
        store.log_prediction_batch("Bad Name", ["r3"], ["m"], [1], [now], [""], [""], [1.0])


def test_buffer_flushes_in_batches_samples_and_survives_an_outage(store: MetadataStore) -> None:
    actor = _ActorProtocol(store)

    async def scenario() -> PredictionLog:
        log = PredictionLog(actor, "dep", sample_rate=0.0, flush_interval_s=0.05)
        actor.down = True
        for i in range(10):
            log.record(f"q{i}", "m", 1, [[i]], ["a"], 1.0)
        await asyncio.sleep(0.2)  # flushes fail while the actor is down: rows are kept
        assert log.errors >= 1 and log.flushed == 0
        actor.down = False
        await asyncio.sleep(0.2)
        await log.close()
        return log

    log = asyncio.run(scenario())
    assert log.flushed == 10 and log.dropped == 0
    row = store.get_prediction("q3")
    assert row.inputs_json == "" and row.outputs_json == ""  # sample_rate 0: ids and latency only

    async def sampled() -> None:
        log = PredictionLog(actor, "dep", sample_rate=1.0, flush_interval_s=10, max_buffer=5)
        actor.down = True
        for i in range(8):
            log.record(f"s{i}", "m", 2, {"x": i}, [i], 2.0)
        await log.flush()
        assert log.dropped == 3  # the buffer is capped while the actor is down
        actor.down = False
        await log.close()

    asyncio.run(sampled())
    assert json.loads(store.get_prediction("s7").inputs_json) == {"x": 7}


def test_rows_kept_through_an_outage_hold_json_text_not_request_bodies(
    store: MetadataStore,
) -> None:
    from dlplatform.serve._predlog import RawJSON, RequestInputs

    actor = _ActorProtocol(store)
    body = b'{"inputs": [[1, 2.50]]}'

    async def scenario() -> None:
        log = PredictionLog(actor, "dep", flush_interval_s=10)
        actor.down = True
        log.record("k1", "m", 1, RequestInputs(body, json.loads(body)), ["a"], 1.0)
        await log.flush()
        kept = log._buffer[0]
        assert kept[4] == "[[1, 2.50]]" and isinstance(kept[4], RawJSON)
        assert kept[5] == '["a"]' and isinstance(kept[5], RawJSON)
        actor.down = False
        await log.close()

    asyncio.run(scenario())
    logged = store.get_prediction("k1")
    assert (logged.inputs_json, logged.outputs_json) == ("[[1, 2.50]]", '["a"]')


def test_a_flush_turns_rows_into_json_a_slice_at_a_time(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlplatform.serve import _predlog

    actor = _ActorProtocol(store)
    rows = 3 * _predlog.FLUSH_SLICE_ROWS + 1
    turns = 0
    slices: list[tuple[int, int]] = []  # (rows in the slice, loop turns before it)
    encode = _predlog._columns

    def recording(part: list[Any]) -> tuple[list[Any], ...]:
        slices.append((len(part), turns))
        return encode(part)

    monkeypatch.setattr(_predlog, "_columns", recording)

    async def scenario() -> None:
        log = PredictionLog(actor, "dep", flush_interval_s=10)
        for i in range(rows):
            log.record(f"z{i}", "m", 1, [[i]], [i], 1.0)

        async def ticker() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        tick = asyncio.ensure_future(ticker())
        assert await log.flush() == rows
        tick.cancel()

    asyncio.run(scenario())
    size = _predlog.FLUSH_SLICE_ROWS
    assert [n for n, _ in slices] == [size, size, size, 1]
    seen = [t for _, t in slices]
    assert seen == sorted(set(seen))  # other coroutines ran between every two slices
    assert json.loads(store.get_prediction(f"z{rows - 1}").inputs_json) == [[rows - 1]]
