"""``dlp demo``: the main job end to end on the embedded default, in a few minutes.

Start the platform (local Ray, DuckDB file, local artifact dir) → a dataset of real handwritten
digits (scikit-learn ships them) committed in two batches → a 2-worker training job with
per-epoch progress → the registered model version → the ``train_and_deploy`` workflow gate →
a Ray Serve deployment → real HTTP predictions scored on held-out rows → the lineage of one
prediction back to the dataset commit → what to open next.

Once the platform is up the demo is a client like any other: everything after ``up`` goes
through the SDK's HTTP client (``dlplatform.client.connect``) with the admin token ``up`` wrote.
Running it again reuses the dataset (same data, same version hash) and replaces the model
version and deployment cleanly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from dlplatform import runtime  # light: its names load on first use, Ray with `up`
from dlplatform.client import connect
from dlplatform.config import Settings
from dlplatform.errors import DLPlatformError, NotFound

if TYPE_CHECKING:
    from dlplatform.client import JobHandle, Platform
    from dlplatform.workflows.spec import WorkflowRunDetail

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
    from sklearn.datasets import load_digits  # heavy (scikit-learn): only when the data is made

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


def _ensure_dataset(p: Platform, train: pa.Table, say: Say) -> list[str]:
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


def _train_gate_deploy(p: Platform, commit: str, say: Say) -> tuple[str, str, str, bool]:
    """Run ``train_and_deploy`` on the commit: a 2-worker training job (per-epoch progress shown
    from its metrics), the gate on held-out accuracy, promotion to production and deployment.

    Returns (workflow run id, training job id, model version, gate passed).
    """
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
    job: list[JobHandle] = []  # the workflow's training job, once it shows up
    seen_epochs: set[int] = set()
    seen_steps: dict[str, str] = {}

    def show(detail: WorkflowRunDetail) -> None:
        for st in detail.steps:
            if seen_steps.get(st.step_id) != st.status.value:
                seen_steps[st.step_id] = st.status.value
                say(f"  step {st.name}: {st.status.value}" + (f" ({st.error})" if st.error else ""))
        if not job:
            for candidate in p.training.list(limit=10):
                if candidate.spec.dataset == ref and candidate.run.created_at >= run.created_at:
                    job.append(p.training.get(candidate.id))
                    say(f"  training job {candidate.id}: {candidate.spec.workers} workers")
                    break
        if job:
            for row in job[0].epochs():
                epoch = int(row.get("epoch", -1))
                if epoch >= 0 and epoch not in seen_epochs:
                    seen_epochs.add(epoch)
                    keys = ("loss", "val_loss", "val_accuracy")
                    say(
                        f"    epoch {epoch}: "
                        + ", ".join(f"{k} {row[k]:.4f}" for k in keys if k in row)
                    )

    detail = p.workflows.wait(run.id, timeout_s=1200, on_update=show)
    if detail.run.status.value != "SUCCEEDED":
        raise DLPlatformError(f"workflow {run.id} {detail.run.status.value}: {detail.run.error}")
    version = job[0].model_version if job else None
    if version is None:
        raise DLPlatformError(f"workflow {run.id} succeeded but registered no model version")
    say(f"registered {version}; gate passed; promoted to production; serving /models/{MODEL}")
    return run.id, job[0].id, version, True


def _predict(p: Platform, held_out: pa.Table, say: Say) -> tuple[int, float, str]:
    features = [c for c in held_out.column_names if c != "target"]
    x = np.stack([held_out[c].to_numpy() for c in features], axis=1)
    y = held_out["target"].to_numpy()
    correct, request_id = 0, ""
    for start in range(0, len(y), 32):
        rows = x[start : start + 32].tolist()
        for attempt in range(30):
            try:
                answer = p.serving.predict(MODEL, rows)
                break
            except DLPlatformError:
                if attempt == 29:
                    raise
                time.sleep(1)  # the new replica may still be starting
        request_id = answer.request_id
        predicted = np.asarray([_label(o) for o in answer.outputs])
        correct += int((predicted == y[start : start + 32]).sum())
    accuracy = correct / len(y)
    say(f"HTTP predictions on {len(y)} held-out rows via POST {p.url}/models/{MODEL}: "
        f"accuracy {accuracy:.3f}")  # fmt: skip
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
    started = time.monotonic()
    say(f"starting the platform under {settings.home} ...")
    info = runtime.up(settings, progress=lambda msg: say(f"  {msg}"))
    token = settings.admin_token_path.read_text().strip()
    try:
        with connect(url=info.api_url, token=token) as p:
            train, held_out = digits_tables()
            commits = _ensure_dataset(p, train, say)
            workflow_run, job_id, version, passed = _train_gate_deploy(p, commits[-1], say)
            count, accuracy, request_id = _predict(p, held_out, say)
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


def _lineage(p: Platform, request_id: str, say: Say) -> list[str]:
    nodes: list[Any] = []
    for attempt in range(30):  # the prediction log is flushed in batches, off the request path
        try:
            nodes = p.lineage.upstream(f"prediction:{request_id}")
        except NotFound:  # not logged yet: the gateway knows no such prediction
            if attempt == 29:
                raise
        if nodes:
            break
        time.sleep(1.0)
    chain = [f"prediction:{request_id}"] + [n.entity for n in nodes]
    say("lineage of one prediction, back to the data:")
    say("  " + " <- ".join(chain))
    return chain
