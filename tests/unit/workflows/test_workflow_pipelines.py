"""The built-in pipelines' DAGs and their pure parts (gate, drift); the steps that call training
and serving run in the integration tests."""

from __future__ import annotations

import json

import pytest

from dlplatform.errors import InvalidInput
from dlplatform.workflows import build_workflow
from dlplatform.workflows.pipelines import GateRejected, gate

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
