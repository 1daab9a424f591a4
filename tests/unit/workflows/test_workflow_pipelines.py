"""The built-in pipelines' DAGs and their pure parts (gate, drift), and how a re-run train step
finds its training job (real DuckDB store, the train scheduler stood in for); the steps that call
training and serving run in the integration tests."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from dlplatform import data, train
from dlplatform.access import SYSTEM
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.metadata import MetadataStore, RunStatus
from dlplatform.workflows import StepContext, build_workflow
from dlplatform.workflows.pipelines import GateRejected, gate, training_job

TD = "dlplatform.workflows.pipelines:train_and_deploy"


def _evaluation(candidate: float | None, production: float | None) -> dict[str, object]:
    return {
        "model": "iris-mlp",
        "version": 3,
        "metric": "val_accuracy",
        "candidate": candidate,
        "production": production,
        "production_version": 2 if production is not None else None,
    }


def test_train_and_deploy_and_monitor_dags() -> None:
    dag = build_workflow(TD, {"dataset": "iris", "commit": "c1", "label": "y", "epochs": 1})
    assert list(dag.steps) == ["train-model", "evaluate", "gate", "deploy-model"]
    assert dag.steps["deploy-model"].deps == ("gate",)
    dag = build_workflow("dlplatform.workflows.pipelines:monitor", {"deployment": "iris"})
    assert list(dag.steps) == ["measure", "check-and-alert"]
    with pytest.raises(InvalidInput, match="min_score"):
        build_workflow(TD, {"dataset": "iris", "commit": "c1", "label": "y", "min_score": 2})
    with pytest.raises(InvalidInput, match="does not accept params"):
        build_workflow(TD, {"dataset": "iris", "commit": "c1"})  # no label
    # ending in a judged rollout instead of a direct deploy; a bad spec refuses the run at once
    params = {"dataset": "iris", "commit": "c1", "label": "y", "rollout": {"steps": [10, 100]}}
    dag = build_workflow(TD, params)
    assert list(dag.steps) == ["train-model", "evaluate", "gate", "roll-out-model"]
    with pytest.raises(InvalidInput, match="rollout options: steps"):
        build_workflow(TD, {**params, "rollout": {"steps": [10, 50]}})


def test_gate_accepts_a_good_model_and_names_every_unmet_criterion() -> None:
    ok = gate.fn(_evaluation(0.95, 0.96), 0.9, 0.02)
    assert ok["accepted"] is True
    assert gate.fn(_evaluation(0.91, None), 0.9, 0.02)["accepted"] is True
    with pytest.raises(GateRejected, match=r"val_accuracy 0.4000 < 0.9") as info:
        gate.fn(_evaluation(0.4, 0.95), 0.9, 0.02)
    assert "worse than production v2 (0.9500) by more than 0.02" in str(info.value)
    with pytest.raises(GateRejected, match="worse than production"):
        gate.fn(_evaluation(0.92, 0.99), 0.9, 0.02)
    with pytest.raises(GateRejected, match="no val_accuracy metric"):
        gate.fn(_evaluation(None, None), 0.9, 0.02)
    assert json.dumps(ok)  # the gate's output is plain JSON (persisted as such)


# --- the train step run again (#19) ------------------------------------------------------------


class _Queue:
    """The train scheduler as ``train.submit`` sees it: room for any job; counts wake-ups (one
    per job submitted)."""

    def __init__(self) -> None:
        self.wakes = 0

    def capacity(self) -> dict[str, float]:
        return {"CPU": 64.0, "GPU": 0.0}

    def wake(self) -> None:
        self.wakes += 1


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> _Queue:
    q = _Queue()
    monkeypatch.setattr("dlplatform.train.service._scheduler", lambda _backend: q)
    return q


def _step(backend: Backend, run_id: str, step_id: str = "train-model") -> StepContext:
    return StepContext(backend.settings, run_id, step_id, SYSTEM.name, _backend=[backend])


def test_a_train_step_run_again_finds_its_training_job(
    backend: Backend, store: MetadataStore, queue: _Queue
) -> None:
    data.create_dataset(backend, SYSTEM, "iris")
    table = pa.table({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]})
    commit = data.push(backend, SYSTEM, "iris", table)
    spec = train.TrainingJobSpec(dataset=f"iris@{commit.id}", label="y", epochs=1)
    ctx = _step(backend, "wf-abc")
    first = training_job(backend, SYSTEM, spec, ctx)
    assert first.status == "QUEUED" and queue.wakes == 1
    # the manager crashed mid-step and runs it again: a queued or running job is awaited, a
    # succeeded one used as it is; nothing new is submitted
    assert training_job(backend, SYSTEM, spec, ctx).id == first.id
    store.update_run(first.id, status=RunStatus.RUNNING)
    assert training_job(backend, SYSTEM, spec, ctx).id == first.id
    store.update_run(first.id, status=RunStatus.SUCCEEDED)
    assert training_job(backend, SYSTEM, spec, ctx).id == first.id
    assert queue.wakes == 1 and len(store.list_runs(kind="train")) == 1
    # another step, or the same step of another run, has jobs of its own
    other = training_job(backend, SYSTEM, spec, _step(backend, "wf-abc", "train-model-2"))
    again = training_job(backend, SYSTEM, spec, _step(backend, "wf-def"))
    assert len({first.id, other.id, again.id}) == 3
    # a failed or cancelled job is not used: the step trains again, once per execution
    store.update_run(again.id, status=RunStatus.FAILED, error="out of memory")
    retried = training_job(backend, SYSTEM, spec, _step(backend, "wf-def"))
    assert retried.id != again.id and retried.status == "QUEUED"
    assert training_job(backend, SYSTEM, spec, _step(backend, "wf-def")).id == retried.id
    store.update_run(retried.id, status=RunStatus.CANCELLED)
    third = training_job(backend, SYSTEM, spec, _step(backend, "wf-def"))
    assert third.id not in {again.id, retried.id}
    assert queue.wakes == 5 and len(store.list_runs(kind="train")) == 5
    replays = [e for e in store.list_audit(action="train.submit") if "replayed" in e.detail]
    assert replays and all(e.outcome == "ok" for e in replays)


def test_a_steps_idempotency_key_is_a_valid_key_in_every_case(backend: Backend) -> None:
    ctx = _step(backend, "wf-abc")
    assert ctx.idempotency_key("train", 2) == "wf:wf-abc:train-model:train:2"
    assert ctx.idempotency_key("train", 1) != ctx.idempotency_key("train", 2)
    long = _step(backend, "r" * 128, "s" * 63).idempotency_key("train", 1)
    assert long.startswith("wf:") and len(long) <= 128
    assert long == _step(backend, "r" * 128, "s" * 63).idempotency_key("train", 1)
    with pytest.raises(InvalidInput, match="idempotency key"):
        train.submit(backend, SYSTEM, train.TrainingJobSpec(dataset="iris", label="y"),
                     idempotency_key="no spaces")  # fmt: skip
