"""The prediction log: columnar batch insert (with lineage) and the replica-side buffer."""

from __future__ import annotations

import asyncio
import json
import time
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

    def call_async(self, method: str, *args: Any) -> Any:
        return self._call(method, args)


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
