"""``dlp import mlflow``: a real MLflow tracking store (sqlite, written with MLflow's own client
and flavors) imported through the ``dlp`` command into the in-process gateway over a real DuckDB
store; importing twice makes no duplicates; bad input is one line and exit code 1."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dlplatform.access import issue_token
from dlplatform.context import Backend
from dlplatform.metadata import Role, User
from dlplatform.metadata.records import utcnow
from dlplatform.train.tracking import RunView

T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
MLP_CONFIG = {"model": "mlp", "input_shape": [4], "num_outputs": 3,
              "params": {"hidden": 8, "layers": 1}}  # fmt: skip
SIGNATURE = {"kind": "tabular", "features": ["a", "b", "c", "d"], "dtypes": ["double"] * 4,
             "input_shape": [4], "task": "classification", "label": "y", "classes": [0, 1, 2]}  # fmt: skip


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An MLflow sqlite store: experiment ``vision`` with a run that logged a state dict
    (registered, tagged with the platform's signature and builder, alias ``champion``) and a run
    whose model MLflow's pytorch flavor pickled (registered; the run FAILED); experiment
    ``tabular`` with a pickled scikit-learn model (registered; the run KILLED)."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow's flavors log through its fluent API
        mp.setenv("MLFLOW_REGISTRY_URI", uri)
        with warnings.catch_warnings():  # MLflow's own, about the models it is asked to log
            warnings.simplefilter("ignore")
            filled = _fill(uri, root)
        yield filled


def _fill(uri: str, root: Path) -> dict[str, Any]:
    import mlflow
    import mlflow.pytorch
    import mlflow.sklearn
    import numpy as np
    import torch
    from mlflow.tracking import MlflowClient
    from sklearn.linear_model import LogisticRegression

    from dlplatform.models.builtin import build_model

    c = MlflowClient(uri, uri)
    vision = c.create_experiment("vision", artifact_location=(root / "art").as_uri())
    tabular = c.create_experiment("tabular", artifact_location=(root / "art").as_uri())

    sd = c.create_run(vision, start_time=T0_MS, run_name="digits sd", tags={"team": "vision"})
    rid = sd.info.run_id
    c.log_param(rid, "lr", 0.01)
    c.log_param(rid, "batch size", 32)  # a key with a space: 'batch_size' on the platform
    for step, value in enumerate([1.0, math.nan, 0.5]):
        c.log_metric(rid, "loss", value, timestamp=T0_MS + 1000 * step, step=step)
    c.log_metric(rid, "val acc", math.inf, timestamp=T0_MS + 5000, step=2)
    c.log_text(rid, "hello from mlflow", "notes/readme.txt")
    net = build_model(MLP_CONFIG)
    with mlflow.start_run(run_id=rid):
        mlflow.pytorch.log_state_dict(net.state_dict(), "weights")
    c.set_terminated(rid, "FINISHED", end_time=T0_MS + 60_000)
    c.create_registered_model("Digits SD")
    mv = c.create_model_version("Digits SD", f"{sd.info.artifact_uri}/weights", run_id=rid,
                                tags={"dlp.signature": json.dumps(SIGNATURE),
                                      "dlp.builder": "dlplatform.train.models:build_model",
                                      "dlp.config": json.dumps(MLP_CONFIG)})  # fmt: skip
    c.set_registered_model_alias("Digits SD", "champion", mv.version)

    with mlflow.start_run(experiment_id=vision, run_name="pickled pt") as pt:
        mlflow.log_metric("loss", 0.3)
        mlflow.pytorch.log_model(torch.nn.Linear(4, 3), name="model", pip_requirements=[],
                                 serialization_format="pickle",
                                 registered_model_name="digits-pt")  # fmt: skip
    c.set_terminated(pt.info.run_id, "FAILED")

    with mlflow.start_run(experiment_id=tabular, run_name="sk") as sk:
        model = LogisticRegression().fit(np.arange(8.0).reshape(4, 2), [0, 1, 0, 1])
        mlflow.sklearn.log_model(model, name="model", pip_requirements=[],
                                 serialization_format="pickle", registered_model_name="sk-model")  # fmt: skip
    c.set_terminated(sk.info.run_id, "KILLED")
    return {"uri": uri, "sd": rid, "pt": pt.info.run_id, "sk": sk.info.run_id,
            "weights": {k: v.clone() for k, v in net.state_dict().items()}}  # fmt: skip


def _one_line(result: Any) -> str:
    assert result.exit_code == 1, result.output
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_runs_metrics_artifacts_and_state_dict_models_arrive_once(
    run: Callable[..., Any], http_platform: Callable[[str], Any], admin_token: str,
    backend: Backend, mlflow_store: dict[str, Any],
) -> None:  # fmt: skip
    uri = mlflow_store["uri"]
    result = run("import", "mlflow", "--tracking-uri", uri, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [r["outcome"] for r in report["runs"]] == ["imported"] * 3
    assert "[3/3]" in result.stderr and "INFO" not in result.stderr
    by_id = {r["mlflow_run_id"]: r for r in report["runs"]}
    p = http_platform(admin_token)

    sd = p.runs.get(by_id[mlflow_store["sd"]]["run_id"])
    assert sd.run.name == "digits sd" and sd.run.status.value == "SUCCEEDED"
    assert sd.params == {"lr": "0.01", "batch_size": "32"}
    assert sd.tags["team"] == "vision" and sd.tags["mlflow.run_id"] == mlflow_store["sd"]
    assert sd.tags["mlflow.experiment_name"] == "vision"
    assert sd.tags["mlflow.start_time"] == "2026-01-01T00:00:00.000+00:00"
    assert sd.tags["mlflow.end_time"] == "2026-01-01T00:01:00.000+00:00"
    assert sd.tags["mlflow.import"] == "complete"
    assert "'batch size' is 'batch_size'" in sd.tags["mlflow.import_notes"]
    loss = p.runs.metrics(sd.run.id, "loss")
    assert [x.step for x in loss] == [0, 1, 2] and loss[0].value == 1.0 and loss[2].value == 0.5
    assert math.isnan(loss[1].value)
    assert [x.timestamp for x in loss] == [T0_MS / 1000 + s for s in (0, 1, 2)]
    assert sd.metrics["loss"] == 0.5  # the final value: the point at the highest step
    assert sd.metrics["val_acc"] == sys.float_info.max  # MLflow's SQL store keeps inf so
    files = {a.path: a for a in backend.store.list_run_artifacts(sd.run.id)}
    assert backend.artifacts.get_bytes(files["notes/readme.txt"].sha256) == b"hello from mlflow"
    assert {"weights/state_dict.pth", "mlflow_import/run.json"} <= set(files)
    record = json.loads(backend.artifacts.get_bytes(files["mlflow_import/run.json"].sha256))
    assert record["params"]["batch size"] == "32" and record["start_time"] == T0_MS

    [model] = by_id[mlflow_store["sd"]]["models"]
    assert model["imported_as"] == "digits-sd@1" and model["reason"] == ""
    assert sd.tags["mlflow.model.Digits_SD.1"] == "imported as digits-sd@1"
    version = p.models.get("digits-sd", "champion")
    assert (version.version, version.run_id) == (1, sd.run.id)
    module, signature = p.models.load("digits-sd")
    assert signature.features == ("a", "b", "c", "d")
    for key, value in mlflow_store["weights"].items():
        assert module.state_dict()[key].equal(value)
    edges = backend.store.downstream(f"run:{sd.run.id}", 1)
    assert [(e.entity, e.relation) for e in edges] == [("model_version:digits-sd@1", "produced")]

    pt = p.runs.get(by_id[mlflow_store["pt"]]["run_id"])
    assert pt.run.status.value == "FAILED" and pt.run.error == "FAILED in MLflow"
    reason = pt.tags["mlflow.model.digits-pt.1"]
    assert reason.startswith("not imported: MLflow's pytorch flavor pickled the whole module")
    assert pt.metrics == {"loss": 0.3}
    sk = p.runs.get(by_id[mlflow_store["sk"]]["run_id"])
    assert sk.run.error == "KILLED in MLflow"
    assert "sklearn model, pickled" in sk.tags["mlflow.model.sk-model.1"]
    assert [m.name for m in p.models.list()] == ["digits-sd"]

    again = run("import", "mlflow", "--tracking-uri", uri)
    assert again.exit_code == 0, again.output
    assert "runs: 0 imported, 3 already there, 0 failed" in again.stdout
    assert (
        f"[3/3] tabular/sk (mlflow {mlflow_store['sk']}) skipped (imported before as "
        f"{sk.run.id})" in again.stderr
    )
    tracked = p.runs.list('kind = "tracked"')
    assert len(tracked) == 3 and len(p.models.versions("digits-sd")) == 1


def test_an_experiment_filter_and_a_cut_off_import(
    run: Callable[..., Any], http_platform: Callable[[str], Any], admin_token: str,
    mlflow_store: dict[str, Any],
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    # an import whose process died: its run has the MLflow id but never became complete
    cut_off = p.http.post("runs", RunView, {"name": "half",
                                            "tags": {"mlflow.run_id": mlflow_store["sk"]}})  # fmt: skip
    result = run("import", "mlflow", "--tracking-uri", mlflow_store["uri"], "-e", "tabular",
                 "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["experiments"] == ["tabular"] and report["other_models"] == []
    [imported] = report["runs"]
    assert imported["mlflow_run_id"] == mlflow_store["sk"] and imported["outcome"] == "imported"
    old = p.runs.get(cut_off.run.id)
    assert old.run.status.value == "FAILED" and "cut off" in (old.run.error or "")
    assert [r.run.id for r in p.runs.list(f'tags.mlflow.run_id = "{mlflow_store["sk"]}" and '
                                          'tags.mlflow.import = "complete"')] == [imported["run_id"]]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_bad_input_is_one_line(
    run: Callable[..., Any], mlflow_store: dict[str, Any], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, backend: Backend,
) -> None:  # fmt: skip
    uri = mlflow_store["uri"]
    backend.store.create_user(User(name="vic", role=Role.VIEWER, created_at=utcnow()))
    viewer = issue_token(backend.store, "vic")[0]
    line = _one_line(run("import", "mlflow", "--tracking-uri", uri, token=viewer))
    assert "vic may not" in line and "train.submit" in line
    line = _one_line(run("import", "mlflow", "--tracking-uri", uri, "-e", "nope"))
    assert "no experiment named 'nope'" in line
    line = _one_line(run("import", "mlflow", "--tracking-uri", f"sqlite:///{tmp_path}/no.db"))
    assert "no MLflow store at" in line and not (tmp_path / "no.db").exists()
    unreachable = f"http://127.0.0.1:{_free_port()}"
    assert "cannot reach MLflow" in _one_line(
        run("import", "mlflow", "--tracking-uri", unreachable)
    )
    assert "cannot read MLflow" in _one_line(run("import", "mlflow", "--tracking-uri", "x://y"))
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    assert "pip install mlflow-skinny" in _one_line(run("import", "mlflow", "--tracking-uri", uri))
    assert os.environ.get("MLFLOW_DISABLE_TELEMETRY") == "true"
