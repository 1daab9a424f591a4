"""Alerts service and routes: permissions, audit, pagination with X-Total-Count, resolve."""

from __future__ import annotations

import warnings

import pytest

from dlplatform import alerts
from dlplatform.access import Principal, issue_token
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import MetadataStore, Role, User
from dlplatform.metadata.records import utcnow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

VIEWER = Principal(name="vic", role=Role.VIEWER)
SCIENTIST = Principal(name="sam", role=Role.DATA_SCIENTIST)


def _token(store: MetadataStore, name: str, role: Role) -> str:
    store.create_user(User(name=name, role=role, created_at=utcnow()))
    return issue_token(store, name)[0]


def test_list_paginates_newest_first_and_counts(backend: Backend) -> None:
    for i in range(7):
        backend.store.create_alert("drift", f"deployment:d{i}", f"drift {i}")
    page, total = alerts.list_alerts(backend, VIEWER, limit=3, offset=2)
    assert total == 7
    assert [a.message for a in page] == ["drift 4", "drift 3", "drift 2"]
    entries = backend.store.list_audit(action="alerts.view")
    assert entries and entries[0].actor == "vic"


def test_resolve_needs_deploy_manage_and_is_audited(backend: Backend) -> None:
    alert = backend.store.create_alert("error_rate", "deployment:x", "5% errors", "critical")
    with pytest.raises(PermissionDenied):
        alerts.resolve_alert(backend, VIEWER, alert.id)
    denied = backend.store.list_audit(outcome="denied")
    assert denied[0].target == f"alert:{alert.id}"
    done = alerts.resolve_alert(backend, SCIENTIST, alert.id)
    assert done.resolved_at is not None
    again = alerts.resolve_alert(backend, SCIENTIST, alert.id)
    assert again.resolved_at == done.resolved_at
    open_page, open_total = alerts.list_alerts(backend, VIEWER)
    assert open_page == [] and open_total == 0
    every, total = alerts.list_alerts(backend, VIEWER, include_resolved=True)
    assert total == 1 and every[0].id == alert.id
    assert backend.store.list_audit(action="alerts.resolve")[0].actor == "sam"


def test_bad_input(backend: Backend) -> None:
    with pytest.raises(InvalidInput):
        alerts.list_alerts(backend, VIEWER, limit=0)
    with pytest.raises(InvalidInput):
        alerts.list_alerts(backend, VIEWER, offset=-1)
    with pytest.raises(InvalidInput):
        alerts.resolve_alert(backend, SCIENTIST, 0)
    with pytest.raises(NotFound):
        alerts.resolve_alert(backend, SCIENTIST, 12345)


def test_http_routes(client: TestClient, backend: Backend, admin_token: str) -> None:
    for i in range(3):
        backend.store.create_alert("drift", "deployment:d", f"drift {i}")
    viewer = _token(backend.store, "vic", Role.VIEWER)
    assert client.get("/api/v1/alerts").status_code == 401
    response = client.get(
        "/api/v1/alerts", params={"limit": 2}, headers={"Authorization": f"Bearer {viewer}"}
    )
    assert response.status_code == 200
    assert response.headers["x-total-count"] == "3"
    assert [a["message"] for a in response.json()] == ["drift 2", "drift 1"]
    first = response.json()[0]["id"]
    forbidden = client.post(
        f"/api/v1/alerts/{first}/resolve", headers={"Authorization": f"Bearer {viewer}"}
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"] == "permission_denied"
    admin = {"Authorization": f"Bearer {admin_token}"}
    resolved = client.post(f"/api/v1/alerts/{first}/resolve", headers=admin)
    assert resolved.status_code == 200 and resolved.json()["resolved_at"]
    assert client.post("/api/v1/alerts/999/resolve", headers=admin).status_code == 404
    assert client.post("/api/v1/alerts/0/resolve", headers=admin).status_code == 422
    assert client.get("/api/v1/alerts", params={"limit": 0}, headers=admin).status_code == 422
