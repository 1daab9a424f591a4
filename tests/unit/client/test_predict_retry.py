"""Which failed answers the SDK's HTTP client retries: predictions are retried like reads when a
model replica or the proxy in front of it fails (a replica killed under load), the platform's own
errors never, and other POSTs only when the connection could not be made."""

from __future__ import annotations

import httpx
import pytest

from dlplatform.client import HttpClient, Platform
from dlplatform.errors import BackendUnavailable, DLPlatformError, InvalidInput

BASE = "http://127.0.0.1:8000"
HAPROXY_500 = httpx.Response(
    500, text="Internal Server Error", headers={"content-type": "text/plain"}
)
ANSWER = {"outputs": [1], "model": "m", "version": 1, "request_id": "r1"}


def _client(answers: list[httpx.Response | Exception], calls: list[str]) -> Platform:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(f"{request.method} {request.url.path}")
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    http = HttpClient(BASE, "t", transport=httpx.MockTransport(handler), backoff_s=0.001)
    return Platform(http)


def test_a_prediction_is_retried_when_its_replica_dies_under_it() -> None:
    calls: list[str] = []
    answers: list[httpx.Response | Exception] = [
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        HAPROXY_500,
        httpx.Response(200, json=ANSWER),
    ]
    result = _client(answers, calls).serving.predict("m", [[0.0]])
    assert result.outputs == [1]
    assert calls == ["POST /models/m"] * 3


def test_the_platforms_own_errors_are_not_retried() -> None:
    calls: list[str] = []
    body = {"error": "internal", "message": "prediction failed", "request_id": "r1"}
    answers: list[httpx.Response | Exception] = [httpx.Response(500, json=body)]
    with pytest.raises(DLPlatformError, match="prediction failed"):
        _client(answers, calls).serving.predict("m", [[0.0]])
    answers = [httpx.Response(400, json={"error": "invalid_input", "message": "bad rows"})]
    with pytest.raises(InvalidInput, match="bad rows"):
        _client(answers, calls).serving.predict("m", [[0.0]])
    assert calls == ["POST /models/m"] * 2


def test_other_posts_are_not_retried_after_a_proxy_error_but_reads_are() -> None:
    calls: list[str] = []
    with pytest.raises(BackendUnavailable, match="500"):
        _client([HAPROXY_500], calls).users.create("x", "viewer")
    assert calls == ["POST /api/v1/users"]
    calls.clear()
    answers: list[httpx.Response | Exception] = [HAPROXY_500, httpx.Response(200, json=[])]
    assert _client(answers, calls).datasets.list() == []
    assert calls == ["GET /api/v1/datasets"] * 2
