"""Notebook helpers over the SDK (in-process gateway, real DuckDB): lists render as HTML tables,
``job.metrics()`` is a DataFrame, ``plot_metrics`` draws one panel per group of related keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from dlplatform.context import Backend
from dlplatform.lab import epoch_table, plot_metrics
from dlplatform.lab._html import MAX_ROWS, _views, list_html
from dlplatform.lab.notebook import metric_groups
from dlplatform.metadata import MetricPoint, Run, RunStatus
from dlplatform.metadata.records import ArtifactFile, utcnow
from dlplatform.train.spec import TrainingJobSpec

EPOCH_KEYS = ("loss", "val_loss", "val_accuracy", "samples", "epoch_time_s", "data_wait_s",
              "throughput_samples_per_s", "restarts", "score")  # fmt: skip
"""What a platform training job logs each epoch (dlplatform/train/runner.py), and ``epoch``."""


def _job(backend: Backend, run_id: str, epochs: int) -> None:
    spec = TrainingJobSpec(dataset="digits@c-1", label="target", epochs=max(epochs, 1))
    backend.store.create_run(Run(id=run_id, owner="admin", status=RunStatus.SUCCEEDED,
                                 spec_json=spec.model_dump_json(), created_at=utcnow()))  # fmt: skip
    points = []
    for e in range(epochs):
        values = {"epoch": e, "loss": 2.0 / 10**e, "val_loss": 2.5 / 10**e, "val_accuracy": 0.5 + e / 10,
                  "samples": 1000.0, "epoch_time_s": 0.15, "data_wait_s": 0.0,
                  "throughput_samples_per_s": 6600.0 + e, "restarts": 0.0, "score": 2.5 / 10**e}  # fmt: skip
        points += [MetricPoint(run_id=run_id, key=k, value=v, step=e) for k, v in values.items()]
        points.append(MetricPoint(run_id=run_id, key="step/loss", value=1.0, step=e * 100 + 7))
    backend.store.log_metrics(points)


def test_job_metrics_is_a_dataframe_with_one_row_per_epoch(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    _job(backend, "run-3", 3)
    p = http_platform(admin_token)
    frame = p.training.get("run-3").metrics()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert frame["epoch"].tolist() == [0, 1, 2] and str(frame["epoch"].dtype) == "int64"
    assert set(frame.columns) == {"epoch", *EPOCH_KEYS}  # step-level keys left out
    assert frame["val_accuracy"].tolist() == [0.5, 0.6, 0.7]
    assert epoch_table(p, "run-3").equals(frame)
    assert p.training.get("run-3").epochs()[0]["loss"] == 2.0  # the plain rows, for scripts
    _job(backend, "run-0", 0)
    empty = p.training.get("run-0").metrics()
    assert empty.empty and list(empty.columns) == ["epoch"]


def test_metric_keys_are_grouped_into_panels() -> None:
    assert metric_groups({"epoch", *EPOCH_KEYS, "step/loss", "val_rmse"}) == {
        "loss": ["loss", "val_loss"],
        "accuracy": ["val_accuracy"],
        "seconds": ["data_wait_s", "epoch_time_s"],
        "throughput": ["throughput_samples_per_s"],
        "rmse": ["val_rmse"],
    }
    assert metric_groups({"train_acc", "test_acc", "samples_per_s"}) == {
        "acc": ["test_acc", "train_acc"], "throughput": ["samples_per_s"]}  # fmt: skip


def test_plot_metrics_draws_one_panel_per_group_with_sensible_scales(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    _job(backend, "run-4", 4)
    p = http_platform(admin_token)
    fig = plot_metrics(p, "run-4")
    axes = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(axes) == {"loss", "accuracy", "seconds", "throughput"}
    lines = {
        title: sorted(line.get_label() for line in ax.get_lines()) for title, ax in axes.items()
    }
    assert lines["loss"] == ["loss", "val_loss"] and lines["throughput"] == [
        "throughput_samples_per_s"
    ]
    assert axes["loss"].get_yscale() == "log"  # 2.0 .. 0.0025: three decades
    assert axes["accuracy"].get_ylim()[1] <= 1.05 and axes["throughput"].get_ylim()[0] == 0
    assert axes["loss"].get_xlabel() == "epoch"
    ticks = [t for t in axes["loss"].get_xticks() if 0 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
    only = plot_metrics(p, "run-4", keys=["restarts", "loss"])  # hidden keys when named
    assert {ax.get_title() for ax in only.axes if ax.get_visible()} == {"loss", "restarts"}

    with p.runs.start(name="from-code") as run:
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1), step)
    tracked = plot_metrics(p, run.id)
    (ax,) = [a for a in tracked.axes if a.get_visible()]
    assert ax.get_xlabel() == "step" and ax.get_title() == "loss"


def test_lists_of_records_render_as_html_tables() -> None:
    files = [ArtifactFile.of(f"plots/{i}.png", "ab" * 32, 10 * i) for i in range(3)]
    markup = list_html(files)
    assert markup is not None and markup.startswith("<table")
    assert markup.count("<tr>") == 4 and "plots/2.png" in markup and "image/png" in markup
    assert "ArtifactFile: 3" in markup
    assert list_html([]) is None and list_html([1, 2]) is None  # IPython shows their text
    assert list_html([files[0], "x"]) is None
    many = list_html([files[0]] * (MAX_ROWS + 5))
    assert many is not None and many.count("<tr>") == MAX_ROWS + 1 and "first 200" in many
    runs = [Run(id="run-<b>", owner="alice", created_at=utcnow())]
    shown = _views()[list](runs)
    assert "run-&lt;b&gt;" in shown and "<b>" not in shown  # escaped
