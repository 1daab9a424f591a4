"""Issue #18, finding 2: no request can end the gateway's event loop. ``SystemExit`` and
``KeyboardInterrupt`` raised by code a route calls become a 500 with a request id (in the body and
in the server log line with the traceback) and an audit entry; the gateway keeps answering."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator

import pytest

import dlplatform.workflows
from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    # raise_server_exceptions stays on: anything that escapes the gateway fails the test
    with TestClient(create_app(backend), base_url="http://127.0.0.1:8000") as c:
        yield c


def _request_id(message: str) -> str:
    assert message.startswith("internal error (request id ") or "(request id " in message
    return message.rsplit(" ", 1)[-1].rstrip(")")


@pytest.mark.parametrize("raised", [SystemExit(2), KeyboardInterrupt(), RuntimeError("x")])
def test_a_base_exception_from_a_service_is_a_500_and_the_gateway_lives_on(
    client: TestClient,
    backend: Backend,
    admin_token: str,
    raised: BaseException,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def service(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr(dlplatform.workflows, "list_workflow_runs", service)
    caplog.set_level(logging.ERROR, logger="dlplatform.api")
    auth = {"Authorization": f"Bearer {admin_token}"}
    reply = client.get(f"{API_PREFIX}/workflows/runs", headers=auth)
    assert reply.status_code == 500
    body = reply.json()
    assert body["error"] == "internal" and "Traceback" not in reply.text
    request_id = _request_id(body["message"])
    assert len(request_id) == 12
    (record,) = [r for r in caplog.records if request_id in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is type(raised)  # the traceback
    (entry,) = backend.store.list_audit(action="request.error")
    assert (entry.actor, entry.outcome, entry.target) == ("admin", "error", f"request:{request_id}")
    assert "GET /api/v1/workflows/runs" in entry.detail and type(raised).__name__ in entry.detail
    # the event loop survived: the next requests are answered
    assert client.get(f"{API_PREFIX}/healthz").json()["status"] == "ok"
    monkeypatch.undo()
    assert client.get(f"{API_PREFIX}/workflows/runs", headers=auth).json() == []


def test_a_failure_with_an_unknown_token_is_audited_as_unknown(backend: Backend) -> None:
    app = create_app(backend)

    @app.get(f"{API_PREFIX}/exit-test")
    def exits() -> None:
        raise SystemExit(1)

    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        reply = c.get(f"{API_PREFIX}/exit-test", headers={"Authorization": "Bearer dlp_nope"})
        assert reply.status_code == 500
        assert c.get(f"{API_PREFIX}/healthz").status_code == 200
    (entry,) = backend.store.list_audit(action="request.error")
    assert entry.actor == "unknown" and _request_id(reply.json()["message"]) in entry.detail


def test_a_platform_5xx_is_logged_with_its_traceback_and_request_id(
    client: TestClient,
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def service(*args: object, **kwargs: object) -> None:
        raise BackendUnavailable("the workflow manager is unavailable")

    monkeypatch.setattr(dlplatform.workflows, "list_workflow_runs", service)
    caplog.set_level(logging.ERROR, logger="dlplatform.api")
    reply = client.get(
        f"{API_PREFIX}/workflows/runs", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert reply.status_code == 503 and reply.json()["error"] == "unavailable"
    request_id = _request_id(reply.json()["message"])
    (record,) = [r for r in caplog.records if request_id in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is BackendUnavailable
