"""Training end to end on the shared local Ray cluster: queue → the warm pool (built-in models) or
Ray Job → TorchTrainer (user code, bigger jobs) → per-epoch metrics → registered model version
with lineage → promote; a worker process killed mid-run; a pool job cancelled, and one whose
data read fails or whose worker dies at its start; user code that raises; bad input; the direct
`ray job submit` path; reproducibility across the two paths.

Costs: the built-in jobs run on the pool's two warm workers (seconds each); user code and the
direct `ray job submit` job run through Ray Train (one job at a time on the 4-CPU test cluster:
2 workers + 1 CPU for data).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from dlplatform import data, models, train
from dlplatform.access import SYSTEM, Principal, issue_token
from dlplatform.api.app import create_app
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound, PermissionDenied
from dlplatform.inprocess import Platform
from dlplatform.metadata import Role, RunStatus, User
from dlplatform.metadata.actor import connect_store, stop_store
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec
from dlplatform.train.scheduler import connect_scheduler, job_client, job_env, stop_scheduler

POOL_SIZE = 2

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

pytestmark = pytest.mark.integration

JOB_TIMEOUT_S = 300
BASE = {"label": "target", "model": "mlp", "workers": 2, "epochs": 3, "batch_size": 32,
        "lr": 0.01, "seed": 7, "params": {"hidden": 32}}  # fmt: skip


@dataclass
class World:
    settings: Settings
    backend: Backend
    alice: Principal
    alice_token: str
    bob: Principal
    commit_id: str
    user_code: Path


@pytest.fixture(scope="module")
def world(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from sklearn.datasets import load_digits

    home = tmp_path_factory.mktemp("train-home")
    settings = load_settings(home=home, namespace=f"t-train-{uuid.uuid4().hex[:8]}",
                             train_pool_size=POOL_SIZE)  # fmt: skip
    backend = Backend(
        store=connect_store(settings), artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )  # fmt: skip
    connect_scheduler(settings).warm_pool()  # as `dlp up` does: the pool starts meanwhile
    users = {}
    for name, role in (("alice", Role.DATA_SCIENTIST), ("bob", Role.RESEARCHER)):
        user = User(name=name, role=role, created_at=utcnow())
        backend.store.create_user(user)
        users[name] = Principal.of(user)
    token, _ = issue_token(backend.store, "alice")
    digits = load_digits()
    table = pa.table({**{f"p{i}": digits.data[:600, i] for i in range(64)},
                      "target": digits.target[:600]})  # fmt: skip
    data.create_dataset(backend, SYSTEM, "digits")
    commit = data.push(backend, SYSTEM, "digits", table, message="600 digits")
    data.create_dataset(backend, SYSTEM, "people")
    data.push(backend, SYSTEM, "people", pa.table({"age": [30, 40, 50], "city": ["a", "b", "c"],
                                                  "label": [0, 1, 0]}))  # fmt: skip
    code = tmp_path_factory.mktemp("user-code")
    (code / "dlp_user_boom.py").write_text(
        "def train_fn(config):\n"
        "    raise ValueError('boom: the user training function failed on purpose')\n"
    )
    yield World(settings, backend, users["alice"], token, users["bob"], commit.id, code)
    stop_scheduler(settings)
    stop_store(settings)


def _submit(w: World, **fields: object) -> str:
    spec = TrainingJobSpec(**{"dataset": "digits", **BASE, **fields})  # type: ignore[arg-type]
    return train.submit(w.backend, w.alice, spec).id


def _wait(w: World, job_id: str, seen: list[tuple[str, int]] | None = None) -> train.TrainingJob:
    def on_update(job: train.TrainingJob, points: list[object]) -> None:
        if seen is not None:
            seen.append((job.status, len(train.epoch_table(points))))  # type: ignore[arg-type]

    return train.wait_job(w.backend, w.alice, job_id, timeout_s=JOB_TIMEOUT_S, poll_s=0.2,
                          on_update=on_update)  # fmt: skip


def test_bad_input_is_rejected_at_submit(world: World) -> None:
    w = world
    with pytest.raises(NotFound, match="nope"):
        train.submit(w.backend, w.alice, TrainingJobSpec(dataset="nope", label="target"))
    with pytest.raises(NotFound):
        _submit(w, dataset="digits@c-doesnotexist")
    with pytest.raises(InvalidInput, match="label column 'label' is not in dataset digits"):
        _submit(w, label="label")
    with pytest.raises(InvalidInput, match=r"not numeric: city \(string\)"):
        train.submit(w.backend, w.alice, TrainingJobSpec(dataset="people", label="label"))
    with pytest.raises(InvalidInput, match="unknown model 'gpt'"):
        Platform(w.backend, w.alice).training.submit(dataset="digits", label="target", model="gpt")
    with pytest.raises(InvalidInput, match=r"needs 8 CPUs for 8 workers .* cluster has 4 CPUs"):
        _submit(w, workers=8)
    with pytest.raises(PermissionDenied):
        train.submit(w.backend, Principal(name="v", role=Role.VIEWER),
                     TrainingJobSpec(dataset="digits", label="target"))  # fmt: skip
    assert train.list_jobs(w.backend, w.alice) == []


def _assert_startup_adds_up(w: World, job: train.TrainingJob) -> None:
    """The job's startup breakdown covers every stage from submit to the first training step,
    its parts add up to that time as measured apart from it (the first step-level metric is
    sent right after the first step), and step-level metrics came before the first epoch
    ended."""
    startup = job.startup
    if job.run.name.startswith("pool-"):  # no Ray Job: the scheduler drives it, warm workers
        stages = {"admitted", "planned", "data_ready", "workers_assigned", "fit_started"}
        assert not {"job_submitted", "driver_started", "driver_ready"} & set(startup)
    else:
        stages = {"admitted", "job_submitted", "driver_started", "driver_ready", "data_ready"}
    assert stages | {"worker_started", "loop_started", "first_batch",
                     "first_step"} <= set(startup), startup  # fmt: skip
    parts = sum(v for k, v in startup.items() if k != "total")
    assert parts == pytest.approx(startup["total"], abs=0.02)
    points = train.get_metrics(w.backend, w.alice, job.id)
    first_step = min(p.timestamp for p in points if p.key == "step/loss" and p.step == 1)
    measured = first_step - job.run.created_at.timestamp()
    assert startup["total"] == pytest.approx(measured, abs=0.5), (startup, measured)
    epoch_0_end = min(p.timestamp for p in points if p.key == "epoch_time_s" and p.step == 0)
    assert first_step < epoch_0_end


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + 60  # a killed process is reaped by Ray shortly after
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _assert_pool_whole(w: World, gone: list[int]) -> None:
    """No job holds a pool member, the pool has all its members again, and the processes of
    ``gone`` (killed members) are not among them, nor running."""
    status = connect_scheduler(w.settings).pool_status()
    assert status["busy"] == {} and status["healthy"], status
    assert status["size"] == status["free"] == POOL_SIZE, status
    for pid in gone:
        assert pid not in status["free_pids"] and _gone(pid), (pid, status)


def test_queue_train_register_promote(world: World) -> None:
    w = world
    main = _submit(w)
    # working_dir is admin-only (it uploads files of the head): the code is on the node already
    boom = _submit(w, model="dlp_user_boom:train_fn",
                   runtime_env={"env_vars": {"PYTHONPATH": str(w.user_code)}},
                   model_name="boom-model")  # fmt: skip
    # a 1-worker job would fit beside `main`; it waits behind `boom` (strict priority order)
    killed = _submit(w, fault_injection_kill_at_epoch=1, max_failures=2, model_name="digits-ft",
                     priority=-1, workers=1)  # fmt: skip
    # more workers than the pool has: a Ray Job and Ray Train, as every job before the pool
    orphan = _submit(w, priority=-2, model_name="orphan", workers=POOL_SIZE + 1)
    doomed = _submit(w, priority=-5, model_name="never")
    # One 2-worker job fits the 4-CPU cluster at a time (2 workers + 1 CPU for data): a queue.
    deadline = time.monotonic() + 120
    while True:
        jobs = {j.id: j for j in train.list_jobs(w.backend, w.alice)}
        if jobs[main].status != "QUEUED" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert jobs[main].status == "RUNNING", (jobs[main].run.error, jobs[main].waiting_reason)
    # a built-in model, no runtime_env, 2 workers: the warm pool's, no Ray Job
    assert jobs[main].run.name == f"pool-{main}" and jobs[main].ray_job_id is None
    assert [jobs[i].queue_position for i in (boom, killed, orphan, doomed)] == [1, 2, 3, 4]
    assert "waiting for 2 free CPUs" in (jobs[boom].waiting_reason or "")
    cancelled = train.cancel_job(w.backend, w.alice, doomed)
    assert cancelled.status == "CANCELLED" and cancelled.queue_position is None
    with pytest.raises(PermissionDenied, match="may not cancel"):
        train.cancel_job(w.backend, w.bob, boom)

    seen: list[tuple[str, int]] = []
    job = _wait(w, main, seen)
    assert job.status == "SUCCEEDED", job.run.error
    # per-epoch metrics reached the store while the job was still running
    assert any(status == "RUNNING" and epochs >= 1 for status, epochs in seen), seen
    rows = train.epoch_table(train.get_metrics(w.backend, w.alice, main))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for row in rows:
        assert {
            "loss",
            "val_loss",
            "val_accuracy",
            "throughput_samples_per_s",
            "epoch_time_s",
        } <= set(row)
        assert row["restarts"] == 0
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert rows[-1]["val_accuracy"] > 0.5
    _assert_startup_adds_up(w, job)

    # the registered version: pinned commit, hash, code version, metrics; lineage to the commit
    assert job.model_version == "digits-mlp@1"
    assert job.spec.dataset == f"digits@{w.commit_id}"
    mv = models.get_version(w.backend, w.alice, "digits-mlp", 1)
    commit = w.backend.store.get_commit(w.commit_id)
    assert mv.run_id == main and mv.dataset_commit == w.commit_id
    assert mv.dataset_version_hash == commit.version_hash
    assert mv.code_version and mv.code_version.startswith("dlplatform-")
    assert json.loads(mv.metrics_json)["val_accuracy"] == pytest.approx(rows[-1]["val_accuracy"])
    upstream = {n.entity for n in w.backend.store.upstream("model_version:digits-mlp@1")}
    assert {f"run:{main}", f"commit:{w.commit_id}"} <= upstream

    # load it back (hash verified, weights only) and check it predicts
    module, signature = models.load_model(w.backend, "digits-mlp", 1)
    table = data.to_arrow(w.backend, commit)
    x = models.encode_columns(table.to_pydict(), signature, {})
    preds = np.array(models.predict(module, signature, x))
    assert (preds == table.column("target").to_numpy()).mean() > 0.5
    assert isinstance(module, torch.nn.Module)

    # promote over HTTP, then read it back through the SDK
    with TestClient(create_app(w.backend), base_url="http://127.0.0.1") as client:
        auth = {"Authorization": f"Bearer {w.alice_token}"}
        reply = client.post("/api/v1/models/digits-mlp/aliases/production", json={"version": 1},
                            headers=auth)  # fmt: skip
        assert reply.status_code == 200, reply.text
        got = client.get(f"/api/v1/training/jobs/{main}", headers=auth).json()
        assert got["run"]["status"] == "SUCCEEDED" and got["model_version"] == "digits-mlp@1"
        metrics = client.get(f"/api/v1/training/jobs/{main}/metrics", headers=auth).json()
        assert {m["step"] for m in metrics if not m["key"].startswith("step/")} == {0, 1, 2}
        conflict = client.post(f"/api/v1/training/jobs/{main}/cancel", headers=auth)
        assert conflict.status_code == 409 and conflict.json()["error"] == "conflict"
        logs = client.get(f"/api/v1/training/jobs/{main}/logs", headers=auth).json()
        assert f"run {main} SUCCEEDED" in logs["text"] and logs["final"] is True
        versions = client.get("/api/v1/models/digits-mlp/versions", headers=auth).json()
        assert versions[0]["aliases"] == ["production"]
    p = Platform(w.backend, w.alice)
    assert p.models.get("digits-mlp", "production").version == 1

    # user code that raises: FAILED with its message, nothing registered
    job = _wait(w, boom)
    assert job.status == "FAILED"
    assert "ValueError: boom: the user training function failed on purpose" in (job.run.error or "")
    with pytest.raises(NotFound):
        models.list_versions(w.backend, w.alice, "boom-model")

    # a pool worker SIGKILLed at epoch 1: resumed from the epoch-0 checkpoint on another warm
    # worker, finished; the pool replaced the dead one
    job = _wait(w, killed)
    assert job.status == "SUCCEEDED", job.run.error
    assert job.run.name == f"pool-{killed}"
    rows = train.epoch_table(train.get_metrics(w.backend, w.alice, killed))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert [r["restarts"] for r in rows] == [0, 1, 1]
    assert job.model_version == "digits-ft@1"
    _assert_startup_adds_up(w, job)  # a 1-worker job; the restart kept the first startup
    log = train.get_logs(w.backend, w.alice, killed)
    died = re.search(r"rank 0: WorkerProcessDied: the warm pool worker's process \(pid (\d+)\) "
                     r"died.*restarting from the last checkpoint \(1 of 2 restarts\)", log)  # fmt: skip
    assert died is not None, log
    _assert_pool_whole(w, gone=[int(died.group(1))])

    # the job driver dies (its Ray job is stopped behind the platform's back): FAILED with the
    # reason, never RUNNING forever
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while "job_submitted" not in train.get_job(w.backend, w.alice, orphan).startup:
        assert time.monotonic() < deadline  # RUNNING comes a moment before its Ray job exists
        time.sleep(0.2)
    job_client().stop_job(f"dlp-{orphan}")
    job = _wait(w, orphan)
    assert job.status == "FAILED"
    assert "the Ray job driver ended (STOPPED" in (job.run.error or ""), job.run.error


WHOAMI_CODE = """
import os

from dlplatform.access import authenticate
from dlplatform.config import load_settings
from dlplatform.metadata.actor import connect_store


def train_fn(config):
    me = authenticate(connect_store(load_settings(), create=False), os.environ["DLP_TOKEN"])
    raise ValueError(f"whoami {me.name} {me.role.value} at {os.environ['DLP_URL']}")
"""


def test_the_job_acts_as_its_owner_with_a_run_token(world: World, tmp_path: Path) -> None:
    """The job's code gets DLP_URL and a run token of the run's owner (alice, data-scientist),
    never the platform's powers; once the run ended the token is revoked and refused (401).
    Cheap: one 1-worker job whose user code stops at once, saying whom its token acts as."""
    w = world
    (tmp_path / "dlp_user_whoami.py").write_text(WHOAMI_CODE)
    job_id = _submit(w, model="dlp_user_whoami:train_fn",
                     runtime_env={"env_vars": {"PYTHONPATH": str(tmp_path)}},
                     model_name="whoami-model", workers=1, epochs=1, max_failures=0)  # fmt: skip
    job = _wait(w, job_id)
    assert job.status == "FAILED"
    assert "ValueError: whoami alice data-scientist at http://127.0.0.1:8000" in (
        job.run.error or ""
    ), job.run.error
    (info,) = w.backend.store.list_tokens(run_id=job_id)
    assert info.user == "alice" and info.revoked_at is not None
    env = job_client().get_job_info(f"dlp-{job_id}").runtime_env["env_vars"]
    assert env["DLP_URL"] == "http://127.0.0.1:8000" and env["DLP_TOKEN"].startswith(info.prefix)
    assert env["DLP_TOKEN"] not in w.backend.store.get_run(job_id).model_dump_json()
    with TestClient(create_app(w.backend), base_url="http://127.0.0.1") as client:
        reply = client.get(
            "/api/v1/whoami", headers={"Authorization": f"Bearer {env['DLP_TOKEN']}"}
        )
    assert reply.status_code == 401 and reply.json()["error"] == "unauthenticated", reply.text


def test_pool_jobs_cancelled_or_failing_at_start_leave_the_pool_whole(world: World) -> None:
    """On the warm pool: a running job cancelled (its worker killed, another started); a job
    whose data read fails and one whose worker dies as it starts each fail with one reason; no
    job holds a member afterwards and the pool has all its members again."""
    w = world
    scheduler = connect_scheduler(w.settings)
    running = _submit(w, workers=1, epochs=10_000, model_name="cancelled")
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not any(p.key == "step/loss" for p in train.get_metrics(w.backend, w.alice, running)):
        assert time.monotonic() < deadline, train.get_job(w.backend, w.alice, running).run
        time.sleep(0.2)
    (held,) = scheduler.pool_status()["busy"][running]
    assert train.cancel_job(w.backend, w.alice, running).status == "CANCELLED"

    data.create_dataset(w.backend, SYSTEM, "torn")
    torn = data.push(w.backend, SYSTEM, "torn", pa.table(
        {"x": np.arange(40.0) + uuid.uuid4().int % 1000, "y": np.arange(40) % 2}))  # fmt: skip
    part = Path(w.backend.artifacts.path_for(torn.parts[0].sha256))
    part.chmod(0o600)
    part.write_bytes(b"not parquet any more")  # the read after submit fails its hash check
    unreadable = train.submit(w.backend, w.alice, TrainingJobSpec(
        dataset="torn", label="y", workers=1, epochs=1)).id  # fmt: skip
    dies = _submit(w, workers=1, epochs=2, fault_injection_kill_at_epoch=0, max_failures=0,
                   model_name="dies")  # fmt: skip
    job = _wait(w, unreadable)
    assert job.status == "FAILED" and job.run.name == f"pool-{unreadable}"
    assert "is corrupt" in (job.run.error or ""), job.run.error
    job = _wait(w, dies)
    assert job.status == "FAILED" and job.run.name == f"pool-{dies}"
    assert (job.run.error or "").startswith(
        "training failed on worker rank 0: WorkerProcessDied: the warm pool worker's process"
    ), job.run.error
    assert train.get_job(w.backend, w.alice, running).status == "CANCELLED"
    _assert_pool_whole(w, gone=[held])


def test_ray_job_submit_path_records_the_run_and_reproduces(world: World) -> None:
    """`ray job submit -- python -m dlplatform.train.entrypoint --spec-json ...` (here through the
    same Jobs REST API the CLI uses): the run is recorded, and the same spec on the same dataset
    version with the same seed gives the same final metrics through Ray Train as the scheduled
    run gave on the warm pool."""
    w = world
    first = train.list_jobs(w.backend, w.alice, status=["SUCCEEDED"])
    reference = next(j for j in first if j.spec.model_name is None and j.spec.model == "mlp")
    spec = json.dumps({"dataset": "digits", **BASE})
    client = job_client()
    sid = f"direct-{uuid.uuid4().hex[:8]}"
    client.submit_job(
        entrypoint=f"python -m dlplatform.train.entrypoint --spec-json '{spec}'",
        submission_id=sid,
        runtime_env={"env_vars": job_env(w.settings)},
    )
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while str(client.get_job_status(sid)) not in {"SUCCEEDED", "FAILED", "STOPPED"}:
        assert time.monotonic() < deadline
        time.sleep(1)
    logs = client.get_job_logs(sid)
    assert str(client.get_job_status(sid)) == "SUCCEEDED", logs[-3000:]
    runs = [j for j in train.list_jobs(w.backend, SYSTEM) if j.ray_job_id == sid]
    assert len(runs) == 1
    direct = runs[0]
    assert direct.run.owner == "system" and direct.status == "SUCCEEDED"
    assert direct.spec.dataset == reference.spec.dataset  # pinned to the same head commit
    assert direct.model_version == "digits-mlp@2"
    a = json.loads(reference.run.result_json or "{}")["final_metrics"]
    b = json.loads(direct.run.result_json or "{}")["final_metrics"]
    for key in ("loss", "val_loss", "val_accuracy"):
        assert a[key] == b[key], (key, a[key], b[key])
    # the scheduler keeps a direct run's state too: it is final, so it stays untouched
    connect_scheduler(w.settings).tick()
    assert train.get_job(w.backend, SYSTEM, direct.id).status == "SUCCEEDED"
    assert RunStatus.SUCCEEDED.is_final


def test_an_ended_job_reproduced_over_http_has_identical_metrics(world: World) -> None:
    """`dlp train reproduce`'s route: the scheduled 2-worker job again on its commit, seed and
    code; on CPU every per-epoch result is bitwise the same as the original's."""
    w = world
    done = train.list_jobs(w.backend, w.alice, status=["SUCCEEDED"])
    original = next(j for j in done if j.spec.model_name is None and j.run.owner == "alice")
    with TestClient(create_app(w.backend), base_url="http://127.0.0.1") as client:
        auth = {"Authorization": f"Bearer {w.alice_token}"}
        reply = client.post(f"/api/v1/training/jobs/{original.id}/reproduce", headers=auth)
        assert reply.status_code == 201, reply.text
        again = reply.json()["run"]["id"]
        pending = client.get(f"/api/v1/training/jobs/{again}/reproduction", headers=auth).json()
        assert pending["status"] == "pending" and pending["original"] == original.id
        job = _wait(w, again)
        assert job.status == "SUCCEEDED", job.run.error
        assert job.spec.dataset == original.spec.dataset and job.spec.seed == original.spec.seed
        assert job.run.code_version == original.run.code_version
        result = client.get(f"/api/v1/training/jobs/{again}/reproduction", headers=auth).json()
        assert result["status"] == "identical", result
        assert {"loss", "val_loss", "val_accuracy"} <= set(result["keys"]) and result["epochs"] == 3
        by = client.get(f"/api/v1/training/jobs/{original.id}/reproduced-by", headers=auth)
        assert [j["run"]["id"] for j in by.json()] == [again]
    assert f"run:{again}" in {n.entity for n in w.backend.store.downstream(f"run:{original.id}")}


def test_a_run_under_a_quota_waits_with_the_reason_and_starts_when_capacity_frees(
    world: World,
) -> None:
    """Two 1-worker runs of a user allowed 1 CPU: the second waits, saying why, though the
    cluster has room, and starts once the first ended; both runs' usage is recorded."""
    from dlplatform import usage

    w = world
    name = f"quota-{uuid.uuid4().hex[:6]}"
    user = User(name=name, role=Role.DATA_SCIENTIST, created_at=utcnow())
    w.backend.store.create_user(user)
    owner = Principal.of(user)
    usage.set_quota(w.backend, SYSTEM, "user", name, usage.QuotaSpec(max_cpus=1))
    try:
        spec = TrainingJobSpec(**{"dataset": "digits", **BASE, "workers": 1, "epochs": 60})  # type: ignore[arg-type]
        first = train.submit(w.backend, owner, spec).id
        second = train.submit(w.backend, owner, spec).id
        deadline = time.monotonic() + 120
        while True:
            jobs = {j.id: j for j in train.list_jobs(w.backend, owner)}
            if jobs[first].status != "QUEUED" or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert jobs[first].status == "RUNNING", jobs[first].waiting_reason
        assert jobs[second].status == "QUEUED"
        assert jobs[second].waiting_reason == (
            f"waiting for quota: user {name} holds 1 of 1 CPUs (this run needs 1)"
        )
        done = [_wait(w, first), _wait(w, second)]
        assert [j.status for j in done] == ["SUCCEEDED", "SUCCEEDED"], [j.run.error for j in done]
        ended, started = done[0].run.ended_at, done[1].run.started_at
        assert ended is not None and started is not None and started >= ended
    finally:
        usage.delete_quota(w.backend, SYSTEM, "user", name)
    report = usage.usage_report(w.backend, owner, by="run", since="1h")
    held = {t.key: t for t in report.totals}
    assert set(held) == {first, second}
    for total in held.values():  # 1 CPU (the worker's) for as long as the run held it
        assert total.cpu_seconds == pytest.approx(total.wall_seconds) and total.cpu_seconds > 0
    # measured: the resident memory of the pool member that trained it, sampled as it ran
    assert all((t.peak_mem_bytes or 0) > 10 * 2**20 for t in held.values()), held
    assert train.get_job(w.backend, owner, first).usage == held[first]  # on the job's view too
