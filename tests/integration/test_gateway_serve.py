"""The gateway through Ray Serve over real HTTP on loopback: health, auth, 401/403/413/400."""

from __future__ import annotations

import uuid

import httpx
import pytest

from dlplatform.context import Backend

pytestmark = pytest.mark.integration


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    assert reply.json()["error"] == code
    assert "Traceback" not in reply.text


def test_health_and_auth_through_serve(gateway_url: str, gateway_admin_token: str) -> None:
    api = f"{gateway_url}/api/v1"
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"
    _error(httpx.get(f"{api}/whoami"), 401, "unauthenticated")
    _error(httpx.get(f"{api}/whoami", headers=_auth("dlp_0_wrong")), 401, "unauthenticated")
    me = httpx.get(f"{api}/whoami", headers=_auth(gateway_admin_token))
    assert me.status_code == 200 and me.json()["role"] == "admin"
    doc = httpx.get(f"{api}/openapi.json").json()
    assert "/api/v1/users" in doc["paths"]


def test_users_roles_and_audit_through_serve(
    gateway_url: str, gateway_admin_token: str, gateway_backend: Backend
) -> None:
    api = f"{gateway_url}/api/v1"
    name = f"v-{uuid.uuid4().hex[:8]}"
    created = httpx.post(
        f"{api}/users", json={"name": name, "role": "viewer"}, headers=_auth(gateway_admin_token)
    )
    assert created.status_code == 201, created.text
    token = created.json()["token"]
    # the replica wrote through the metadata actor: the same store sees the user
    assert gateway_backend.store.get_user(name).role.value == "viewer"
    assert httpx.get(f"{api}/whoami", headers=_auth(token)).json()["name"] == name
    _error(httpx.get(f"{api}/audit", headers=_auth(token)), 403, "permission_denied")
    denied = gateway_backend.store.list_audit(actor=name, outcome="denied")
    assert [(e.action, e.target) for e in denied] == [("audit.view", "audit_log")]
    token_id = created.json()["info"]["id"]
    revoked = httpx.post(f"{api}/tokens/{token_id}/revoke", headers=_auth(gateway_admin_token))
    assert revoked.status_code == 200
    _error(httpx.get(f"{api}/whoami", headers=_auth(token)), 401, "unauthenticated")
    _error(
        httpx.post(f"{api}/users", json={"name": "a/b", "role": "viewer"},
                   headers=_auth(gateway_admin_token)),
        422, "invalid_input",
    )  # fmt: skip


def test_body_limit_and_host_check_through_serve(
    gateway_url: str, gateway_admin_token: str, gateway_backend: Backend
) -> None:
    api = f"{gateway_url}/api/v1"
    big = b"{" + b" " * (gateway_backend.settings.max_request_bytes + 10) + b"}"
    reply = httpx.post(
        f"{api}/users", content=big,
        headers={**_auth(gateway_admin_token), "Content-Type": "application/json"},
    )  # fmt: skip
    _error(reply, 413, "too_large")

    def chunks():  # no Content-Length: counted while read
        for _ in range(40):
            yield b" " * 65536

    reply = httpx.post(
        f"{api}/users", content=chunks(),
        headers={**_auth(gateway_admin_token), "Content-Type": "application/json"},
    )  # fmt: skip
    _error(reply, 413, "too_large")
    for host in ("evil.example", "evil.example:80", "192.0.2.10"):
        for method in ("GET", "POST", "DELETE"):
            reply = httpx.request(
                method, f"{api}/whoami", headers={**_auth(gateway_admin_token), "Host": host}
            )
            _error(reply, 400, "bad_request")
    assert httpx.get(f"{api}/healthz", headers={"Host": "localhost"}).status_code == 200
