"""``dlp demo``: the main job end to end on the embedded default, in a few minutes.

Start the platform (local Ray, DuckDB file, local artifact dir) → a dataset of real handwritten
digits (scikit-learn ships them) committed in two batches → a 2-worker training job with
per-epoch progress → the registered model version → the ``train_and_deploy`` workflow gate →
a Ray Serve deployment → real HTTP predictions scored on held-out rows → the lineage of one
prediction back to the dataset commit → what to open next.

Running it again reuses the dataset (same data, same version hash) and replaces the model
version and deployment cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from dlplatform.config import Settings

DATASET = "digits"
MODEL = "digits-mlp"
Say = Callable[[str], None]


class DemoResult(BaseModel, frozen=True, extra="forbid"):
    """What the demo did, for ``--json`` and the tests."""

    api_url: str
    ui_url: str
    dashboard_url: str | None
    token_file: str
    dataset_commits: list[str]
    training_job: str
    model_version: str
    workflow_run: str
    gate_passed: bool
    deployment: str
    predictions: int
    accuracy: float
    lineage: list[str]
    seconds: float


def digits_tables(seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """The digits as (train rows, held-out rows): 64 float32 pixel columns + int64 ``target``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32) / 16.0
    y = data.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * 0.85)

    def table(idx: np.ndarray) -> pa.Table:
        cols = {f"px{i}": pa.array(x[idx, i]) for i in range(x.shape[1])}
        cols["target"] = pa.array(y[idx])
        return pa.table(cols)

    return table(order[:cut]), table(order[cut:])


def _ensure_dataset(p: Any, train: pa.Table, say: Say) -> list[str]:
    from dlplatform.errors import NotFound

    try:
        handle = p.datasets.get(DATASET)
        commits = handle.commits()
        if commits and commits[0].row_count == train.num_rows:
            say(f"dataset {DATASET}: reusing head {commits[0].id} ({commits[0].row_count} rows)")
            return [c.id for c in reversed(commits[:2])]
    except NotFound:
        handle = p.datasets.create(
            DATASET, description="8x8 handwritten digits (scikit-learn), pixels scaled to 0..1"
        )
    half = train.num_rows // 2
    first = handle.push(train.slice(0, half), mode="overwrite", message="first batch")
    say(
        f"dataset {DATASET}: commit {first.id} ({first.row_count} rows, hash {first.version_hash[:12]})"
    )
    second = handle.push(train.slice(half), mode="append", message="second batch")
    say(
        f"dataset {DATASET}: commit {second.id} ({second.row_count} rows, hash {second.version_hash[:12]})"
    )
    return [first.id, second.id]


def _train_gate_deploy(p: Any, commit: str, say: Say) -> tuple[str, str, str, bool]:
    """Run ``train_and_deploy`` on the commit: a 2-worker training job (per-epoch progress shown
    from its metrics), the gate on held-out accuracy, promotion to production and deployment.

    Returns (workflow run id, training job id, model version, gate passed).
    """
    from dlplatform.errors import DLPlatformError
    from dlplatform.train import epoch_table

    run = p.workflows.run(
        "dlplatform.workflows.pipelines:train_and_deploy",
        {
            "dataset": DATASET, "commit": commit, "label": "target", "model": "mlp",
            "epochs": 8, "workers": 2, "params": {"hidden": 64}, "model_name": MODEL,
            "training": {"lr": 0.003, "batch_size": 64}, "metric": "val_accuracy",
            "min_score": 0.85,
        },
    )  # fmt: skip
    say(f"workflow {run.id}: train_and_deploy (train -> evaluate -> gate -> promote + deploy)")
    ref = f"{DATASET}@{commit}"
    job_id = ""
    seen_epochs: set[int] = set()
    seen_steps: dict[str, str] = {}
    deadline = time.monotonic() + 1200
    while True:
        detail = p.workflows.status(run.id)
        for st in detail.steps:
            if seen_steps.get(st.step_id) != st.status.value:
                seen_steps[st.step_id] = st.status.value
                say(f"  step {st.name}: {st.status.value}" + (f" ({st.error})" if st.error else ""))
        if not job_id:
            for job in p.training.list(limit=10):
                if job.spec.dataset == ref and job.run.created_at >= run.created_at:
                    job_id = job.id
                    say(f"  training job {job_id}: {job.spec.workers} workers")
                    break
        if job_id:
            for row in epoch_table(p.training.get(job_id).metric_points()):
                epoch = int(row.get("epoch", -1))
                if epoch >= 0 and epoch not in seen_epochs:
                    seen_epochs.add(epoch)
                    keys = ("loss", "val_loss", "val_accuracy")
                    say(
                        f"    epoch {epoch}: "
                        + ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
                    )
        if detail.run.status.is_final:
            break
        if time.monotonic() > deadline:
            raise DLPlatformError(f"workflow {run.id} did not finish in time")
        time.sleep(1.0)
    if detail.run.status.value != "SUCCEEDED":
        raise DLPlatformError(f"workflow {run.id} {detail.run.status.value}: {detail.run.error}")
    version = p.training.get(job_id).model_version if job_id else None
    if version is None:
        raise DLPlatformError(f"workflow {run.id} succeeded but registered no model version")
    say(f"registered {version}; gate passed; promoted to production; serving /models/{MODEL}")
    return run.id, job_id, version, True


def _predict(api_url: str, token: str, held_out: pa.Table, say: Say) -> tuple[int, float, str]:
    import httpx

    features = [c for c in held_out.column_names if c != "target"]
    x = np.stack([held_out[c].to_numpy() for c in features], axis=1)
    y = held_out["target"].to_numpy()
    url = api_url.replace("/api/v1", "") + f"/models/{MODEL}"
    correct, request_id = 0, ""
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        for start in range(0, len(y), 32):
            rows = x[start : start + 32].tolist()
            for attempt in range(30):
                resp = client.post(url, json={"inputs": rows})
                if resp.status_code == 200 or attempt == 29:
                    break
                time.sleep(1)  # the new replica may still be starting
            resp.raise_for_status()
            body = resp.json()
            request_id = body["request_id"]
            predicted = np.asarray([_label(o) for o in body["outputs"]])
            correct += int((predicted == y[start : start + 32]).sum())
    accuracy = correct / len(y)
    say(f"HTTP predictions on {len(y)} held-out rows via POST {url}: accuracy {accuracy:.3f}")
    return len(y), accuracy, request_id


def _label(output: Any) -> int:
    if isinstance(output, dict):
        for key in ("label", "class", "prediction"):
            if key in output:
                return int(output[key])
    if isinstance(output, list):
        return int(np.argmax(output))
    return int(output)


def run_demo(settings: Settings, say: Say, *, stop: bool = False) -> DemoResult:
    """Run the whole demo against the platform under ``settings.home`` (started if needed)."""
    from dlplatform import runtime
    from dlplatform.sdk import connect

    started = time.monotonic()
    say(f"starting the platform under {settings.home} ...")
    info = runtime.up(settings, progress=lambda msg: say(f"  {msg}"))
    p = connect(home=str(settings.home), start=False)
    token = settings.admin_token_path.read_text().strip()
    try:
        train, held_out = digits_tables()
        commits = _ensure_dataset(p, train, say)
        workflow_run, job_id, version, passed = _train_gate_deploy(p, commits[-1], say)
        count, accuracy, request_id = _predict(info.api_url, token, held_out, say)
        lineage = _lineage(p, request_id, say)
        say("")
        say("next:")
        say(f"  API        {info.api_url}   (token: {info.token_file})")
        say(f"  web UI     {info.ui_url}")
        say(f"  dashboard  {info.dashboard_url} (internal, do not expose)")
        say("  notebooks  pip install -e '.[lab]' && dlp lab")
        say("  stop       dlp down")
        return DemoResult(
            api_url=info.api_url, ui_url=info.ui_url, dashboard_url=info.dashboard_url,
            token_file=info.token_file, dataset_commits=commits, training_job=job_id,
            model_version=version, workflow_run=workflow_run, gate_passed=passed,
            deployment=MODEL, predictions=count, accuracy=accuracy, lineage=lineage,
            seconds=round(time.monotonic() - started, 1),
        )  # fmt: skip
    finally:
        if stop:
            say("stopping the platform (--stop) ...")
            runtime.down(settings)


def _lineage(p: Any, request_id: str, say: Say) -> list[str]:
    nodes: list[Any] = []
    for _ in range(30):  # the prediction log is flushed in batches, off the request path
        nodes = p.lineage.upstream(f"prediction:{request_id}")
        if nodes:
            break
        time.sleep(1.0)
    chain = [f"prediction:{request_id}"] + [n.entity for n in nodes]
    say("lineage of one prediction, back to the data:")
    say("  " + " <- ".join(chain))
    return chain
