"""The warm pool's parts without Ray: which jobs it takes, its checkpoints, a member's session
running the real training loop on a real DuckDB store, the startup stages of a pool job, and the
job log the scheduler serves for it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from fixtures_serve import LocalStoreClient

from dlplatform.metadata import MetadataStore, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec, _startup, pool, runner
from dlplatform.train._joblog import LogChunk, pool_log_path
from dlplatform.train.spec import epoch_table

SPEC = {"dataset": "d@c-1", "label": "y", "model": "mlp", "workers": 1, "epochs": 2,
        "batch_size": 16, "seed": 3, "validation_fraction": 0.25, "params": {"hidden": 8}}  # fmt: skip


def test_the_pool_takes_built_in_models_on_cpus_only() -> None:
    assert pool.eligible(TrainingJobSpec(**SPEC), has_gpus=False)
    assert pool.eligible(TrainingJobSpec(**SPEC, use_gpu=False), has_gpus=True)
    assert not pool.eligible(TrainingJobSpec(**SPEC), has_gpus=True)  # would use the GPUs
    assert not pool.eligible(TrainingJobSpec(**{**SPEC, "model": "m:train"}), has_gpus=False)
    user_env = TrainingJobSpec(**{**SPEC, "model": "m:train"}, runtime_env={"pip": ["x"]})
    assert not pool.eligible(user_env, has_gpus=False)
    gpu = TrainingJobSpec(**SPEC, resources_per_worker={"CPU": 1, "GPU": 1})
    assert not pool.eligible(gpu, has_gpus=False)


def _checkpoint(tmp: Path, epoch: int) -> str:
    d = tmp / f"local-{epoch}"
    d.mkdir()
    (d / runner.CHECKPOINT_MODEL).write_bytes(b"weights %d" % epoch)
    return str(d)


def test_checkpoints_keep_the_best_two_and_the_latest(tmp_path: Path) -> None:
    store = pool.CheckpointStore(str(tmp_path / "ck"))
    assert store.saved() == [] and store.latest() is None and store.best() is None
    for epoch, score in enumerate([3.0, 1.0, 2.0, 4.0]):
        store.save(_checkpoint(tmp_path, epoch), {"epoch": float(epoch), "score": score})
    kept = [json.loads(Path(p, pool.CHECKPOINT_MARKER).read_text())["epoch"]
            for p, _ in store.saved()]  # fmt: skip
    assert kept == [1.0, 2.0, 3.0]  # epoch 0 (score 3, not among the best two) is gone
    best = store.best()
    assert best is not None and best[1]["score"] == 1.0
    assert store.latest() == str(tmp_path / "ck" / "checkpoint_epoch_000003")
    (tmp_path / "ck" / "checkpoint_epoch_000004").mkdir()  # an attempt died while writing it
    assert store.latest() == str(tmp_path / "ck" / "checkpoint_epoch_000003")
    with store.local_copy(store.latest()) as local:
        assert (
            local is not None and Path(local, runner.CHECKPOINT_MODEL).read_bytes() == b"weights 3"
        )
    assert not Path(local).exists()


def _job(spec: TrainingJobSpec) -> dict[str, Any]:
    """The loop config of ``spec`` on 200 rows of 4 features and 3 classes, dealt in memory."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    table = pa.table({**{f"f{i}": x[:, i] for i in range(4)}, "y": (x.sum(1) > 0).astype(np.int64)
                      + (x[:, 0] > 1).astype(np.int64)})  # fmt: skip
    plan = runner.plan(spec, table.schema, table.column("y"))
    batch = {name: table.column(name).to_numpy() for name in table.column_names}
    arrays = {side: runner.rank_rows(
        runner.encode_batch(batch, signature=plan.signature, params=dict(spec.params), side=side,
                            val_fraction=spec.validation_fraction, seed=spec.seed),
        spec.workers, equal=side == "train") for side in ("train", "val")}  # fmt: skip
    inputs = runner.TrainInputs(datasets={}, arrays=arrays)
    return runner.loop_config("run-pool", spec, plan, inputs, 1)


def _train(store: MetadataStore, run_id: str, config: dict[str, Any], root: Path,
           resume: str | None = None) -> pool.PoolSession:  # fmt: skip
    task = pool.RankTask(run_id=run_id, rank=0, world=1, master=None, config=config,
                         resume=resume, checkpoint_root=str(root), filesystem=None,
                         store=LocalStoreClient(store), log_path=str(root) + ".log")  # fmt: skip
    session = pool.PoolSession(task, time.time())
    runner.run_loop(config, session, time.time())
    return session


def _running(store: MetadataStore, run_id: str) -> None:
    store.create_run(Run(id=run_id, owner="admin", status=RunStatus.RUNNING, created_at=utcnow(),
                         spec_json=TrainingJobSpec(**SPEC).model_dump_json()))  # fmt: skip


def test_a_member_trains_with_the_real_loop_and_resumes_from_its_checkpoint(
    store: MetadataStore, tmp_path: Path
) -> None:
    """Rank 0 of a 1-worker job: its epochs reach the store with a checkpoint each; the same job
    again in the same (warm) process gives the same metrics; and a run resumed from its last
    checkpoint goes on from the next epoch, counting the restart."""
    spec = TrainingJobSpec(**SPEC)
    for run_id in ("run-a", "run-b", "run-c"):
        _running(store, run_id)
    first = _train(store, "run-a", _job(spec), tmp_path / "a")
    again = _train(store, "run-b", _job(spec), tmp_path / "b")
    rows = epoch_table(store.get_metrics("run-a"))
    assert [r["epoch"] for r in rows] == [0, 1] and rows[-1]["restarts"] == 0
    assert {"loss", "val_loss", "val_accuracy", "score"} <= set(rows[-1])
    for key in ("loss", "val_loss", "val_accuracy"):
        assert [r[key] for r in rows] == [r[key] for r in epoch_table(store.get_metrics("run-b"))]
    timed = {"epoch_time_s", "data_wait_s", "throughput_samples_per_s"}
    results = [{k: v for k, v in (s.last_metrics or {}).items() if k not in timed}
               for s in (first, again)]  # fmt: skip
    assert results[0] == results[1] and results[0]["epoch"] == 1
    saved = pool.CheckpointStore(str(tmp_path / "a")).saved()
    assert [m["epoch"] for _, m in saved] == [0.0, 1.0]

    longer = _job(spec.model_copy(update={"epochs": 3}))
    resumed = _train(store, "run-c", longer, tmp_path / "a", resume=saved[-1][0])
    assert resumed.last_metrics is not None
    assert resumed.last_metrics["epoch"] == 2 and resumed.last_metrics["restarts"] == 1
    assert [r["epoch"] for r in epoch_table(store.get_metrics("run-c"))] == [2]


def test_a_pool_jobs_startup_stages_add_up() -> None:
    marks = {"submitted": 10.0, "admitted": 10.1, "planned": 10.3, "data_ready": 10.4,
             "workers_assigned": 10.45, "fit_started": 10.46, "worker_started": 10.5,
             "loop_started": 10.6, "model_ready": 10.7, "first_batch": 10.71,
             "first_step": 10.75}  # fmt: skip
    parts = _startup.breakdown(marks)
    assert list(parts)[:4] == ["admitted", "planned", "data_ready", "workers_assigned"]
    assert "job_submitted" not in parts and "driver_started" not in parts
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])
    assert parts["total"] == pytest.approx(0.75)
    assert _startup.describe("workers_assigned") == "warm pool workers assigned"


def test_the_scheduler_serves_a_pool_jobs_own_log(tmp_path: Path) -> None:
    from dlplatform.config import load_settings
    from dlplatform.train.scheduler import _Scheduler

    settings = load_settings(home=tmp_path / "home")
    log = pool_log_path(settings.home, "run-1")
    log.parent.mkdir(parents=True)
    log.write_text("dlplatform run run-1: training on the warm pool\nrun run-1 SUCCEEDED: {}\n")

    class Store:
        def get_run(self, run_id: str) -> Run:
            return Run(id=run_id, owner="a", status=RunStatus.RUNNING, name=f"pool-{run_id}",
                       created_at=utcnow())  # fmt: skip

    actor: Any = object.__new__(_Scheduler)
    actor._store, actor._settings = Store(), settings
    chunk = actor._logs("run-1", 0, 1000)
    assert chunk.text.endswith("run run-1 SUCCEEDED: {}\n") and chunk.next_offset == chunk.size
    assert actor._logs("run-2", 0, 10) == LogChunk("", 0, 0)  # nothing written yet
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="invalid run id"):
            pool_log_path(settings.home, bad)


def test_members_write_their_output_to_the_job_log_as_it_comes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each whole line is in the log at once (``dlp train logs`` follows a running job), ranks
    interleave by line, a partial line waits for its end or the close, and a runaway printer
    is cut at ``MEMBER_LOG_BYTES`` with a line that says so."""
    log = tmp_path / "run.log"
    log.write_text("dlplatform run r: training on the warm pool\n")
    rank0, rank1 = pool._LiveLog(str(log), 0), pool._LiveLog(str(log), 1)
    rank0.write("epoch 0 starts\nhalf ")
    rank1.write("hello from 1\n")
    assert log.read_text().splitlines()[1:] == ["(rank 0) epoch 0 starts", "(rank 1) hello from 1"]
    rank0.write("a line\n")
    rank0.close()
    rank1.close()
    assert log.read_text().splitlines()[-1] == "(rank 0) half a line"

    monkeypatch.setattr(pool, "MEMBER_LOG_BYTES", 40)
    noisy = pool._LiveLog(str(log), 2)
    for i in range(5):
        noisy.write(f"line {i}\n")
    noisy.close()
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("(rank 2)")]
    assert lines[:2] == ["(rank 2) line 0", "(rank 2) line 1"]  # 16 characters each
    assert lines[2:] == ["(rank 2) [output beyond 40 characters dropped: 48 more]"]
