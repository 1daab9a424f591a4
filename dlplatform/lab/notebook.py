"""Notebook helpers: metric plots and troubleshooting (models, failed workflow runs, job logs)."""

from __future__ import annotations

from typing import Any

from dlplatform.lab._html import rows_html


class HTMLView:
    """Something that renders as HTML in a notebook and as its text elsewhere."""

    def __init__(self, markup: str, text: str) -> None:
        self.markup = markup
        self.text = text

    def _repr_html_(self) -> str:
        return self.markup

    def __repr__(self) -> str:
        return self.text


def plot_metrics(p: Any, job_id: str, keys: list[str] | None = None) -> Any:
    """A matplotlib figure of a training job's per-epoch metrics (one line per metric)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = p.training.get(job_id).metrics()
    shown = keys or sorted({k for r in rows for k in r if k not in ("epoch", "throughput")})
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for key in shown:
        points = [(r["epoch"], r[key]) for r in rows if key in r and "epoch" in r]
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, marker="o", label=key)
    ax.set_xlabel("epoch")
    ax.set_title(f"job {job_id}")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def try_model(p: Any, model: str, version_or_alias: Any = None, sample: Any = None) -> Any:
    """Load a model version as a torch module and run it on ``sample`` (a table/DataFrame of
    feature columns, default: 5 rows of the version's training dataset). Returns the outputs."""
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
    import html

    return HTMLView(f"<pre style='max-height:30em;overflow:auto'>{html.escape(text)}</pre>", text)


def epoch_table(p: Any, job_id: str) -> HTMLView:
    rows = p.training.get(job_id).metrics()
    return HTMLView(rows_html(rows, f"job {job_id}"), "\n".join(map(str, rows)))
