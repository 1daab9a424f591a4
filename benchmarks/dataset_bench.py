"""Dataset push/read throughput vs plain pyarrow and plain Ray Data, side by side in one run.

    python benchmarks/dataset_bench.py [--rows 2000000] [--repeats 3]

A 2,000,000-row table (10 float32 columns + an int64 label, 96 MB in Arrow) is pushed as one
commit (by default a commit over 32 MiB defers its column statistics to the first describe();
the run also reports a push that computes them inline) and read back with ``to_arrow()`` and ``to_ray().materialize()``; baselines are
``pyarrow.parquet.write_table``/``read_table`` of the same table to/from one local file and
``ray.data.read_parquet(<the commit's part files>).materialize()``. Each figure is the best of
``--repeats`` runs, the runs of a figure and its baseline interleaved. Throughput = Arrow bytes of
the table / seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _results import row, write_results

from dlplatform import data
from dlplatform.access import SYSTEM
from dlplatform.config import load_settings
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore
from dlplatform.metadata.artifacts import ArtifactStore


def make_table(rows: int) -> pa.Table:
    rng = np.random.default_rng(0)
    cols: dict[str, Any] = {f"f{i}": rng.random(rows, dtype=np.float32) for i in range(10)}
    cols["label"] = rng.integers(0, 10, rows)
    return pa.table(cols)


def best(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Best wall time of each function, runs interleaved (a, b, a, b, ...)."""
    times: dict[str, float] = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key] = min(times[key], time.perf_counter() - t0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--skip-ray", action="store_true", help="Only push and to_arrow (no Ray cluster)."
    )
    args = parser.parse_args()

    import ray

    tmp = Path(tempfile.mkdtemp(prefix="dlp-dataset-bench-"))
    settings = load_settings(home=tmp / "home")
    store = MetadataStore(settings.metadata_path)
    backend = Backend(
        store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings
    )
    table = make_table(args.rows)
    mb = table.nbytes / 1e6
    data.create_dataset(backend, SYSTEM, "bench")
    baseline_file = tmp / "baseline.parquet"
    commits: list[Any] = []

    def push() -> None:  # the default: statistics of a commit this large wait for describe()
        commits.append(data.push(backend, SYSTEM, "bench", table, mode="overwrite"))

    def push_with_stats() -> None:
        commits.append(
            data.push(backend, SYSTEM, "bench", table, mode="overwrite", compute_stats=True)
        )

    w = best(
        {
            "pyarrow": lambda: pq.write_table(table, baseline_file),
            "push": push,
            "push_with_stats": push_with_stats,
        },
        args.repeats,
    )
    commit = commits[-1]
    assert len({c.version_hash for c in commits}) == 1, "same data must give the same hash"
    _fs, paths = data.part_paths(backend, commit)
    # Plain Ray Data lists files by extension; give it the same parts under .parquet names
    # (hard links on the local artifact root, so no copy).
    plain_dir = Path(tempfile.mkdtemp(prefix="dlp-bench-parts-"))
    plain_paths = []
    for i, part in enumerate(paths):
        link = plain_dir / f"part-{i}.parquet"
        os.link(part, link)
        plain_paths.append(str(link))

    readers: dict[str, Callable[[], Any]] = {
        "pyarrow": lambda: pq.read_table(baseline_file),
        "to_arrow": lambda: data.to_arrow(backend, commit),
    }
    if not args.skip_ray:
        ray.init(
            address="local", include_dashboard=False, log_to_driver=False, logging_level="WARNING"
        )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        ctx.enable_auto_log_stats = False
        # Warm the worker pool once so neither reader pays for process start-up.
        data.to_ray(backend, commit).materialize()
        ray.data.read_parquet(plain_paths).materialize()
        readers["to_ray"] = lambda: data.to_ray(backend, commit).materialize()
        readers["ray_read_parquet"] = lambda: ray.data.read_parquet(plain_paths).materialize()
    r = best(readers, args.repeats)
    if not args.skip_ray:
        n_ray = data.to_ray(backend, commit).materialize().count()
        assert n_ray == args.rows, n_ray
        ray.shutdown()
    store.close()

    def mbps(seconds: float) -> float:
        return mb / seconds

    pa_w, pa_r = mbps(w["pyarrow"]), mbps(r["pyarrow"])
    rows = [
        row("push (one commit; default, stats deferred)", mbps(w["push"]), "MB/s",
            "pyarrow write_table", pa_w, ">= 0.7x", mbps(w["push"]) >= 0.7 * pa_w),
        row("push + column statistics (compute_stats=True)", mbps(w["push_with_stats"]), "MB/s",
            "pyarrow write_table", pa_w, "(reference)", None),
        row("to_arrow() (hash-verified)", mbps(r["to_arrow"]), "MB/s", "pyarrow read_table",
            pa_r, ">= 0.8x", mbps(r["to_arrow"]) >= 0.8 * pa_r),
    ]  # fmt: skip
    if not args.skip_ray:
        rows += [
            row("to_ray().materialize()", mbps(r["to_ray"]), "MB/s", "pyarrow read_table",
                pa_r, ">= 0.25x", mbps(r["to_ray"]) >= 0.25 * pa_r),
            row("ray.data.read_parquet(parts).materialize()", mbps(r["ray_read_parquet"]), "MB/s",
                "pyarrow read_table", pa_r, "(reference, ~0.12x)", None),
        ]  # fmt: skip
    print(
        f"\n{args.rows:,} rows, {mb:.1f} MB in Arrow, {len(commit.parts)} parts, "
        f"{commit.size_bytes / 1e6:.1f} MB of Parquet; cores={os.cpu_count()}\n"
    )
    write_results("dataset_bench", rows)


if __name__ == "__main__":
    main()
