"""The gateway's deployment routes without Ray: auth, validation and not-found paths, which the
service answers before it needs Serve."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from dlplatform.context import Backend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.fixture
def api(backend: Backend) -> Iterator[TestClient]:
    from dlplatform.api.app import create_app

    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:
        yield client


def test_routes_need_a_token(api: TestClient) -> None:
    assert api.get("/api/v1/deployments").status_code == 401
    assert api.post("/api/v1/deployments", json={"model": "m"}).status_code == 401
    assert api.post("/api/v1/feedback", json={"request_id": "r", "label": 1}).status_code == 401


def test_bad_requests_are_4xx_with_a_message(api: TestClient, admin_token: str) -> None:
    h = {"Authorization": f"Bearer {admin_token}"}
    assert api.get("/api/v1/deployments", headers=h).json() == []
    bad = api.post(
        "/api/v1/deployments", json={"model": "m", "config": {"max_batch_size": 0}}, headers=h
    )
    assert bad.status_code == 422
    unknown_field = api.post(
        "/api/v1/deployments", json={"model": "m", "config": {"gpus": 1}}, headers=h
    )
    assert unknown_field.status_code == 422
    missing = api.post("/api/v1/deployments", json={"model": "ghost@3"}, headers=h)
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad_ref = api.post("/api/v1/deployments", json={"model": "Bad Name"}, headers=h)
    assert bad_ref.status_code == 422 and "Bad Name" in bad_ref.json()["message"]
    assert api.delete("/api/v1/deployments/ghost", headers=h).status_code == 404
    assert api.delete("/api/v1/deployments/..%2f..", headers=h).status_code in (404, 422)
    split = api.post("/api/v1/deployments/ghost/traffic", json={"traffic": {"1": 60}}, headers=h)
    assert split.status_code == 422
    split = api.post("/api/v1/deployments/ghost/traffic", json={"traffic": {"1": 100}}, headers=h)
    assert split.status_code == 404
    fb = api.post("/api/v1/feedback", json={"request_id": "nope", "label": 1}, headers=h)
    assert fb.status_code == 404 and "no logged prediction" in fb.json()["message"]
    fb = api.post("/api/v1/feedback", json={"request_id": "../x", "label": 1}, headers=h)
    assert fb.status_code == 422
