"""Notebook helpers: metric plots and troubleshooting (models, failed workflow runs, job logs)."""

from __future__ import annotations

import html
import math
from typing import Any


class HTMLView:
    """Something that renders as HTML in a notebook and as its text elsewhere."""

    def __init__(self, markup: str, text: str) -> None:
        self.markup = markup
        self.text = text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


HIDDEN_KEYS = frozenset({"epoch", "restarts", "samples", "step", "steps", "score"})
"""Bookkeeping keys ``plot_metrics`` leaves out unless asked for by name (``score`` repeats
``val_loss`` or ``loss``); step-level progress (``step/...``) is left out too."""
_SPLIT_PREFIXES = ("val_", "validation_", "train_", "training_", "test_", "eval_")
_FRACTIONS = frozenset({"accuracy", "acc", "precision", "recall", "f1", "auc"})


def metric_groups(keys: list[str] | set[str]) -> dict[str, list[str]]:
    """One panel per group of related metric keys: a key and its ``val_``/``train_``/``test_``
    twins share one (``loss`` with ``val_loss``, ``accuracy`` with ``val_accuracy``); rates
    (``*throughput*``, ``*_per_s``) share a ``throughput`` panel and durations (``*_s``) a
    ``seconds`` panel. Bookkeeping keys (``HIDDEN_KEYS``, ``step/...``) are left out."""
    groups: dict[str, list[str]] = {}
    for key in sorted(keys):
        if key in HIDDEN_KEYS or key.startswith("step/"):
            continue
        if "throughput" in key or key.endswith("_per_s"):
            group = "throughput"
        elif key.endswith("_s"):
            group = "seconds"
        else:
            group = next((key[len(p) :] for p in _SPLIT_PREFIXES if key.startswith(p)), key)
        groups.setdefault(group, []).append(key)
    return dict(sorted(groups.items(), key=lambda item: (_rank(item[0]), item[0])))


def _rank(group: str) -> int:
    """Panels in reading order: losses, quality scores, the rest, then rates and durations."""
    if "loss" in group:
        return 0
    if group in _FRACTIONS:
        return 1
    return {"throughput": 3, "seconds": 4}.get(group, 2)


def plot_metrics(p: Any, run_id: str, keys: list[str] | None = None) -> Any:
    """A matplotlib figure of a run's metrics (a training job, a trial, a tracked run): one
    panel per group of related keys (see ``metric_groups``), so a loss of 0.1 and a throughput
    of 6,000 samples/s never share an axis. x is the epoch for platform jobs, the step for runs
    tracked from code, with integer ticks; a loss spanning two decades or more gets a log
    scale, an accuracy stays within 0..1. ``keys`` picks the keys to draw (bookkeeping keys
    too, when named)."""
    import matplotlib  # heavy: matplotlib, only for the plot

    matplotlib.use("Agg", force=False)
    # heavy: matplotlib, once its backend is chosen
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    kind = p.runs.get(run_id).run.kind
    series: dict[str, list[tuple[int, float]]] = {}
    for point in sorted(p.runs.metrics(run_id), key=lambda m: (m.step, m.timestamp)):
        series.setdefault(point.key, []).append((point.step, point.value))
    wanted = set(series) if keys is None else set(keys) & set(series)
    groups = metric_groups(wanted) if keys is None else _named_groups(wanted)
    cols = min(3, max(1, len(groups)))
    rows = max(1, -(-len(groups) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.0 * rows), squeeze=False)
    for ax, (group, members) in zip(axes.flat, groups.items(), strict=False):
        for key in members:
            xs, ys = zip(*_last_per_step(series[key]), strict=True)
            ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, label=key)
        _scale(ax, group, [v for k in members for _, v in series[k]])
        ax.set_title(group)
        ax.set_xlabel("epoch" if kind in ("train", "trial", "tune") else "step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    if not groups:
        axes.flat[0].text(0.5, 0.5, "no metrics yet", ha="center", va="center")
    fig.suptitle(f"{kind} run {run_id}")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _named_groups(keys: set[str]) -> dict[str, list[str]]:
    """``metric_groups`` of named keys, the hidden ones included (each on a panel of its own)."""
    groups = metric_groups(keys)
    for key in sorted(keys - {k for ks in groups.values() for k in ks}):
        groups[key] = [key]
    return groups


def _last_per_step(points: list[tuple[int, float]]) -> list[tuple[int, float]]:
    """One point per step: the last logged (as the run's final value is chosen)."""
    return sorted(dict(points).items())


def _scale(ax: Any, group: str, values: list[float]) -> None:
    """y scale by what the panel shows: a log scale for a positive loss spanning two decades or
    more, 0..1 for values that are fractions (accuracy), 0 at the bottom for rates."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    if "loss" in group and low > 0 and high / low >= 100:
        ax.set_yscale("log")
    elif group in _FRACTIONS and 0 <= low <= high <= 1:
        ax.set_ylim(min(0.0, low), 1.02)
    elif group in ("throughput", "seconds") and low >= 0:
        ax.set_ylim(0, high * 1.08 if high > 0 else 1)


def try_model(p: Any, model: str, version_or_alias: Any = None, sample: Any = None) -> Any:
    """Load a model version as a torch module and run it on ``sample`` (a table/DataFrame of
    feature columns, default: 5 rows of the version's training dataset). Returns the outputs."""
    # torch (and numpy, pyarrow): only when a model is tried
    import numpy as np
    import pyarrow as pa
    import torch

    module, signature = p.models.load(model, version_or_alias)
    if sample is None:
        mv = p.models.get(model, version_or_alias)
        sample = p.datasets.resolve(_dataset_ref(p, mv)).sample(5)
    columns = list(signature.features)
    table = sample if isinstance(sample, pa.Table) else pa.Table.from_pandas(sample)
    x = np.stack(
        [np.asarray(table.column(c).to_numpy(), dtype=np.float32) for c in columns], axis=1
    )
    with torch.no_grad():
        out = module(torch.from_numpy(x))
    if signature.task == "classification":
        index = out.argmax(dim=1).tolist()
        return [signature.classes[i] for i in index] if signature.classes else index
    return out.squeeze(-1).tolist()


def _dataset_ref(p: Any, mv: Any) -> str:
    """``name@commit`` the version was trained on (from its training job's spec)."""
    return str(p.training.get(mv.run_id).status().spec.dataset)


def inspect_workflow_run(p: Any, run_id: str) -> dict[str, Any]:
    """Every finished step's output of a workflow run (failed and unfinished steps map to their
    status and error), for troubleshooting a failed run."""
    detail = p.workflows.status(run_id)
    out: dict[str, Any] = {}
    for step in detail.steps:
        if step.status.value == "SUCCEEDED":
            out[step.step_id] = p.workflows.load_output(run_id, step.step_id)
        else:
            out[step.step_id] = {"status": step.status.value, "error": step.error}
    return out


def job_logs(p: Any, job_id: str, tail: int = 200) -> HTMLView:
    """The last ``tail`` lines of a training job's logs."""
    lines = p.training.get(job_id).logs().splitlines()[-tail:]
    text = "\n".join(lines)
    return HTMLView(f"<pre style='max-height:30em;overflow:auto'>{html.escape(text)}</pre>", text)


def epoch_table(p: Any, job_id: str) -> Any:
    """A training job's per-epoch metrics as a DataFrame (``job.metrics()``), shown as a table."""
    return p.training.get(job_id).metrics()
