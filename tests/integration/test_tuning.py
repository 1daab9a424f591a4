"""Hyperparameter search end to end on the shared local Ray cluster: queue → one Ray Job running
the Tune driver → trials (each a 1-worker TorchTrainer) → ASHA stops the poor ones early → the
best trial's model registered with lineage; then a second search cancelled mid-run.

Costs: 4 + 2 short 1-worker trials on 300 rows of sklearn digits, 2 trials at a time.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pytest

from dlplatform import data, models
from dlplatform.access import SYSTEM, Principal, issue_token
from dlplatform.api.app import create_app
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.inprocess import Platform
from dlplatform.metadata import Role, RunStatus, User
from dlplatform.metadata.actor import connect_store, stop_store
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import utcnow
from dlplatform.train import tune
from dlplatform.train.scheduler import job_client, stop_scheduler

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration

TIMEOUT_S = 600  # generous: the shared test machine can be very loaded
TRAINING = {"dataset": "digits", "label": "target", "model": "mlp", "workers": 1, "epochs": 4,
            "batch_size": 32, "lr": 0.01, "seed": 3, "params": {"hidden": 16}}  # fmt: skip


@dataclass
class World:
    settings: Settings
    backend: Backend
    alice: Principal
    token: str
    commit_id: str
    user_code: str


@pytest.fixture(scope="module")
def world(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from sklearn.datasets import load_digits

    home = tmp_path_factory.mktemp("tune-home")
    settings = load_settings(home=home, namespace=f"t-tune-{uuid.uuid4().hex[:8]}")
    backend = Backend(
        store=connect_store(settings), artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )  # fmt: skip
    user = User(name="alice", role=Role.DATA_SCIENTIST, created_at=utcnow())
    backend.store.create_user(user)
    token, _ = issue_token(backend.store, "alice")
    digits = load_digits()
    table = pa.table({**{f"p{i}": digits.data[:300, i] for i in range(64)},
                      "target": digits.target[:300]})  # fmt: skip
    data.create_dataset(backend, SYSTEM, "digits")
    commit = data.push(backend, SYSTEM, "digits", table, message="300 digits")
    code = tmp_path_factory.mktemp("tune-user-code")
    (code / "dlp_user_nometric.py").write_text(
        "import ray.train\n"
        "def train_fn(config):\n"
        "    for epoch in range(3):\n"
        "        ray.train.report({'epoch': epoch, 'loss': 1.0 / (epoch + 1)})\n"
    )
    yield World(settings, backend, Principal.of(user), token, commit.id, str(code))
    stop_scheduler(settings)
    stop_store(settings)


def test_bad_input_fails_at_submit(world: World) -> None:
    w = world
    with pytest.raises(InvalidInput, match=r"metric 'accuracy' is never reported .* val_loss"):
        tune.submit(w.backend, w.alice, tune.build_spec(
            training=TRAINING, space={"lr": "loguniform(1e-4,1e-1)"}, metric="accuracy"))  # fmt: skip
    with pytest.raises(InvalidInput, match="samples"):
        tune.build_spec(training=TRAINING, space={"lr": "uniform(0.1,0.2)"}, samples=0)
    with pytest.raises(InvalidInput, match=r"accepted forms: uniform\(LOW,HIGH\)"):
        Platform(w.backend, w.alice).tuning.submit(
            training=TRAINING, space={"lr": "logunifrom(1e-4,1e-1)"}
        )
    with pytest.raises(InvalidInput, match="unknown hyperparameters for model mlp: depthh"):
        tune.submit(w.backend, w.alice, tune.build_spec(
            training=TRAINING, space={"depthh": "choice(1,2)"}))  # fmt: skip
    assert tune.list_jobs(w.backend, w.alice) == []


def test_asha_stops_poor_trials_and_registers_the_best(world: World) -> None:
    w = world
    # One good learning rate and three hopeless ones, in grid order: the first trials set the
    # rung cut-offs, so ASHA (grace 1 epoch, keep 1/2) stops the hopeless ones early.
    spec = tune.build_spec(
        training={**TRAINING, "model_name": "digits-tuned"},
        space={"lr": "grid(0.03,0.00001,0.00002,0.00003)", "hidden": "choice(16,24)"},
        samples=1, concurrency=2, metric="val_loss", mode="min", scheduler="asha",
        grace_period=1, reduction_factor=2,
    )  # fmt: skip
    assert spec.num_trials == 4
    job = tune.submit(w.backend, w.alice, spec)
    assert job.status == "QUEUED" and job.spec.training.dataset == f"digits@{w.commit_id}"
    seen_running: list[int] = []

    def on_update(j: tune.TuningJob) -> None:
        seen_running.append(sum(t.status == "RUNNING" for t in j.trials))

    final = tune.wait_job(w.backend, w.alice, job.id, timeout_s=TIMEOUT_S, poll_s=0.5,
                          on_update=on_update)  # fmt: skip
    assert final.status == "SUCCEEDED", final.run.error
    assert max(seen_running) >= 1 and max(seen_running) <= 2  # concurrency 2
    trials = final.trials
    assert len(trials) == 4
    statuses = [t.status for t in trials]
    assert statuses.count("STOPPED") >= 1, trials
    assert "SUCCEEDED" in statuses and set(statuses) <= {"SUCCEEDED", "STOPPED"}, trials
    for t in trials:  # params and per-epoch metrics of every trial are in the store
        assert set(t.params) == {"lr", "hidden"}
        run = w.backend.store.get_run(t.id)
        assert run.kind == "trial" and run.parent_id == job.id
        assert t.epochs >= 1 and t.metric is not None
        steps = {p.step for p in w.backend.store.get_metrics(t.id, "val_loss")}
        assert steps == set(range(len(steps)))
    for t in trials:
        if t.status == "STOPPED":
            assert t.epochs < 4 and "stopped early by ASHA" in (t.error or "")
        else:
            assert t.epochs == 4
    # sorted by the metric, best first; the good learning rate wins
    values = [t.metric for t in trials]
    assert values == sorted(values)  # type: ignore[type-var]
    best = trials[0]
    assert final.best_trial == best.id and float(best.params["lr"]) == pytest.approx(0.03)
    assert final.best_metric == pytest.approx(best.metric)

    # the best trial's model is registered, with lineage commit → tune → trial → version
    assert final.model_version == "digits-tuned@1"
    mv = models.get_version(w.backend, w.alice, "digits-tuned", 1)
    assert mv.run_id == best.id and mv.dataset_commit == w.commit_id
    edges = {(e.src, e.dst) for e in w.backend.store.edges_of([f"run:{job.id}", f"run:{best.id}"])}
    assert (f"commit:{w.commit_id}", f"run:{job.id}") in edges
    assert (f"run:{job.id}", f"run:{best.id}") in edges
    assert (f"run:{best.id}", "model_version:digits-tuned@1") in edges
    upstream = {n.entity for n in w.backend.store.upstream("model_version:digits-tuned@1")}
    assert {f"run:{best.id}", f"run:{job.id}", f"commit:{w.commit_id}"} <= upstream
    module, _ = models.load_model(w.backend, "digits-tuned", 1)
    assert sum(p.numel() for p in module.parameters()) > 0

    # the trials ASHA stopped hold no CPUs afterwards: no placement group of the job is left
    from ray.util.state import list_placement_groups

    driver = job_client().get_job_info(f"dlp-{job.id}").driver_info
    assert driver is not None
    left = list_placement_groups(filters=[("creator_job_id", "=", driver.id)], limit=1000)
    assert [g.state for g in left if g.state != "REMOVED"] == [], left

    # the same over HTTP: the trial table, and a malformed distribution with the accepted forms
    with TestClient(create_app(w.backend), base_url="http://127.0.0.1") as client:
        auth = {"Authorization": f"Bearer {w.token}"}
        got = client.get(f"/api/v1/tuning/jobs/{job.id}", headers=auth)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["run"]["status"] == "SUCCEEDED"
        assert [t["id"] for t in body["trials"]] == [t.id for t in trials]
        listed = client.get("/api/v1/tuning/jobs", headers=auth).json()
        assert [j["run"]["id"] for j in listed] == [job.id]
        bad = client.post("/api/v1/tuning/jobs", headers=auth,
                          json={"training": TRAINING, "space": {"lr": "uniform(1,)"}})  # fmt: skip
        assert bad.status_code == 422 and "accepted forms" in bad.json()["message"], bad.text


def test_cancel_stops_every_trial(world: World) -> None:
    w = world
    spec = tune.build_spec(
        training={**TRAINING, "epochs": 40, "model_name": "never-registered"},
        space={"lr": "loguniform(0.001,0.1)"}, samples=2, concurrency=2, scheduler="fifo",
    )  # fmt: skip
    job = tune.submit(w.backend, w.alice, spec)
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        current = tune.get_job(w.backend, w.alice, job.id)
        if any(w.backend.store.get_metrics(t.id, "loss") for t in current.trials):
            break
        assert not current.run.status.is_final, current.run.error
        time.sleep(0.5)
    cancelled = tune.cancel_job(w.backend, w.alice, job.id)
    assert cancelled.status == "CANCELLED"
    assert cancelled.trials and all(t.status == "CANCELLED" for t in cancelled.trials)
    client = job_client()
    while time.monotonic() < deadline:
        if str(client.get_job_status(f"dlp-{job.id}")) in {"STOPPED", "JobStatus.STOPPED"}:
            break
        time.sleep(0.5)
    assert str(client.get_job_status(f"dlp-{job.id}")).endswith("STOPPED")
    time.sleep(2.0)  # nothing writes after the stop: the trial records stay cancelled
    after = tune.get_job(w.backend, w.alice, job.id)
    assert after.status == "CANCELLED"
    assert all(t.status == "CANCELLED" for t in after.trials)
    assert after.run.status is RunStatus.CANCELLED and after.model_version is None


def test_user_code_without_the_metric_fails_fast(world: World) -> None:
    w = world
    spec = tune.build_spec(
        training={**TRAINING, "model": "dlp_user_nometric:train_fn",
                  "runtime_env": {"env_vars": {"PYTHONPATH": str(w.user_code)}}, "params": {}},
        space={"lr": "grid(0.01,0.02,0.03)"}, samples=1, concurrency=1, metric="val_loss",
    )  # fmt: skip
    job = tune.submit(w.backend, w.alice, spec)  # user code: checked on its first report
    final = tune.wait_job(w.backend, w.alice, job.id, timeout_s=TIMEOUT_S, poll_s=0.5)
    assert final.status == "FAILED"
    assert "metric 'val_loss' is not reported by the training code" in (final.run.error or "")
    assert "epoch,loss" in (final.run.error or "")
    # the first report stopped the whole search: the other two trials never started
    assert len(final.trials) == 1 and final.trials[0].status == "CANCELLED", final.trials


def test_a_tuning_job_whose_ray_job_vanished_fails_with_its_trials(world: World) -> None:
    """The scheduler's reconcile marks a RUNNING job whose Ray job no longer exists FAILED, and
    leaves none of its trials RUNNING."""
    from dlplatform.metadata import Run
    from dlplatform.train.scheduler import scheduler_for

    store = world.backend.store
    parent = store.create_run(
        Run(id=f"run-gone-{uuid.uuid4().hex[:6]}", kind="tune", owner="alice",
            status=RunStatus.RUNNING, name=f"dlp-gone-{uuid.uuid4().hex[:6]}",
            created_at=utcnow(), started_at=utcnow())
    )  # fmt: skip
    for i in range(2):
        store.create_run(
            Run(id=f"{parent.id}-t{i}", kind="trial", parent_id=parent.id, owner="alice",
                status=RunStatus.RUNNING, created_at=utcnow(), started_at=utcnow())
        )  # fmt: skip
    scheduler_for(world.backend).tick()
    assert store.get_run(parent.id).status is RunStatus.FAILED
    assert "no longer exists" in (store.get_run(parent.id).error or "")
    trials = store.list_runs(kind="trial", parent_id=parent.id)
    assert [t.status for t in trials] == [RunStatus.FAILED] * 2
    assert all("its job failed" in (t.error or "") for t in trials)
