"""The multiplexed shared app (LRU eviction and reload, counted) and batch inference into a
dataset commit with lineage, on the real session cluster."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
from fixtures_serve import (  # noqa: F401
    FEATURES,
    ServingEnv,
    register_mlp,
    serve_url,
    serving_env,
)

from dlplatform import data
from dlplatform import serve as serving
from dlplatform.access import SYSTEM
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.serve import BatchPredictResult, DeploymentSpec

pytestmark = pytest.mark.integration

ROW = [0.1, 0.2, 0.3, 0.4]


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def test_shared_app_evicts_least_recently_used_and_reloads(serving_env: ServingEnv) -> None:  # noqa: F811
    from ray import serve

    env = serving_env
    spec = DeploymentSpec(shared=True, max_models_per_replica=2)
    names = [_name("tail") for _ in range(3)]
    for i, name in enumerate(names):
        register_mlp(env.backend, name, seed=i)
        info = serving.deploy(env.backend, SYSTEM, name, spec)
        assert info.shared and info.status == "RUNNING" and info.route == f"/models/{name}"

    handle = serve.get_app_handle("dlp-shared-models")
    before = handle.multiplex_stats.remote().result(timeout_s=30)
    order = [names[0], names[1], names[2], names[0]]  # the 3rd evicts a, the 4th reloads a
    for name in order:
        r = env.post(name, {"inputs": [ROW]}, env.app_token)
        assert r.status_code == 200, r.text
        assert r.json()["model"] == name and r.json()["version"] == 1
    after = handle.multiplex_stats.remote().result(timeout_s=30)
    assert after["loads"] - before["loads"] == 4
    assert after["evictions"] - before["evictions"] >= 2
    assert len(after["loaded"]) == 2 and f"{names[0]}@1" in after["loaded"]

    # same auth and validation as dedicated apps, checked before a model is looked up or
    # loaded: names[1] (evicted) and an unknown name answer alike, and nothing is loaded
    ghost = _name("ghost")
    for token, status in ((None, 401), ("dlp_wrong", 401), (env.viewer_token, 403)):
        codes = [env.post(n, {"inputs": [ROW]}, token).status_code for n in (names[1], ghost)]
        assert codes == [status, status]
    foreign = env.post(names[1], {"inputs": [ROW]}, env.app_token, headers={"Host": "evil.example"})
    assert foreign.status_code == 400
    assert handle.multiplex_stats.remote().result(timeout_s=30)["loads"] == after["loads"]
    bad = env.post(names[1], {"inputs": [[1.0]]}, env.app_token)
    assert bad.status_code == 422 and "expected a list of 4 numbers" in bad.json()["message"]
    missing = env.post(ghost, {"inputs": [ROW]}, env.app_token)
    assert missing.status_code == 404 and "no model is deployed" in missing.json()["message"]
    assert serving.predict(env.backend, SYSTEM, names[2], [ROW]).model == names[2]

    listed = {d.name: d for d in serving.list_deployments(env.backend, SYSTEM)}
    assert listed[names[0]].metrics["model_loads"] >= 4

    serving.undeploy(env.backend, SYSTEM, names[0])
    with pytest.raises(NotFound):
        serving.undeploy(env.backend, SYSTEM, names[0])


def test_batch_predict_commits_predictions_with_lineage(serving_env: ServingEnv) -> None:  # noqa: F811
    env = serving_env
    model = _name("bm")
    version = register_mlp(env.backend, model)
    source = _name("rows")
    data.create_dataset(env.backend, SYSTEM, source)
    n = 300
    table = pa.table(
        {f: pa.array([float(i % 7) * (j + 1) for i in range(n)]) for j, f in enumerate(FEATURES)}
        | {"id": pa.array(range(n))}
    )
    commit = data.push(env.backend, SYSTEM, source, table)

    out = _name("preds")
    result = serving.batch_predict(env.backend, SYSTEM, f"{model}@1", source, out, workers=1)
    assert (result.rows, result.input_commit, result.output_dataset) == (n, commit.id, out)
    written = data.to_arrow(
        env.backend, data.resolve(env.backend, SYSTEM, f"{out}@{result.output_commit}")
    )
    assert written.num_rows == n and "prediction" in written.column_names
    assert set(written.column("prediction").to_pylist()) <= {"a", "b", "c"}
    # the same rows through the serving path give the same classes
    first = written.sort_by("id").slice(0, 5)
    rows = [[first.column(f)[i].as_py() for f in FEATURES] for i in range(5)]
    import torch

    from dlplatform.models import load_model

    module, signature = load_model(env.backend, model, version.version)
    with torch.no_grad():
        idx = module(torch.tensor(rows, dtype=torch.float32)).argmax(dim=1).tolist()
    assert [signature.classes[i] for i in idx] == first.column("prediction").to_pylist()

    up = {n.entity for n in env.backend.store.upstream(f"commit:{result.output_commit}", 1)}
    assert {f"commit:{commit.id}", f"model_version:{model}@1"} <= up

    with pytest.raises(InvalidInput, match="must differ"):
        serving.batch_predict(env.backend, SYSTEM, model, source, source)
    with pytest.raises(NotFound):
        serving.batch_predict(env.backend, SYSTEM, f"{model}@7", source, out)
    narrow = _name("narrow")
    data.create_dataset(env.backend, SYSTEM, narrow)
    data.push(env.backend, SYSTEM, narrow, pa.table({"f0": [1.0], "f1": [2.0]}))
    with pytest.raises(InvalidInput, match="lacks the model's feature column"):
        serving.batch_predict(env.backend, SYSTEM, model, narrow, out)


def test_batch_predict_through_the_gateway(
    gateway_url: str, gateway_backend: Backend, gateway_admin_token: str
) -> None:
    """``POST /api/v1/batch-predictions`` runs ``batch_predict`` in the gateway's Serve replica
    (as the token's user) and answers 201 once the output commit exists."""
    import httpx

    backend = gateway_backend
    model = _name("gbm")
    register_mlp(backend, model)
    source = _name("grows")
    data.create_dataset(backend, SYSTEM, source)
    n = 40
    table = pa.table(
        {f: pa.array([float(i % 5) * (j + 1) for i in range(n)]) for j, f in enumerate(FEATURES)}
        | {"id": pa.array(range(n))}
    )
    commit = data.push(backend, SYSTEM, source, table)
    url = f"{gateway_url}/api/v1/batch-predictions"
    auth = {"Authorization": f"Bearer {gateway_admin_token}"}
    out = _name("gpreds")
    body = {"model": f"{model}@1", "dataset": source, "output": out, "workers": 1}
    reply = httpx.post(url, json=body, headers=auth, timeout=300)
    assert reply.status_code == 201, reply.text
    result = BatchPredictResult.model_validate(reply.json())
    assert (result.model, result.version, result.input_dataset, result.input_commit) == (
        model, 1, source, commit.id,
    )  # fmt: skip
    assert (result.output_dataset, result.rows) == (out, n)
    written = data.to_arrow(backend, data.resolve(backend, SYSTEM, f"{out}@{result.output_commit}"))
    assert written.num_rows == n and set(written.column("prediction").to_pylist()) <= {
        "a",
        "b",
        "c",
    }
    up = {e.entity for e in backend.store.upstream(f"commit:{result.output_commit}", 1)}
    assert {f"commit:{commit.id}", f"model_version:{model}@1"} <= up
    writes = backend.store.list_audit(actor="admin", action="dataset.write")
    assert any(e.target == f"dataset:{out}" for e in writes)

    same = httpx.post(url, json=body | {"output": source}, headers=auth, timeout=60)
    assert same.status_code == 422 and "must differ" in same.json()["message"], same.text
