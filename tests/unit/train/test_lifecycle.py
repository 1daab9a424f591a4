"""The run lifecycle training and tuning share (``train._lifecycle``): a run records what it
holds and the scheduler reads that record (not the tuning spec); the one wait both use."""

from __future__ import annotations

import ast
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from dlplatform import access
from dlplatform.access import SYSTEM, Principal, UserSpec
from dlplatform.context import Backend
from dlplatform.metadata import Commit, Role, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import service
from dlplatform.train._lifecycle import Holding, job_spec, wait_final
from dlplatform.train.scheduler import _Scheduler, check_fits
from dlplatform.train.spec import TrainingJobSpec
from dlplatform.train.tune import TuningJobSpec

TRAINING = TrainingJobSpec(dataset="d@c-1", label="y", workers=2,
                           resources_per_worker={"CPU": 1.5})  # fmt: skip


def _scheduler(backend: Backend) -> Any:
    scheduler: Any = object.__new__(_Scheduler)
    scheduler.__dict__.update(_store=backend.store, _settings=backend.settings)
    return scheduler


def test_a_training_run_records_what_it_holds(backend: Backend) -> None:
    alice = Principal(name="alice", role=Role.DATA_SCIENTIST)
    commit = Commit.model_construct(id="c-1")  # create_run reads only its id
    run = service.create_run(backend, alice, TRAINING, commit)
    stored = backend.store.get_run(run.id)
    assert (stored.workers, stored.cpus, stored.gpus) == (2, 3.0, None)
    assert Holding.of_run(stored).needs(has_gpus=False) == (3.0, 0.0)
    assert Holding.of_run(stored).needs(has_gpus=True) == (3.0, 2.0)
    on_cpus = TRAINING.model_copy(update={"use_gpu": False})
    assert Holding.of_spec(on_cpus).needs(has_gpus=True) == (3.0, 0.0)
    explicit = TRAINING.model_copy(update={"resources_per_worker": {"CPU": 1.0, "GPU": 0.5}})
    assert Holding.of_spec(explicit).needs(has_gpus=False) == (2.0, 1.0)
    with pytest.raises(Exception, match="has no GPUs"):
        check_fits(Holding.of_spec(explicit), {"CPU": 8.0, "GPU": 0.0})
    with pytest.raises(Exception, match="needs 3 CPUs for 2 workers"):
        check_fits(Holding.of_run(stored), {"CPU": 3.0, "GPU": 0.0})


def _queued_search(backend: Backend, search: TuningJobSpec, fields: dict[str, Any]) -> Run:
    return backend.store.create_run(Run(
        id=service.new_run_id(), kind="tune", owner="alice", status=RunStatus.QUEUED,
        spec_json=search.model_dump_json(), created_at=utcnow(), **fields,
    ))  # fmt: skip


def test_the_scheduler_reads_a_tuning_runs_record_not_its_spec(backend: Backend) -> None:
    search = TuningJobSpec(training=TRAINING, space={"lr": "choice(0.1,0.2,0.3)"}, concurrency=3)
    holding = Holding.of_spec(search.training, search.effective_concurrency)
    recorded, unrecorded = (_queued_search(backend, search, f) for f in (holding.fields(), {}))
    assert (recorded.workers, recorded.cpus) == (6, 9.0)  # 3 trials x 2 workers x 1.5 CPUs
    assert job_spec(recorded) == TRAINING  # the trials' runtime_env comes from here
    scheduler = _scheduler(backend)
    assert scheduler._queued_spec(backend.store.get_run(recorded.id)) == TRAINING
    assert scheduler._queued_spec(backend.store.get_run(unrecorded.id)) is None
    failed = backend.store.get_run(unrecorded.id)
    assert failed.status is RunStatus.FAILED and "records no resources" in (failed.error or "")
    # a training run made by hand (or by an older version) holds what its spec asks for
    by_hand = backend.store.create_run(Run(
        id=service.new_run_id(), owner="alice", status=RunStatus.QUEUED,
        spec_json=TRAINING.model_dump_json(), created_at=utcnow(),
    ))  # fmt: skip
    assert Holding.of_run(by_hand) == Holding(2, 3.0, None)


def test_the_scheduler_does_not_import_the_tuning_spec() -> None:
    source = Path(__file__).resolve().parents[3] / "dlplatform" / "train" / "scheduler.py"
    names = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source.read_text()))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {n for n in names if n and ("tune" in n.split(".")[-1])}, names


def test_one_wait_serves_training_and_tuning(backend: Backend) -> None:
    access.create_user(backend, SYSTEM, UserSpec(name="alice", role=Role.DATA_SCIENTIST))
    alice = Principal(name="alice", role=Role.DATA_SCIENTIST)
    run = backend.store.create_run(Run(
        id=service.new_run_id(), owner="alice", status=RunStatus.RUNNING,
        spec_json=TRAINING.model_dump_json(), created_at=utcnow(),
    ))  # fmt: skip
    with pytest.raises(TimeoutError, match="is still RUNNING"):
        wait_final(backend, run.id, lambda: backend.store.get_run(run.id), lambda r: r,
                   timeout_s=0.05)  # fmt: skip
    seen: list[str] = []
    ender = threading.Timer(
        0.2, lambda: backend.store.update_run(run.id, status=RunStatus.SUCCEEDED, ended_at=utcnow())
    )
    ender.start()
    try:  # woken by the store when the run changes
        job = service.wait_job(backend, alice, run.id, timeout_s=60,
                               on_update=lambda j, points: seen.append(j.status))  # fmt: skip
    finally:
        ender.join()
    assert job.status == "SUCCEEDED" and seen[-1] == "SUCCEEDED" and seen[0] == "RUNNING"
    assert json.loads(job.run.spec_json)["workers"] == 2
