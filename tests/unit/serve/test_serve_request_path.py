"""The replica's request path without Ray: dynamic batching, body reading, the response, logged
inputs, and the sample cap on Serve's own latency histograms (the token check is in
``test_serve_auth.py``)."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from starlette.requests import Request

from dlplatform.errors import InvalidInput, TooLarge
from dlplatform.serve._batching import MicroBatcher
from dlplatform.serve._predlog import RequestInputs, _dump
from dlplatform.serve.deployment import json_response, read_body, read_inputs

# --- batching ----------------------------------------------------------------------------------


class Recorder:
    """A model run that remembers each batch's row counts and answers each row with its value."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_on = fail_on

    def __call__(self, items: list[tuple[str, np.ndarray]]) -> list[list[Any]]:
        self.batches.append([len(rows) for _, rows in items])
        if self.fail_on is not None and any(self.fail_on in rows for _, rows in items):
            raise RuntimeError("model failed")
        return [[f"{model}:{v}" for v in rows.tolist()] for model, rows in items]


def _rows(*values: int) -> np.ndarray:
    return np.array(values)


def test_concurrent_requests_share_one_forward_pass_in_order() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=32, wait_timeout_s=0.0)

    async def scenario() -> list[list[Any]]:
        return await asyncio.gather(*(batcher("m", _rows(i)) for i in range(5)))

    assert asyncio.run(scenario()) == [[f"m:{i}"] for i in range(5)]
    assert run.batches == [[1, 1, 1, 1, 1]]
    assert (batcher.batches, batcher.requests) == (1, 5)


def test_a_batch_holds_at_most_max_batch_size_rows_and_a_big_request_runs_alone() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=4, wait_timeout_s=0.0)

    async def scenario() -> list[list[Any]]:
        sizes = [1, 2, 1, 3, 6, 1]
        calls = [batcher("m", _rows(*range(n))) for n in sizes]
        return await asyncio.gather(*calls)

    out = asyncio.run(scenario())
    assert run.batches == [[1, 2, 1], [3], [6], [1]]
    assert [len(o) for o in out] == [1, 2, 1, 3, 6, 1]


def test_the_wait_timeout_lets_a_later_request_join_the_batch() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=32, wait_timeout_s=0.2)

    async def scenario() -> None:
        first = asyncio.ensure_future(batcher("m", _rows(1)))
        await asyncio.sleep(0.02)
        assert run.batches == []  # still waiting for company
        second = batcher("m", _rows(2))
        assert await asyncio.gather(first, second) == [["m:1"], ["m:2"]]

    asyncio.run(scenario())
    assert run.batches == [[1, 1]]


def test_a_full_batch_does_not_wait_for_the_timeout() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=2, wait_timeout_s=30.0)

    async def scenario() -> list[list[Any]]:
        return await asyncio.wait_for(
            asyncio.gather(batcher("m", _rows(1)), batcher("m", _rows(2))), timeout=5
        )

    assert asyncio.run(scenario()) == [["m:1"], ["m:2"]]


def test_a_failing_batch_fails_its_requests_only() -> None:
    run = Recorder(fail_on=13)
    batcher = MicroBatcher(run, max_batch_size=2, wait_timeout_s=0.0)

    async def scenario() -> list[Any]:
        calls = [batcher("m", _rows(v)) for v in (13, 1, 2)]
        return await asyncio.gather(*calls, return_exceptions=True)

    first, second, third = asyncio.run(scenario())
    assert isinstance(first, RuntimeError) and isinstance(second, RuntimeError)
    assert third == ["m:2"]


def test_a_cancelled_caller_is_left_out_of_the_batch() -> None:
    run = Recorder()
    batcher = MicroBatcher(run, max_batch_size=32, wait_timeout_s=0.05)

    async def scenario() -> list[Any]:
        gone = asyncio.ensure_future(batcher("m", _rows(1)))
        kept = asyncio.ensure_future(batcher("m", _rows(2)))
        await asyncio.sleep(0)
        gone.cancel()
        return [await kept]

    assert asyncio.run(scenario()) == [["m:2"]]
    assert run.batches == [[1]]


def test_batcher_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch_size=0, wait_timeout_s=0)
    with pytest.raises(ValueError):
        MicroBatcher(Recorder(), max_batch_size=1, wait_timeout_s=-1)


# --- body, response ----------------------------------------------------------------------------


def _request(messages: list[dict[str, Any]], headers: dict[str, str] | None = None) -> Request:
    received: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        message = messages[len(received)]
        received.append(message)
        return message

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/models/m",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    request = Request(scope, receive)
    request.state.received = received
    return request


def _chunk(body: bytes, more: bool) -> dict[str, Any]:
    return {"type": "http.request", "body": body, "more_body": more}


def test_read_body_joins_chunks_and_stops_at_the_limit() -> None:
    whole = _request([_chunk(b'{"inputs"', True), _chunk(b": [[1]]}", False)])
    assert asyncio.run(read_body(whole, 1024)) == b'{"inputs": [[1]]}'

    endless = _request([_chunk(b"x" * 600, True)] * 10)
    with pytest.raises(TooLarge, match="1024 bytes"):
        asyncio.run(read_body(endless, 1024))
    assert len(endless.state.received) == 2  # stopped reading once past the limit

    declared = _request([_chunk(b"x", False)], {"content-length": "5000"})
    with pytest.raises(TooLarge, match="5000 bytes"):
        asyncio.run(read_body(declared, 1024))
    assert declared.state.received == []  # refused before reading

    gone = _request([_chunk(b"{", True), {"type": "http.disconnect"}])
    with pytest.raises(InvalidInput, match="ended before its body"):
        asyncio.run(read_body(gone, 1024))


def test_read_inputs_keeps_the_body_for_the_log() -> None:
    request = _request([_chunk(b'{"inputs": [[1, 2.50]]}', False)])
    inputs, logged = asyncio.run(read_inputs(request, 1024))
    assert inputs == [[1, 2.5]]
    assert _dump(logged) == "[[1, 2.50]]"  # the client's own text, cut at flush time
    with pytest.raises(InvalidInput, match="must be JSON"):
        asyncio.run(read_inputs(_request([_chunk(b"{nope", False)]), 1024))
    with pytest.raises(InvalidInput, match='"inputs"'):
        asyncio.run(read_inputs(_request([_chunk(b'{"rows": []}', False)]), 1024))


def test_logged_inputs_fall_back_to_encoding_when_the_text_cannot_be_cut() -> None:
    body = b'{"inputs": [[1]], "extra": true}'
    assert _dump(RequestInputs(body, json.loads(body))) == "[[1]]"


def test_prediction_response_sends_json_with_request_id_and_version() -> None:
    response = json_response(
        {"outputs": [np.int64(3)], "version": 2, "request_id": "abc"}, "abc", 2
    )
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    asyncio.run(response({"type": "http"}, receive, send))
    start, body = sent
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"x-dlp-request-id"] == b"abc" and headers[b"x-model-version"] == b"2"
    assert int(headers[b"content-length"]) == len(body["body"])
    assert json.loads(body["body"]) == {"outputs": [3], "version": 2, "request_id": "abc"}


# --- Serve's latency histograms ----------------------------------------------------------------


def test_serve_latency_samples_are_capped_before_serve_reports_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray.serve._private.replica import ReplicaMetricsManager

    from dlplatform._ray_internals import cap_serve_latency_samples

    reported: list[tuple[int, int]] = []

    def original(manager: Any) -> None:
        reported.append(
            (
                len(manager._cached_latencies["/m"]),
                len(manager._cached_ingress_processing_latencies["http"][frozenset()]),
            )
        )

    monkeypatch.setattr(ReplicaMetricsManager, "_report_cached_metrics", original)
    cap_serve_latency_samples(per_second=200)
    cap_serve_latency_samples(per_second=200)  # idempotent: wrapped once
    manager = SimpleNamespace(
        _cached_metrics_interval_s=0.1,
        _cached_latencies={"/m": deque(float(i) for i in range(1000))},
        _cached_ingress_processing_latencies={"http": {frozenset(): deque([1.0] * 7)}},
    )
    ReplicaMetricsManager._report_cached_metrics(manager)
    assert reported == [(20, 7)]  # 200/s at Serve's 0.1 s interval; a short list is untouched
    kept = list(manager._cached_latencies["/m"])
    assert len(set(kept)) == 20 and all(0 <= v < 1000 for v in kept)
