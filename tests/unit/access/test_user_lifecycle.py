"""User lifecycle (#18, finding 14): disable and enable users, change roles, expiring tokens and
``last_used_at``; admin-only, audited, never leaving the platform without an enabled admin."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pytest

from dlplatform import access
from dlplatform.access import SYSTEM, UserSpec, authenticate
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from dlplatform.metadata import MetadataStore, Role
from dlplatform.metadata.records import utcnow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"


def _new(backend: Backend, name: str, role: Role) -> str:
    return access.create_user(backend, SYSTEM, UserSpec(name=name, role=role)).token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_disable_enable_and_set_role_are_admin_only_and_audited(
    backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    admin = authenticate(store, admin_token)
    bob_token = _new(backend, "bob", Role.VIEWER)
    bob = authenticate(store, bob_token)
    with pytest.raises(PermissionDenied):
        access.disable_user(backend, bob, "admin")
    with pytest.raises(PermissionDenied):
        access.set_user_role(backend, bob, "bob", Role.ADMIN)

    user = access.disable_user(backend, admin, "bob")
    assert user.disabled and user.disabled_at is not None
    with pytest.raises(Unauthenticated, match="user is disabled"):
        authenticate(store, bob_token)
    assert access.disable_user(backend, admin, "bob").disabled  # twice is harmless
    user = access.enable_user(backend, admin, "bob")
    assert not user.disabled and user.disabled_at is None
    assert authenticate(store, bob_token).role is Role.VIEWER

    assert access.set_user_role(backend, admin, "bob", "researcher").role is Role.RESEARCHER
    assert authenticate(store, bob_token).role is Role.RESEARCHER

    ok = [(e.action, e.target, e.detail) for e in store.list_audit(actor="admin", outcome="ok")]
    assert ok[::-1] == [
        ("users.disable", "user:bob", "disabled"),
        ("users.disable", "user:bob", "disabled already"),
        ("users.enable", "user:bob", "enabled"),
        ("users.set_role", "user:bob", "role viewer -> researcher"),
    ]
    denied = store.list_audit(actor="bob", outcome="denied")
    assert {e.action for e in denied} == {"users.manage"}


def test_bad_requests_get_clear_errors(
    backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    admin = authenticate(store, admin_token)
    _new(backend, "bob", Role.VIEWER)
    with pytest.raises(InvalidInput, match="may not disable themselves"):
        access.disable_user(backend, admin, "admin")
    with pytest.raises(InvalidInput, match="unknown role 'root': expected one of admin"):
        access.set_user_role(backend, admin, "bob", "root")
    with pytest.raises(InvalidInput):
        access.enable_user(backend, admin, "../etc")
    with pytest.raises(NotFound, match="user 'nobody' does not exist"):
        access.disable_user(backend, admin, "nobody")
    for days in (0, -1, 3651, True, 1.5):
        with pytest.raises(InvalidInput, match="expires_in_days must be a whole number"):
            access.create_token(backend, admin, "bob", expires_in_days=days)  # type: ignore[arg-type]
    assert store.list_audit(actor="admin", action="users.disable", outcome="denied")


def test_the_last_enabled_admin_stays(
    backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    admin = authenticate(store, admin_token)
    with pytest.raises(Conflict, match="'admin' is the last enabled admin"):
        access.set_user_role(backend, admin, "admin", Role.VIEWER)
    with pytest.raises(Conflict, match="last enabled admin"):
        access.disable_user(backend, SYSTEM, "admin")  # the platform itself is no exception
    _new(backend, "carol", Role.ADMIN)
    access.disable_user(backend, admin, "carol")
    with pytest.raises(Conflict):  # a disabled admin does not count
        access.set_user_role(backend, admin, "admin", Role.VIEWER)
    access.enable_user(backend, admin, "carol")
    assert access.set_user_role(backend, admin, "admin", Role.VIEWER).role is Role.VIEWER
    assert authenticate(store, admin_token).role is Role.VIEWER
    with pytest.raises(Conflict):
        access.disable_user(backend, SYSTEM, "carol")
    denied = store.list_audit(action="users.set_role", outcome="denied")
    assert denied and "last enabled admin" in denied[0].detail


def test_a_disabled_users_token_stops_at_once_on_the_gateway(
    client: TestClient, backend: Backend, admin_token: str
) -> None:
    bob = _new(backend, "bob", Role.VIEWER)
    assert client.get(f"{API}/whoami", headers=_auth(bob)).json()["role"] == "viewer"  # cached
    r = client.post(f"{API}/users/bob/disable", headers=_auth(admin_token))
    assert r.status_code == 200 and r.json()["disabled"] is True, r.text
    r = client.get(f"{API}/whoami", headers=_auth(bob))
    assert (r.status_code, r.json()["message"]) == (401, "user is disabled")
    r = client.post(f"{API}/users/bob/enable", headers=_auth(admin_token))
    assert r.status_code == 200 and r.json()["disabled"] is False
    assert client.get(f"{API}/whoami", headers=_auth(bob)).status_code == 200
    r = client.post(
        f"{API}/users/bob/role", json={"role": "researcher"}, headers=_auth(admin_token)
    )
    assert r.status_code == 200 and r.json()["role"] == "researcher"
    assert client.get(f"{API}/whoami", headers=_auth(bob)).json()["role"] == "researcher"
    users = client.get(f"{API}/users", headers=_auth(admin_token)).json()
    assert {u["name"]: u["disabled"] for u in users} == {"admin": False, "bob": False}


@pytest.mark.parametrize(
    ("path", "body", "as_bob", "status", "message"),
    [
        ("users/admin/disable", None, False, 422, "admin may not disable themselves"),
        ("users/admin/role", {"role": "viewer"}, False, 409, "last enabled admin"),
        ("users/bob/role", {"role": "root"}, False, 422, "body.role"),
        ("users/bob/role", None, False, 422, "body"),
        ("users/nobody/enable", None, False, 404, "user 'nobody' does not exist"),
        ("users/admin/disable", None, True, 403, "lacks permission users.manage"),
        ("users/bob/tokens", {"expires_in_days": 0}, False, 422, "body.expires_in_days"),
        ("users/bob/tokens", {"expires_in_days": 4000}, False, 422, "body.expires_in_days"),
        ("users/bob/tokens", {"expires_in_days": "soon"}, False, 422, "body.expires_in_days"),
        ("users/bob/tokens", {"expires": 3}, False, 422, "body.expires"),
    ],
)
def test_user_routes_answer_bad_requests_with_a_message(
    client: TestClient,
    backend: Backend,
    admin_token: str,
    path: str,
    body: object,
    as_bob: bool,
    status: int,
    message: str,
) -> None:
    bob = _new(backend, "bob", Role.VIEWER)
    r = client.post(f"{API}/{path}", json=body, headers=_auth(bob if as_bob else admin_token))
    assert r.status_code == status, r.text
    assert message in r.json()["message"]


def test_tokens_may_expire(
    client: TestClient, backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    _new(backend, "bob", Role.VIEWER)
    r = client.post(
        f"{API}/users/bob/tokens", json={"expires_in_days": 7}, headers=_auth(admin_token)
    )
    assert r.status_code == 201, r.text
    issued = r.json()
    expires_at = access.list_tokens(backend, SYSTEM, "bob")[-1].expires_at
    assert expires_at is not None
    assert abs(expires_at - (utcnow() + timedelta(days=7))) < timedelta(minutes=1)
    assert issued["info"]["expires_at"] is not None
    plain = client.post(f"{API}/users/bob/tokens", headers=_auth(admin_token)).json()
    assert plain["info"]["expires_at"] is None  # no body: lasts until revoked
    assert client.get(f"{API}/whoami", headers=_auth(issued["token"])).status_code == 200
    # a week later (the gateway remembers a token at most until it expires)
    store._db.run(
        "UPDATE tokens SET expires_at = ? WHERE id = ?",
        [utcnow() - timedelta(seconds=1), issued["info"]["id"]],
    )
    client.app.state.auth_cache.clear()  # type: ignore[attr-defined]
    r = client.get(f"{API}/whoami", headers=_auth(issued["token"]))
    assert (r.status_code, r.json()["message"]) == (401, "token expired")
    detail = store.list_audit(action="tokens.create", outcome="ok")[1].detail
    assert detail.startswith(f"token={issued['info']['id']} expires_at=")


def test_last_used_at_is_kept_at_most_once_a_minute(backend: Backend, store: MetadataStore) -> None:
    token = _new(backend, "dan", Role.VIEWER)
    [info] = store.list_tokens("dan")
    assert info.last_used_at is None
    authenticate(store, token)
    [info] = store.list_tokens("dan")
    first = info.last_used_at
    assert first is not None and utcnow() - first < timedelta(minutes=1)
    authenticate(store, token)
    assert store.list_tokens("dan")[0].last_used_at == first  # no write per request
    store._db.run(
        "UPDATE tokens SET last_used_at = ? WHERE id = ?", [first - timedelta(minutes=2), info.id]
    )
    authenticate(store, token)
    touched = store.list_tokens("dan")[0].last_used_at
    assert touched is not None and touched >= first  # older than a minute: written again
