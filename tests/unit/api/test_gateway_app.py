"""The gateway app in-process (real DuckDB store): auth, errors, Host check, body limits, OpenAPI."""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fixtures_client import bearer

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, Role

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8000"


def _user_token(backend: Backend, name: str, role: Role) -> str:
    return access.create_user(backend, access.SYSTEM, UserSpec(name=name, role=role)).token


def _assert_error(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    assert "Traceback" not in reply.text and "dlp_" not in body["message"]
    return dict(body)


def test_healthz_needs_no_token_and_whoami_needs_one(
    lenient_client: TestClient, admin_token: str
) -> None:
    assert lenient_client.get(f"{API_PREFIX}/healthz").json() == {"status": "ok", "metadata": "ok"}
    _assert_error(lenient_client.get(f"{API_PREFIX}/whoami"), 401, "unauthenticated")
    me = lenient_client.get(f"{API_PREFIX}/whoami", headers=bearer(admin_token)).json()
    assert me == {"name": "admin", "role": "admin", "groups": []}


def test_wrong_malformed_and_revoked_tokens_are_401(
    lenient_client: TestClient, backend: Backend, admin_token: str
) -> None:
    for header in ("Bearer dlp_000000000000_nope", "Bearer ", "Basic YWRtaW46eA==", admin_token):
        reply = lenient_client.get(f"{API_PREFIX}/whoami", headers={"Authorization": header})
        _assert_error(reply, 401, "unauthenticated")
        assert reply.headers["www-authenticate"] == "Bearer"
    created = lenient_client.post(
        f"{API_PREFIX}/users", json={"name": "carol", "role": "viewer"}, headers=bearer(admin_token)
    ).json()
    token, token_id = created["token"], created["info"]["id"]
    assert (
        lenient_client.get(f"{API_PREFIX}/whoami", headers=bearer(token)).json()["name"] == "carol"
    )
    revoked = lenient_client.post(
        f"{API_PREFIX}/tokens/{token_id}/revoke", headers=bearer(admin_token)
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/whoami", headers=bearer(token)), 401, "unauthenticated"
    )


def test_credentials_only_from_the_authorization_header(
    lenient_client: TestClient, admin_token: str
) -> None:
    lenient_client.cookies.set("token", admin_token)
    lenient_client.cookies.set("Authorization", f"Bearer {admin_token}")
    _assert_error(lenient_client.get(f"{API_PREFIX}/whoami"), 401, "unauthenticated")
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/whoami", params={"token": admin_token}),
        401,
        "unauthenticated",
    )


def test_role_without_permission_is_403_and_audited(
    lenient_client: TestClient, backend: Backend, store: MetadataStore
) -> None:
    viewer = _user_token(backend, "vic", Role.VIEWER)
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/audit", headers=bearer(viewer)), 403, "permission_denied"
    )
    reply = lenient_client.post(
        f"{API_PREFIX}/users", json={"name": "mallory", "role": "admin"}, headers=bearer(viewer)
    )
    _assert_error(reply, 403, "permission_denied")
    denied = store.list_audit(actor="vic", outcome="denied")
    assert {(e.action, e.target) for e in denied} == {
        ("audit.view", "audit_log"),
        ("users.manage", "user:mallory"),
    }
    with pytest.raises(Exception, match="does not exist"):
        store.get_user("mallory")


def test_users_tokens_and_audit_routes(lenient_client: TestClient, admin_token: str) -> None:
    h = bearer(admin_token)
    reply = lenient_client.post(
        f"{API_PREFIX}/users", json={"name": "dora", "role": "data-engineer", "groups": ["team-a"]},
        headers=h,
    )  # fmt: skip
    assert reply.status_code == 201, reply.text
    dora = reply.json()
    assert dora["user"]["groups"] == ["team-a"] and dora["token"].startswith("dlp_")
    _assert_error(
        lenient_client.post(f"{API_PREFIX}/users", json={"name": "dora", "role": "viewer"}, headers=h),
        409, "already_exists",
    )  # fmt: skip
    assert [u["name"] for u in lenient_client.get(f"{API_PREFIX}/users", headers=h).json()] == [
        "admin", "dora",
    ]  # fmt: skip
    second = lenient_client.post(f"{API_PREFIX}/users/dora/tokens", headers=bearer(dora["token"]))
    assert second.status_code == 201
    listed = lenient_client.get(f"{API_PREFIX}/users/dora/tokens", headers=h).json()
    assert {t["id"] for t in listed} == {dora["info"]["id"], second.json()["info"]["id"]}
    assert all("token" not in t and "hash" not in json.dumps(t) for t in listed)
    # a non-admin cannot look at someone else's tokens
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/users/admin/tokens", headers=bearer(dora["token"])),
        403, "permission_denied",
    )  # fmt: skip
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/users/nobody/tokens", headers=h), 404, "not_found"
    )
    page = lenient_client.get(
        f"{API_PREFIX}/audit", params={"action": "users.create", "limit": 1}, headers=h
    )
    assert [(e["actor"], e["target"]) for e in page.json()] == [("admin", "user:dora")]
    older = lenient_client.get(
        f"{API_PREFIX}/audit", params={"action": "users.create", "limit": 1, "offset": 1}, headers=h
    ).json()
    assert [e["target"] for e in older] == ["user:admin"]
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/audit", params={"limit": 0}, headers=h),
        422,
        "invalid_input",
    )
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/audit", params={"outcome": "maybe"}, headers=h),
        422,
        "invalid_input",
    )


def test_lineage_route(lenient_client: TestClient, store: MetadataStore, admin_token: str) -> None:
    from dlplatform.metadata import LineageEdge

    store.add_edges([
        LineageEdge(src="commit:c-1", dst="run:r-1", relation="trained_on"),
        LineageEdge(src="run:r-1", dst="model_version:m@1", relation="produced"),
    ])  # fmt: skip
    h = bearer(admin_token)
    up = lenient_client.get(f"{API_PREFIX}/lineage/model_version/m@1", headers=h).json()
    assert [(n["entity"], n["depth"]) for n in up] == [("run:r-1", 1), ("commit:c-1", 2)]
    down = lenient_client.get(
        f"{API_PREFIX}/lineage/commit/c-1", params={"direction": "down", "depth": 1}, headers=h
    ).json()
    assert [n["entity"] for n in down] == ["run:r-1"]
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/lineage/table/x", headers=h), 422, "invalid_input"
    )
    _assert_error(
        lenient_client.get(f"{API_PREFIX}/lineage/run/r-1", params={"direction": "sideways"}, headers=h),
        422, "invalid_input",
    )  # fmt: skip


def test_malformed_json_is_422_naming_the_problem(
    lenient_client: TestClient, admin_token: str
) -> None:
    h = {**bearer(admin_token), "Content-Type": "application/json"}
    body = _assert_error(
        lenient_client.post(f"{API_PREFIX}/users", content=b'{"name": "x",', headers=h),
        422,
        "invalid_input",
    )
    assert "invalid JSON" in body["message"] and "body" in body["message"]
    body = _assert_error(
        lenient_client.post(f"{API_PREFIX}/users", json={"name": "x", "role": 5}, headers=h),
        422, "invalid_input",
    )  # fmt: skip
    assert "body.role" in body["message"]
    body = _assert_error(
        lenient_client.post(f"{API_PREFIX}/users", json={"role": "viewer", "extra": 1}, headers=h),
        422, "invalid_input",
    )  # fmt: skip
    assert "body.name" in body["message"] and "body.extra" in body["message"]


@pytest.mark.parametrize("name", ["a/b", "..", "%2e%2e", "a\x00b", "a" * 300, "Upper", ""])
def test_bad_names_in_bodies_are_422(
    lenient_client: TestClient, admin_token: str, name: str
) -> None:
    reply = lenient_client.post(
        f"{API_PREFIX}/users", json={"name": name, "role": "viewer"}, headers=bearer(admin_token)
    )
    assert "body.name" in _assert_error(reply, 422, "invalid_input")["message"]
    groups = lenient_client.post(
        f"{API_PREFIX}/users", json={"name": "ok", "role": "viewer", "groups": [name]},
        headers=bearer(admin_token),
    )  # fmt: skip
    assert "body.groups" in _assert_error(groups, 422, "invalid_input")["message"]


@pytest.mark.parametrize("raw", ["%2e%2e", "%2E%2e", ".%2e", "a%00b", "a" * 300, "A.b"])
def test_bad_names_in_paths_are_422(lenient_client: TestClient, admin_token: str, raw: str) -> None:
    reply = lenient_client.get(f"{API_PREFIX}/users/{raw}/tokens", headers=bearer(admin_token))
    assert "invalid name" in _assert_error(reply, 422, "invalid_input")["message"]


def test_literal_dot_dot_in_a_path_is_422(backend: Backend, admin_token: str) -> None:
    # httpx normalises "..", so send the raw path the way `curl --path-as-is` would.
    headers = [(b"authorization", f"Bearer {admin_token}".encode())]
    status, body, _ = _asgi_call(
        create_app(backend), "POST", f"{API_PREFIX}/users/../tokens", headers, [b""]
    )
    assert status == 422 and "invalid name" in body["message"]


def test_bad_token_ids_are_422(lenient_client: TestClient, admin_token: str) -> None:
    for raw in ("%2e%2e", "zz", "a" * 300, "0123456789ab%00"):
        reply = lenient_client.post(
            f"{API_PREFIX}/tokens/{raw}/revoke", headers=bearer(admin_token)
        )
        _assert_error(reply, 422, "invalid_input")
    _assert_error(
        lenient_client.post(f"{API_PREFIX}/tokens/0123456789ab/revoke", headers=bearer(admin_token)),
        404, "not_found",
    )  # fmt: skip


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example",
                                  "localhost.", "10.0.0.1:8000", ""])  # fmt: skip
def test_foreign_host_header_is_400_on_every_verb(
    lenient_client: TestClient, admin_token: str, host: str
) -> None:
    h = {**bearer(admin_token), "Host": host}
    for method in ("GET", "POST", "PUT", "DELETE", "OPTIONS"):
        reply = lenient_client.request(method, f"{API_PREFIX}/whoami", headers=h)
        _assert_error(reply, 400, "bad_request")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:8000", "localhost:1234", "LOCALHOST",
                                  "[::1]:8000", "[::1]"])  # fmt: skip
def test_configured_hosts_with_any_port_pass(lenient_client: TestClient, host: str) -> None:
    assert lenient_client.get(f"{API_PREFIX}/healthz", headers={"Host": host}).status_code == 200


def _asgi_call(
    app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, dict[str, Any], int]:
    """Drive the ASGI app directly; returns (status, body, number of receive() calls)."""
    calls = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls <= len(chunks):
            return {"type": "http.request", "body": chunks[calls - 1],
                    "more_body": calls < len(chunks)}  # fmt: skip
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "lenient_client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), calls


def test_declared_oversize_body_is_413_without_reading_it(
    backend: Backend, admin_token: str
) -> None:
    app = create_app(backend)
    headers = [(b"authorization", f"Bearer {admin_token}".encode()),
               (b"content-type", b"application/json"),
               (b"content-length", str(10 * 1024**3).encode())]  # fmt: skip
    status, body, calls = _asgi_call(app, "POST", f"{API_PREFIX}/users", headers, [b"{" * 1024])
    assert status == 413 and body["error"] == "too_large"
    assert calls == 0  # the body was never read


def test_chunked_oversize_body_is_413_and_reading_stops(backend: Backend, admin_token: str) -> None:
    app = create_app(backend)
    limit = backend.settings.max_request_bytes
    chunk = b" " * 65536
    chunks = [chunk] * (limit // len(chunk) * 4)
    headers = [(b"authorization", f"Bearer {admin_token}".encode()),
               (b"content-type", b"application/json"),
               (b"transfer-encoding", b"chunked")]  # fmt: skip
    status, body, calls = _asgi_call(app, "POST", f"{API_PREFIX}/users", headers, chunks)
    assert status == 413 and body["error"] == "too_large"
    assert calls == limit // len(chunk) + 1  # stopped right after crossing the limit


def test_oversize_body_through_testclient_is_413(
    lenient_client: TestClient, admin_token: str
) -> None:
    big = b"x" * (lenient_client.app.state.backend.settings.max_request_bytes + 1)  # type: ignore[attr-defined]
    reply = lenient_client.post(f"{API_PREFIX}/users", content=big, headers=bearer(admin_token))
    _assert_error(reply, 413, "too_large")


def test_upload_routes_have_the_larger_limit(backend: Backend) -> None:
    from dlplatform.api.middleware import BodyLimitMiddleware

    app = create_app(backend)
    app.build_middleware_stack()
    mw = next(m for m in app.user_middleware if m.cls is BodyLimitMiddleware)
    limiter = BodyLimitMiddleware(lambda *a: None, **mw.kwargs)  # type: ignore[arg-type]
    s = backend.settings
    assert limiter.limit_for("POST", f"{API_PREFIX}/datasets/d1/commits") == s.max_upload_bytes
    assert limiter.limit_for("GET", f"{API_PREFIX}/datasets/d1/commits") == s.max_request_bytes
    assert limiter.limit_for("POST", f"{API_PREFIX}/users") == s.max_request_bytes


def test_unknown_error_is_500_with_a_logged_request_id(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(backend)

    @app.get(f"{API_PREFIX}/boom-test")
    def boom() -> None:
        raise RuntimeError("secret-value-xyz in /etc/some/path")

    with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
        caplog.set_level(logging.ERROR, logger="dlplatform.api")
        reply = c.get(f"{API_PREFIX}/boom-test")
    body = _assert_error(reply, 500, "internal")
    assert "secret-value-xyz" not in reply.text and "/etc" not in reply.text
    request_id = body["message"].rsplit(" ", 1)[-1].rstrip(")")
    assert len(request_id) == 12
    assert any(request_id in r.getMessage() for r in caplog.records)
    assert any("secret-value-xyz" in (r.exc_text or "") or r.exc_info for r in caplog.records)


def test_a_replica_logs_failed_requests_to_its_stderr(
    backend: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a Serve replica the platform's loggers have no handler of Serve's: the gateway sends
    them to stderr (the worker's .err log), so a request id leads to its traceback."""
    from dlplatform.api.gateway import log_to_stderr

    app = create_app(backend)

    @app.get(f"{API_PREFIX}/boom-test")
    def boom() -> None:
        raise ImportError("cannot import name 'x' from 'y'")

    logger = logging.getLogger("dlplatform")
    before = list(logger.handlers)
    try:
        log_to_stderr()
        log_to_stderr()  # idempotent: one handler
        assert len(logger.handlers) == len(before) + 1
        with TestClient(app, base_url=BASE, raise_server_exceptions=False) as c:
            reply = c.get(f"{API_PREFIX}/boom-test")
    finally:
        for handler in logger.handlers[len(before) :]:
            logger.removeHandler(handler)
    request_id = _assert_error(reply, 500, "internal")["message"].rsplit(" ", 1)[-1].rstrip(")")
    err = capsys.readouterr().err
    assert f"request {request_id} (GET" in err and "ImportError: cannot import name" in err


def test_unknown_route_and_method_keep_the_error_body(
    lenient_client: TestClient, admin_token: str
) -> None:
    _assert_error(lenient_client.get(f"{API_PREFIX}/nope"), 404, "not_found")
    _assert_error(lenient_client.delete(f"{API_PREFIX}/healthz"), 405, "method_not_allowed")


def test_openapi_lists_every_route_with_models(lenient_client: TestClient) -> None:
    doc = lenient_client.get(f"{API_PREFIX}/openapi.json").json()
    app_paths = {
        (route.path, method.lower())
        for route in lenient_client.app.routes  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }
    doc_paths = {(p, m) for p, ops in doc["paths"].items() for m in ops}
    assert app_paths <= doc_paths
    for path in ("/healthz", "/whoami", "/users", "/users/{name}/tokens",
                 "/tokens/{token_id}/revoke", "/audit", "/lineage/{kind}/{entity_id}"):  # fmt: skip
        assert f"{API_PREFIX}{path}" in doc["paths"], path
    schemas = doc["components"]["schemas"]
    assert {"UserSpec", "CreatedUser", "TokenInfo", "AuditEntry", "LineageNode"} <= set(schemas)
