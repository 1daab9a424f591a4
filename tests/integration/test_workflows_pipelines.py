"""The built-in pipelines end to end on the shared Ray cluster, with real training and serving:
a new commit starts ``train_and_deploy`` (train → evaluate → gate → promote + deploy); a bad
commit fails the gate and nothing is deployed; ``monitor`` raises an alert when feedback labels
show the accuracy dropped; the pipeline ending in a judged rollout promotes its version."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from fixtures_serve import serve_url  # noqa: F401

from dlplatform import data, models, serve
from dlplatform.access import SYSTEM
from dlplatform.config import load_settings
from dlplatform.context import Backend
from dlplatform.inprocess import Platform
from dlplatform.metadata import RunStatus, WorkflowRun
from dlplatform.metadata.actor import connect_store, stop_store
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.serve import FeedbackRequest
from dlplatform.workflows import stop_manager

pytestmark = pytest.mark.integration

TD = "train_and_deploy"  # built-in workflows, by their registered names
MONITOR = "monitor"
MODEL = "digits-mlp"
RUN_TIMEOUT_S = 600


@dataclass
class World:
    p: Platform
    table: pa.Table


@pytest.fixture(scope="module")
def world(serve_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:  # noqa: F811
    from sklearn.datasets import load_digits

    settings = load_settings(
        home=tmp_path_factory.mktemp("wf-pipe"), namespace=f"wf-pipe-{uuid.uuid4().hex[:8]}"
    )
    backend = Backend(
        store=connect_store(settings),  # type: ignore[arg-type]
        artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )
    digits = load_digits()
    table = pa.table(
        {**{f"p{i}": digits.data[:600, i] for i in range(64)}, "target": digits.target[:600]}
    )
    data.create_dataset(backend, SYSTEM, "digits")
    data.push(backend, SYSTEM, "digits", table, message="before the trigger")
    yield World(Platform(backend, SYSTEM), table)
    for d in backend.store.list_deployments():
        serve.undeploy(backend, SYSTEM, d.name)
    stop_manager(settings)
    from dlplatform.serve._rollout_driver import stop_driver
    from dlplatform.train.scheduler import stop_scheduler

    stop_driver(settings)

    stop_scheduler(settings)
    stop_store(settings)


def _next_run(p: Platform, workflow: str, seen: set[str]) -> WorkflowRun:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [r for r in p.workflows.list() if r.workflow == workflow and r.id not in seen]
        if new:
            seen.add(new[0].id)
            return new[0]
        time.sleep(0.3)
    raise AssertionError(f"no new run of {workflow}")


def test_commits_train_gate_deploy_and_monitor_alerts(world: World) -> None:
    p, backend = world.p, world.p.backend
    p.workflows.on_commit(
        "digits",
        TD,
        {
            "label": "target",
            "epochs": 3,
            "workers": 1,
            "params": {"hidden": 32},
            "training": {"lr": 0.01, "batch_size": 32, "seed": 7},
            "min_score": 0.6,
            "max_regression": 0.05,
        },
    )
    seen: set[str] = set()

    good = data.push(backend, SYSTEM, "digits", world.table, mode="overwrite", message="good")
    run = _next_run(p, TD, seen)
    detail = p.workflows.wait(run.id, timeout_s=RUN_TIMEOUT_S)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    assert [s.status for s in detail.steps] == [RunStatus.SUCCEEDED] * 4
    assert p.workflows.load_output(run.id, "gate")["accepted"] is True
    deployment = p.workflows.load_output(run.id, "deploy-model")
    assert deployment.model == MODEL
    production = models.get_version(backend, SYSTEM, MODEL, "production")
    assert production.version == deployment.version
    assert production.dataset_commit == good.id
    produced = {n.entity for n in backend.store.downstream(f"workflow_run:{run.id}", 1)}
    assert f"model_version:{MODEL}@{production.version}" in produced
    assert f"deployment:{MODEL}" in produced

    # a deliberately bad commit: labels shuffled, so nothing can be learned
    labels = np.random.default_rng(0).permutation(world.table["target"].to_numpy())
    bad_table = world.table.set_column(64, "target", pa.array(labels))
    data.push(backend, SYSTEM, "digits", bad_table, mode="overwrite", message="bad")
    bad = _next_run(p, TD, seen)
    detail = p.workflows.wait(bad.id, timeout_s=RUN_TIMEOUT_S)
    assert detail.run.status is RunStatus.FAILED
    steps = {s.step_id: s for s in detail.steps}
    assert steps["gate"].status is RunStatus.FAILED
    assert "GateRejected" in (steps["gate"].error or "")
    assert "rejected: val_accuracy" in (detail.run.error or "")
    assert steps["deploy-model"].status is RunStatus.QUEUED
    assert models.get_version(backend, SYSTEM, MODEL, "production").version == production.version
    assert backend.store.get_deployment(MODEL).version == production.version

    # the monitor: predictions whose feedback labels say they were all wrong
    rows = [{f"p{i}": float(world.table[f"p{i}"][k].as_py()) for i in range(64)} for k in range(20)]
    result = serve.predict(backend, SYSTEM, MODEL, rows)
    wrong = [(int(o) + 1) % 10 if isinstance(o, int | float) else -1 for o in result.outputs]
    deadline = time.monotonic() + 30
    while True:  # the prediction log is flushed about once a second
        try:
            serve.feedback(
                backend, SYSTEM, FeedbackRequest(request_id=result.request_id, label=wrong)
            )
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    run = p.workflows.run(MONITOR, {"deployment": MODEL, "min_accuracy": 0.9})
    detail = p.workflows.wait(run.id, timeout_s=RUN_TIMEOUT_S)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    report = p.workflows.load_output(run.id, "check-and-alert")
    assert report["labelled"] == 20 and report["accuracy"] == 0.0
    assert report["ok"] is False and report["alerts"]
    alerts = backend.store.list_alerts()
    assert any(a.kind == "accuracy" and a.target == f"deployment:{MODEL}" for a in alerts)

    # the pipeline ending in a judged rollout: a version retrained on the good commit goes out
    # in one step under live requests and promotes itself
    params = {"dataset": "digits", "commit": good.id, "label": "target", "epochs": 3,
              "workers": 1, "params": {"hidden": 32},
              "training": {"lr": 0.01, "batch_size": 32, "seed": 7}, "min_score": 0.6,
              "max_regression": 0.05,
              "rollout": {"steps": [100], "min_dwell_s": 1, "min_requests": 20,
                          "min_samples": 20, "latency_tolerance": 1.0,
                          "latency_slack_ms": 250}}  # fmt: skip
    stop = threading.Event()

    def requests() -> None:
        while not stop.is_set():
            serve.predict(backend, SYSTEM, MODEL, rows[:1])
            time.sleep(0.02)

    client = threading.Thread(target=requests, daemon=True)
    client.start()
    try:
        run = p.workflows.run(TD, params)
        detail = p.workflows.wait(run.id, timeout_s=RUN_TIMEOUT_S)
    finally:
        stop.set()
        client.join(timeout=30)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    assert [s.step_id for s in detail.steps][-1] == "roll-out-model"
    rolled = p.workflows.load_output(run.id, "roll-out-model")
    assert rolled["status"] == "PROMOTED" and rolled["version"] > production.version, rolled
    assert models.get_version(backend, SYSTEM, MODEL, "production").version == rolled["version"]
    status = serve.rollout_status(backend, SYSTEM, MODEL)
    assert (status.id, status.status) == (rolled["rollout"], "PROMOTED")
    assert [e.kind for e in status.events] == ["start", "traffic", "promote"]
