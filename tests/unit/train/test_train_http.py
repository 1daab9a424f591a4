"""Training and model routes in-process (no Ray): auth, validation, 404/409, registry reads."""

from __future__ import annotations

import warnings

from dlplatform.access import issue_token
from dlplatform.context import Backend
from dlplatform.metadata import Role, Run, RunStatus, User
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _auth(backend: Backend, name: str, role: Role) -> dict[str, str]:
    backend.store.create_user(User(name=name, role=role, created_at=utcnow()))
    token, _ = issue_token(backend.store, name)
    return {"Authorization": f"Bearer {token}"}


def test_training_routes(backend: Backend, client: TestClient, admin_token: str) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    viewer = _auth(backend, "vic", Role.VIEWER)
    assert client.get("/api/v1/training/jobs").status_code == 401
    assert client.get("/api/v1/training/jobs", headers=viewer).json() == []
    bad = client.post("/api/v1/training/jobs", json={"dataset": "d", "label": "y", "model": "nope"},
                      headers=admin)  # fmt: skip
    assert bad.status_code == 422 and "unknown model 'nope'" in bad.text
    denied = client.post(
        "/api/v1/training/jobs", json={"dataset": "d", "label": "y"}, headers=viewer
    )
    assert denied.status_code == 403 and denied.json()["error"] == "permission_denied"
    spec = TrainingJobSpec(dataset="digits@c-1", label="target")
    backend.store.create_run(Run(id="run-done", owner="admin", status=RunStatus.SUCCEEDED,
                                 spec_json=spec.model_dump_json(), created_at=utcnow()))  # fmt: skip
    got = client.get("/api/v1/training/jobs/run-done", headers=viewer).json()
    assert got["run"]["status"] == "SUCCEEDED" and got["spec"]["dataset"] == "digits@c-1"
    conflict = client.post("/api/v1/training/jobs/run-done/cancel", headers=admin)
    assert conflict.status_code == 409 and "already finished" in conflict.json()["message"]
    assert client.get("/api/v1/training/jobs/run-nope", headers=viewer).status_code == 404
    assert client.get("/api/v1/training/jobs/run-done/metrics", headers=viewer).json() == []
    logs = client.get("/api/v1/training/jobs/run-done/logs", headers=viewer).json()
    assert logs == {"text": "", "offset": 0, "next_offset": 0, "final": True}


def test_model_routes(backend: Backend, client: TestClient, admin_token: str) -> None:
    admin = {"Authorization": f"Bearer {admin_token}"}
    assert client.get("/api/v1/models", headers=admin).json() == []
    missing = client.get("/api/v1/models/nope/versions", headers=admin)
    assert missing.status_code == 404
    history = client.get("/api/v1/models/nope/aliases", headers=admin)  # not an empty history
    assert history.status_code == 404 and "model 'nope' does not exist" in history.text
    reply = client.post(
        "/api/v1/models/nope/aliases/production", json={"version": 1}, headers=admin
    )
    assert reply.status_code == 404
    reply = client.post(
        "/api/v1/models/nope/aliases/production", json={"version": 0}, headers=admin
    )
    assert reply.status_code == 422
