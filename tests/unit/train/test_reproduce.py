"""Exact re-runs without a cluster: the comparison of two runs' metrics, and every refusal that
comes before a job is queued (a re-run queued and compared for real: test_training_e2e)."""

from __future__ import annotations

import math
from datetime import timedelta

import pyarrow as pa
import pytest
from fixtures_client import bearer
from starlette.testclient import TestClient

from dlplatform import data
from dlplatform.access import SYSTEM, Principal
from dlplatform.context import Backend
from dlplatform.errors import Conflict, NotFound, PermissionDenied
from dlplatform.metadata import LineageEdge, MetricPoint, Role, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec, reproduce
from dlplatform.train._lifecycle import code_version

ALICE = Principal(name="alice", role=Role.DATA_SCIENTIST)


def _run(backend: Backend, run_id: str, spec: TrainingJobSpec, *, status: RunStatus,
         commit: str | None, code: str | None = None, tags: tuple[str, ...] = ()) -> Run:  # fmt: skip
    run = Run(id=run_id, owner="alice", status=status, spec_json=spec.model_dump_json(),
              dataset_commit=commit, code_version=code, created_at=utcnow() - timedelta(minutes=5),
              tags=tags)  # fmt: skip
    backend.store.create_run(run)
    return run


def _epochs(backend: Backend, run_id: str, rows: list[dict[str, float]]) -> None:
    backend.store.log_metrics([MetricPoint(run_id=run_id, key=k, value=v, step=epoch)
                               for epoch, row in enumerate(rows) for k, v in row.items()])  # fmt: skip


@pytest.fixture
def pinned(backend: Backend) -> tuple[TrainingJobSpec, str]:
    data.create_dataset(backend, SYSTEM, "digits")
    commit = data.push(backend, SYSTEM, "digits", pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}))
    return TrainingJobSpec(dataset=f"digits@{commit.id}", label="y", epochs=2), commit.id


def _pair(backend: Backend, spec: TrainingJobSpec, commit: str) -> None:
    _run(backend, "run-a", spec, status=RunStatus.SUCCEEDED, commit=commit)
    _run(backend, "run-b", spec, status=RunStatus.SUCCEEDED, commit=commit,
         tags=("reproduces:run-a",))  # fmt: skip
    backend.store.add_edges([LineageEdge(src="run:run-a", dst="run:run-b",
                                         relation=reproduce.RELATION)])  # fmt: skip


def test_identical_metrics_are_identical_and_timings_are_not_compared(
    backend: Backend, pinned: tuple[TrainingJobSpec, str]
) -> None:
    spec, commit = pinned
    _pair(backend, spec, commit)
    _epochs(backend, "run-a", [{"loss": 0.9, "val_accuracy": 0.5, "epoch_time_s": 1.0,
                                "throughput_samples_per_s": 100.0, "restarts": 0.0},
                               {"loss": 0.5, "val_accuracy": math.nan}])  # fmt: skip
    _epochs(backend, "run-b", [{"loss": 0.9, "val_accuracy": 0.5, "epoch_time_s": 2.5,
                                "throughput_samples_per_s": 40.0, "restarts": 1.0},
                               {"loss": 0.5, "val_accuracy": math.nan}])  # fmt: skip
    result = reproduce.compare_reproduction(backend, ALICE, "run-b")
    assert result.status == "identical" and result.first_difference is None
    assert result.keys == ("loss", "val_accuracy") and result.epochs == 2
    assert result.tolerance == 0.0 and not result.code_changed
    assert reproduce.reproduced_by(backend, "run-a") == ["run-b"]


def test_the_first_difference_is_named_and_gpu_runs_get_a_tolerance(
    backend: Backend, pinned: tuple[TrainingJobSpec, str]
) -> None:
    spec, commit = pinned
    _pair(backend, spec, commit)
    _epochs(backend, "run-a", [{"loss": 0.9}, {"loss": 0.5, "val_loss": 0.6}, {"loss": 0.4}])
    _epochs(backend, "run-b", [{"loss": 0.9}, {"loss": 0.5, "val_loss": 0.6000001},
                               {"loss": 0.3}])  # fmt: skip
    result = reproduce.compare_reproduction(backend, ALICE, "run-b")
    assert result.status == "different"
    first = result.first_difference
    assert first is not None and (first.epoch, first.key) == (1, "val_loss")
    assert (first.original, first.reproduced) == (0.6, 0.6000001)

    gpu = spec.model_copy(update={"use_gpu": True})
    _run(backend, "run-g", gpu, status=RunStatus.SUCCEEDED, commit=commit)
    _run(backend, "run-h", gpu, status=RunStatus.SUCCEEDED, commit=commit)
    backend.store.add_edges([LineageEdge(src="run:run-g", dst="run:run-h",
                                         relation=reproduce.RELATION)])  # fmt: skip
    _epochs(backend, "run-g", [{"loss": 0.9}, {"loss": 0.5}])
    _epochs(backend, "run-h", [{"loss": 0.9}, {"loss": 0.50000001}])
    result = reproduce.compare_reproduction(backend, ALICE, "run-h")
    assert result.status == "within_tolerance" and result.tolerance == reproduce.GPU_RTOL
    assert 0 < result.max_relative_difference < reproduce.GPU_RTOL
    _epochs(backend, "run-h", [{}, {}, {"loss": 0.1}])  # an epoch the original never had
    result = reproduce.compare_reproduction(backend, ALICE, "run-h")
    assert result.status == "different" and result.first_difference is not None
    assert result.first_difference.epoch == 2 and result.first_difference.original is None


def test_pending_and_failed_re_runs_and_runs_that_are_no_re_run(
    backend: Backend, pinned: tuple[TrainingJobSpec, str]
) -> None:
    spec, commit = pinned
    _run(backend, "run-a", spec, status=RunStatus.SUCCEEDED, commit=commit)
    _run(backend, "run-b", spec, status=RunStatus.RUNNING, commit=commit)
    backend.store.add_edges([LineageEdge(src="run:run-a", dst="run:run-b",
                                         relation=reproduce.RELATION)])  # fmt: skip
    assert reproduce.compare_reproduction(backend, ALICE, "run-b").status == "pending"
    backend.store.update_run("run-b", status=RunStatus.FAILED, error="boom")
    failed = reproduce.compare_reproduction(backend, ALICE, "run-b")
    assert failed.status == "failed" and failed.reason == "boom"
    with pytest.raises(NotFound, match="run-a is not a re-run"):
        reproduce.compare_reproduction(backend, ALICE, "run-a")
    # a tag alone (anyone may set one at submit) makes no re-run: the edge does
    _run(backend, "run-c", spec, status=RunStatus.SUCCEEDED, commit=commit,
         tags=("reproduces:run-a",))  # fmt: skip
    with pytest.raises(NotFound, match="run-c is not a re-run"):
        reproduce.compare_reproduction(backend, ALICE, "run-c")


def test_refusals_before_anything_is_queued(
    backend: Backend, pinned: tuple[TrainingJobSpec, str]
) -> None:
    spec, commit = pinned
    _run(backend, "run-live", spec, status=RunStatus.RUNNING, commit=commit)
    with pytest.raises(Conflict, match="run-live is RUNNING: reproduce it once it has ended"):
        reproduce.reproduce_run(backend, ALICE, "run-live")
    old = "dlplatform-0.0.1+sha256:" + "0" * 64
    _run(backend, "run-old", spec, status=RunStatus.SUCCEEDED, commit=commit, code=old)
    with pytest.raises(Conflict, match=r"ran code dlplatform-0.0.1\+sha256:0+, the installed"):
        reproduce.reproduce_run(backend, ALICE, "run-old")
    secret = spec.model_copy(update={"model": "dlp_user_code:train_fn",
                                     "runtime_env": {"env_vars": {"API_KEY": "s3cret"}}})  # fmt: skip
    _run(backend, "run-env", secret, status=RunStatus.SUCCEEDED, commit=commit,
         code=code_version(spec))  # fmt: skip
    with pytest.raises(PermissionDenied, match="only its owner sees: ask alice"):
        reproduce.reproduce_run(backend, Principal(name="bob", role=Role.DATA_SCIENTIST),
                                "run-env")  # fmt: skip
    with pytest.raises(NotFound):
        reproduce.reproduce_run(backend, ALICE, "run-nope")
    # the dataset was deleted and garbage-collected: named, and nothing is queued
    _run(backend, "run-gone", spec, status=RunStatus.SUCCEEDED, commit=commit,
         code=code_version(spec))  # fmt: skip
    data.delete_dataset(backend, SYSTEM, "digits")
    data.gc(backend, SYSTEM, min_age_s=0)
    with pytest.raises(NotFound, match=r"run-gone trained on digits@\w+, which can no longer"):
        reproduce.reproduce_run(backend, ALICE, "run-gone")
    assert [r.id for r in backend.store.list_runs(kind="train", limit=100)
            if r.status is RunStatus.QUEUED] == []  # fmt: skip


def test_routes(
    backend: Backend, client: TestClient, admin_token: str, pinned: tuple[TrainingJobSpec, str]
) -> None:
    spec, commit = pinned
    _pair(backend, spec, commit)
    _epochs(backend, "run-a", [{"loss": 0.9}])
    _epochs(backend, "run-b", [{"loss": 0.8}])
    auth = bearer(admin_token)
    got = client.get("/api/v1/training/jobs/run-b/reproduction", headers=auth)
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "different"
    assert got.json()["first_difference"] == {"epoch": 0, "key": "loss", "original": 0.9,
                                              "reproduced": 0.8}  # fmt: skip
    by = client.get("/api/v1/training/jobs/run-a/reproduced-by", headers=auth).json()
    assert [(j["run"]["id"], j["run"]["status"]) for j in by] == [("run-b", "SUCCEEDED")]
    assert client.get("/api/v1/training/jobs/run-a/reproduction", headers=auth).status_code == 404
    _run(backend, "run-q", spec, status=RunStatus.QUEUED, commit=commit)
    again = client.post("/api/v1/training/jobs/run-q/reproduce", headers=auth)
    assert again.status_code == 409 and "once it has ended" in again.json()["message"]
    bad = client.post("/api/v1/training/jobs/run-a/reproduce", json={"allow": True}, headers=auth)
    assert bad.status_code == 422


def test_the_cli_line_names_the_result_and_the_first_difference() -> None:
    from dlplatform.cli.train import _reproduction_line
    from dlplatform.train.spec import Difference, Reproduction

    same = Reproduction(original="run-a", reproduction="run-b", status="identical", tolerance=0,
                        epochs=3, keys=("loss", "val_loss"), code_changed=False)  # fmt: skip
    assert _reproduction_line(same) == "run-b reproduces run-a: identical over 3 epochs, 2 metrics"
    diff = same.model_copy(update={
        "status": "different", "tolerance": 1e-4, "code_changed": True,
        "first_difference": Difference(epoch=1, key="loss", original=0.5, reproduced=0.51),
    })  # fmt: skip
    assert _reproduction_line(diff) == (
        "run-b reproduces run-a: different over 3 epochs, 2 metrics (relative tolerance 0.0001); "
        "first difference: epoch 1 loss 0.5 vs 0.51; the code differed (allowed)"
    )
