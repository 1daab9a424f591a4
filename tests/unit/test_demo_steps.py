"""The demo's steps that need no Ray, through the HTTP client as the demo runs them: the dataset
is pushed in two commits, and a second run reuses it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

from dlplatform.demo import DATASET, _ensure_dataset


def test_dataset_is_pushed_in_two_commits_then_reused(
    http_platform: Callable[[str], object], admin_token: str
) -> None:
    p = http_platform(admin_token)
    train = pa.table({"px0": np.linspace(0, 1, 10, dtype=np.float32),
                      "target": np.arange(10, dtype=np.int64) % 3})  # fmt: skip
    said: list[str] = []
    commits = _ensure_dataset(p, train, said.append)
    assert len(commits) == 2 and len(said) == 2
    history = p.datasets.get(DATASET).commits()  # type: ignore[attr-defined]
    assert [c.id for c in reversed(history)] == commits and history[0].row_count == 10
    said.clear()
    assert _ensure_dataset(p, train, said.append) == commits
    assert said == [f"dataset {DATASET}: reusing head {commits[-1]} (10 rows)"]
