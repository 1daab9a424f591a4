"""Server-side pagination the UI relies on: limit/offset and X-Total-Count on the runs list."""

from __future__ import annotations

import warnings
from datetime import timedelta

import pyarrow as pa

from dlplatform import data
from dlplatform.access import Principal
from dlplatform.api.app import create_app
from dlplatform.context import Backend
from dlplatform.metadata import Role, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_training_jobs_pages_and_total(backend: Backend, admin_token: str) -> None:
    spec = TrainingJobSpec(dataset="digits@c-1", label="target").model_dump_json()
    start = utcnow()
    for i in range(120):
        status = RunStatus.FAILED if i % 4 == 0 else RunStatus.SUCCEEDED
        backend.store.create_run(
            Run(
                id=f"run-{i:04d}",
                owner="admin",
                status=status,
                spec_json=spec,
                created_at=start + timedelta(seconds=i),
            )
        )
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:
        first = client.get("/api/v1/training/jobs", params={"limit": 50}, headers=headers)
        assert first.status_code == 200, first.text
        assert first.headers["x-total-count"] == "120"
        ids = [j["run"]["id"] for j in first.json()]
        assert ids[0] == "run-0119" and len(ids) == 50
        third = client.get(
            "/api/v1/training/jobs", params={"limit": 50, "offset": 100}, headers=headers
        )
        assert [j["run"]["id"] for j in third.json()][-1] == "run-0000"
        assert len(third.json()) == 20
        failed = client.get(
            "/api/v1/training/jobs", params={"status": "FAILED", "limit": 5}, headers=headers
        )
        assert failed.headers["x-total-count"] == "30"
        assert all(j["run"]["status"] == "FAILED" for j in failed.json())
        bad = client.get("/api/v1/training/jobs", params={"offset": -1}, headers=headers)
        assert bad.status_code == 422


def test_dataset_commits_pages_and_total(backend: Backend, admin_token: str) -> None:
    admin = Principal(name="admin", role=Role.ADMIN)
    data.create_dataset(backend, admin, "pages")
    pushed = [
        data.push(backend, admin, "pages", pa.table({"x": [i]}), message=f"push {i}").id
        for i in range(3)
    ]
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:
        every = client.get("/api/v1/datasets/pages/commits", headers=headers)
        assert every.status_code == 200
        assert [c["id"] for c in every.json()] == pushed[::-1]
        assert every.headers["x-total-count"] == "3"
        page = client.get(
            "/api/v1/datasets/pages/commits", params={"limit": 2, "offset": 2}, headers=headers
        )
        assert [c["id"] for c in page.json()] == [pushed[0]]
        assert page.headers["x-total-count"] == "3"
        missing = client.get("/api/v1/datasets/nope/commits", headers=headers)
        assert missing.status_code == 404
