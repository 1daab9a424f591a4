"""Online serving on real Ray Serve: HTTP predictions with tokens, bad input, rollout under load,
traffic split, prediction log + feedback, the gateway routes, restore after a restart."""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
import warnings
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fixtures_serve import (  # noqa: F401
    FEATURES,
    ServingEnv,
    register_mlp,
    serve_url,
    serving_env,
)

from dlplatform import serve as serving
from dlplatform.access import SYSTEM, Principal, issue_token, revoke_token
from dlplatform.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied, TooLarge
from dlplatform.metadata import Role
from dlplatform.metadata.records import utcnow
from dlplatform.serve import DeploymentSpec, FeedbackRequest

pytestmark = pytest.mark.integration

ROW = [0.1, 0.2, 0.3, 0.4]


Env = ServingEnv


@pytest.fixture(scope="module")
def env(serving_env: ServingEnv) -> ServingEnv:  # noqa: F811
    return serving_env


def _name(prefix: str = "srv") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def serve_stats(name: str) -> dict[str, float]:
    from ray import serve

    return dict(serve.get_app_handle(f"model-{name}").stats.remote().result(timeout_s=30))


def _flush(name: str) -> None:
    from ray import serve

    serve.get_app_handle(f"model-{name}").flush_log.remote().result(timeout_s=30)


def test_deploy_predict_over_http_with_validation_log_and_feedback(env: Env) -> None:
    name = _name()
    v1 = register_mlp(env.backend, name, seed=1)
    info = serving.deploy(env.backend, SYSTEM, name, DeploymentSpec(max_rows=5))
    assert (info.name, info.version, info.status, info.route) == (
        name,
        v1.version,
        "RUNNING",
        f"/models/{name}",
    )
    assert info.replicas == 1

    ok = env.post(name, {"inputs": [ROW, dict(zip(FEATURES, ROW, strict=True))]}, env.app_token)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["model"] == name and body["version"] == v1.version
    assert len(body["outputs"]) == 2 and body["outputs"][0] == body["outputs"][1]
    assert set(body["outputs"]) <= {"a", "b", "c"}
    assert ok.headers["x-dlp-request-id"] == body["request_id"]
    assert ok.headers["x-model-version"] == str(v1.version)

    # auth: no token, a wrong token, a role without predict
    no_token = env.post(name, {"inputs": [ROW]})
    assert no_token.status_code == 401 and no_token.json()["error"] == "unauthenticated"
    assert env.post(name, {"inputs": [ROW]}, "dlp_wrong").status_code == 401
    denied = env.post(name, {"inputs": [ROW]}, env.viewer_token)
    assert denied.status_code == 403 and "predict" in denied.json()["message"]
    # the gateway's Host check (DNS rebinding), on the model endpoint too
    foreign = env.post(name, {"inputs": [ROW]}, env.app_token, headers={"Host": "evil.example"})
    assert foreign.status_code == 400 and foreign.json()["error"] == "bad_request"
    # a revocation reaches the replica at once (the store's token epoch), not after a TTL
    secret, token = issue_token(env.backend.store, "app1")
    assert env.post(name, {"inputs": [ROW]}, secret).status_code == 200
    stats = serve_stats(name)
    assert stats["token_watch_live"] == 1.0  # the replica holds its long poll on the store
    for _ in range(3):  # remembered by the replica: no more look-ups in the store
        assert env.post(name, {"inputs": [ROW]}, secret).status_code == 200
    assert serve_stats(name)["token_lookups"] == stats["token_lookups"]
    revoke_token(env.backend, SYSTEM, token.id)
    revoked_at = time.monotonic()
    while (status := env.post(name, {"inputs": [ROW]}, secret).status_code) == 200:
        assert time.monotonic() - revoked_at < 2.0, "a revoked token still works"
    assert status == 401

    # bad input: each says what was expected
    short = env.post(name, {"inputs": [[1.0, 2.0]]}, env.app_token)
    assert short.status_code == 422 and "expected a list of 4 numbers" in short.json()["message"]
    typed = env.post(name, {"inputs": [[1.0, "x", 3.0, 4.0]]}, env.app_token)
    assert typed.status_code == 422
    assert "feature 'f1': expected a number" in typed.json()["message"]
    missing = env.post(name, {"inputs": [{"f0": 1, "f1": 2, "f2": 3}]}, env.app_token)
    assert missing.status_code == 422 and "missing feature(s) f3" in missing.json()["message"]
    empty = env.post(name, {"inputs": []}, env.app_token)
    assert empty.status_code == 422 and "empty" in empty.json()["message"]
    too_many = env.post(name, {"inputs": [ROW] * 6}, env.app_token)
    assert too_many.status_code == 413 and "limit of 5 rows" in too_many.json()["message"]
    not_json = env.post(name, b"{nope", env.app_token)
    assert not_json.status_code == 422 and "JSON" in not_json.json()["message"]
    assert env.client.get(f"/models/{name}").status_code == 405
    assert env.post(_name("nope"), {"inputs": [ROW]}, env.app_token).status_code == 404

    # the same through the service (SDK/CLI path), with typed errors
    result = serving.predict(env.backend, SYSTEM, name, [ROW])
    assert result.version == v1.version and result.outputs == body["outputs"][:1]
    with pytest.raises(InvalidInput, match="expected a list of 4 numbers"):
        serving.predict(env.backend, SYSTEM, name, [[1.0]])
    with pytest.raises(TooLarge):
        serving.predict(env.backend, SYSTEM, name, [ROW] * 6)

    # prediction log (flushed in batches) + feedback + lineage
    _flush(name)
    logged = env.backend.store.get_prediction(body["request_id"])
    assert logged.version == v1.version and logged.deployment == name
    assert json.loads(logged.inputs_json)[0] == ROW
    assert json.loads(logged.outputs_json) == body["outputs"]
    assert logged.latency_ms > 0
    fb = serving.feedback(
        env.backend, SYSTEM, FeedbackRequest(request_id=body["request_id"], label=["a", "b"])
    )
    assert env.backend.store.list_feedback(body["request_id"]) == [fb]
    with pytest.raises(NotFound, match="no logged prediction"):
        serving.feedback(env.backend, SYSTEM, FeedbackRequest(request_id="nope", label=1))
    up = [n.entity for n in env.backend.store.upstream(f"prediction:{body['request_id']}")]
    assert f"deployment:{name}" in up and f"model_version:{name}@{v1.version}" in up

    listed = {d.name: d for d in serving.list_deployments(env.backend, SYSTEM)}
    assert listed[name].metrics["requests"] >= 2 and listed[name].metrics["errors"] >= 1

    # Prometheus: the documented series reach Ray's metrics endpoint, per model and version
    text = _scrape_until(rf'ray_dlp_serve_requests_total\{{[^}}]*model="{name}"[^}}]*\}} [1-9]')
    for series in ("ray_dlp_serve_errors_total", "ray_dlp_serve_latency_ms_bucket"):
        lines = [ln for ln in text.splitlines() if ln.startswith(series + "{")]
        assert any(f'model="{name}"' in ln and f'version="{v1.version}"' in ln for ln in lines)
    assert any('code="invalid_input"' in ln for ln in text.splitlines() if "errors_total" in ln)


def _scrape_until(pattern: str, timeout_s: float = 90) -> str:
    """The head's Prometheus page once ``pattern`` appears in it (Ray exports every few s)."""
    import httpx
    import ray

    node = next(n for n in ray.nodes() if n["Alive"])
    url = f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
    deadline, text = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        text = httpx.get(url, timeout=10).text
        if re.search(pattern, text):
            return text
        time.sleep(2)
    found = sorted({ln.split("{")[0] for ln in text.splitlines() if "dlp_serve" in ln})
    raise AssertionError(f"{pattern!r} not exported after {timeout_s} s; dlp series: {found}")


def test_deploy_refused_for_missing_version_bad_artifact_and_permissions(env: Env) -> None:
    name = _name()
    version = register_mlp(env.backend, name, seed=987)  # weights no other test shares
    with pytest.raises(NotFound):
        serving.deploy(env.backend, SYSTEM, f"{name}@{version.version + 5}")
    with pytest.raises(NotFound):
        serving.deploy(env.backend, SYSTEM, f"{name}@no-such-alias")
    with pytest.raises(NotFound):
        serving.deploy(env.backend, SYSTEM, _name("ghost"))
    with pytest.raises(InvalidInput):
        serving.deploy(env.backend, SYSTEM, "Bad Name")
    viewer = Principal(name="viewer1", role=Role.VIEWER)
    with pytest.raises(PermissionDenied):
        serving.deploy(env.backend, viewer, name)

    # tamper with the stored weights: the deploy is refused, nothing is recorded
    artifacts = env.backend.artifacts
    manifest = json.loads(artifacts.get_bytes(version.artifact_sha256))
    weights = Path(artifacts.path_for(manifest["weights.pt"]["sha256"]))
    os.chmod(weights, 0o644)
    weights.write_bytes(b"not the weights")
    with pytest.raises(IntegrityError, match="deploy refused"):
        serving.deploy(env.backend, SYSTEM, name)
    with pytest.raises(NotFound):
        env.backend.store.get_deployment(name)


def test_rollout_has_zero_failed_requests_then_traffic_split_and_restore(env: Env) -> None:
    from ray import serve

    name = _name()
    v1 = register_mlp(env.backend, name, seed=1)
    v2 = register_mlp(env.backend, name, seed=2)
    serving.deploy(env.backend, SYSTEM, f"{name}@{v1.version}")

    seen: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=env.url, timeout=30) as c:
            while not stop.is_set():
                try:
                    r = c.post(
                        f"/models/{name}",
                        json={"inputs": [ROW]},
                        headers={"Authorization": f"Bearer {env.app_token}"},
                    )
                    if r.status_code == 200:
                        seen.append(r.json()["version"])
                    else:
                        failures.append(f"{r.status_code} {r.text[:200]}")
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    try:
        while len(seen) < 20 and thread.is_alive():
            time.sleep(0.05)
        info = serving.deploy(env.backend, SYSTEM, f"{name}@{v2.version}")
        assert info.version == v2.version
        deadline = time.monotonic() + 30
        while seen[-20:].count(v2.version) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert failures == []
    assert seen[0] == v1.version and seen[-1] == v2.version and len(seen) > 40

    # canary split: both versions answer, each response names its version
    split = serving.set_traffic(env.backend, SYSTEM, name, {v1.version: 50, v2.version: 50})
    assert split.traffic == {str(v1.version): 50, str(v2.version): 50}
    versions = {
        env.post(name, {"inputs": [ROW]}, env.app_token).json()["version"] for _ in range(60)
    }
    assert versions == {v1.version, v2.version}
    with pytest.raises(InvalidInput, match="sum to 100"):
        serving.set_traffic(env.backend, SYSTEM, name, {v1.version: 50, v2.version: 20})
    with pytest.raises(NotFound):
        serving.set_traffic(env.backend, SYSTEM, name, {v1.version: 50, 99: 50})

    # restart: the app is gone; restore_deployments brings it back from metadata
    serve.delete(f"model-{name}")
    assert env.post(name, {"inputs": [ROW]}, env.app_token).status_code == 404
    restored = {d.name: d for d in serving.restore_deployments(env.backend)}
    assert restored[name].status == "RUNNING"
    assert restored[name].traffic == {str(v1.version): 50, str(v2.version): 50}
    assert env.post(name, {"inputs": [ROW]}, env.app_token).status_code == 200


def test_gateway_routes_deploy_list_traffic_feedback_undeploy(env: Env) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from dlplatform.api.app import create_app

    name = _name()
    v1 = register_mlp(env.backend, name)
    headers = {"Authorization": f"Bearer {env.admin_token}"}
    with TestClient(create_app(env.backend), base_url="http://127.0.0.1") as api:
        assert api.get("/api/v1/deployments").status_code == 401
        bad = api.post(
            "/api/v1/deployments",
            json={"model": name, "config": {"max_replicas": 0}},
            headers=headers,
        )
        assert bad.status_code == 422
        # more CPUs than any node has: refused at once with the reason, nothing stored
        t0 = time.monotonic()
        huge = api.post(
            "/api/v1/deployments",
            json={"model": f"{name}@{v1.version}", "config": {"num_cpus": 64}},
            headers=headers,
        )
        assert huge.status_code == 422 and "largest node" in huge.json()["message"], huge.text
        assert time.monotonic() - t0 < 30
        assert api.get(f"/api/v1/deployments/{name}", headers=headers).status_code == 404
        missing = api.post("/api/v1/deployments", json={"model": f"{name}@9"}, headers=headers)
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        created = api.post(
            "/api/v1/deployments",
            json={"model": f"{name}@{v1.version}", "config": {"allow_anonymous": True}},
            headers=headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["config"]["allow_anonymous"] is True
        listed = api.get("/api/v1/deployments", headers=headers).json()
        assert name in {d["name"] for d in listed}

        # anonymous access, allowed by this deployment only
        anon = env.post(name, {"inputs": [ROW]})
        assert anon.status_code == 200
        rid = anon.json()["request_id"]
        _flush(name)
        fb = api.post("/api/v1/feedback", json={"request_id": rid, "label": "a"}, headers=headers)
        assert fb.status_code == 201 and fb.json()["label_json"] == '"a"'
        bad_split = api.post(
            f"/api/v1/deployments/{name}/traffic", json={"traffic": {"1": 70}}, headers=headers
        )
        assert bad_split.status_code == 422
        gone = api.delete(f"/api/v1/deployments/{name}", headers=headers)
        assert gone.status_code == 200 and gone.json()["name"] == name
        assert api.delete(f"/api/v1/deployments/{name}", headers=headers).status_code == 404
        # what it held, deploy to undeploy: its replica(s) x 0.25 CPUs (the default num_cpus)
        held = api.get("/api/v1/usage", params={"by": "deployment", "since": "1h"},
                       headers=headers).json()  # fmt: skip
        (mine,) = [t for t in held["totals"] if t["key"] == name]
        assert mine["wall_seconds"] > 0 and mine["cpu_seconds"] >= 0.25 * mine["wall_seconds"]
    intervals = env.backend.store.list_usage(utcnow() - timedelta(hours=1), utcnow(),
                                             kind="deployment")  # fmt: skip
    assert [i.end_at is not None for i in intervals if i.subject == name] == [True]
    assert env.post(name, {"inputs": [ROW]}).status_code == 404
