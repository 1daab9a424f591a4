"""A small workflow used by the troubleshooting notebook: it fails on purpose when the data's
mean is below ``min_mean``, so the notebook can open the failed run and load each finished step's
output. Registered by import path ``dlplatform.lab.examples:quality_check``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dlplatform.workflows import StepNode, step, workflow


@step(num_cpus=0.25)
def make_table(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.random(n), "y": rng.integers(0, 10, n)})


@step(num_cpus=0.25)
def summarize(table: pa.Table) -> dict[str, float]:
    x = table["x"].to_numpy()
    return {"rows": float(table.num_rows), "mean": float(x.mean()), "max": float(x.max())}


@step(num_cpus=0.25, retries=0)
def check(stats: dict[str, float], min_mean: float) -> dict[str, float]:
    if stats["mean"] < min_mean:
        raise ValueError(f"mean {stats['mean']:.3f} is below the required {min_mean}")
    return stats


@workflow
def quality_check(n: int = 200, seed: int = 0, min_mean: float = 0.9) -> StepNode:
    """make_table → summarize → check (raises when the mean is below ``min_mean``)."""
    return check.bind(summarize.bind(make_table.bind(n, seed)), min_mean)
