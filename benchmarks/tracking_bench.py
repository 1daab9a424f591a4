"""Tracking runs from your own code and searching them: the platform's ``p.runs`` against
MLflow's ``MlflowClient``, side by side in one run.

Run: ``python benchmarks/tracking_bench.py`` (needs MLflow: ``mlflow-skinny`` with its SQL store
from the ``dev`` extra is enough, or ``mlflow`` from the ``bench`` extra). Starts a
platform with ``dlp up --home <tmp> --port <free>`` and a local ``mlflow server`` (sqlite, 1
worker; both helpers from ``client_bench.py``), then measures:

- per-call ``log_metric`` from a script: the platform's buffered ``run.log_metric`` (the call
  returns once the point is in the buffer; a background thread sends batches every second) against
  ``MlflowClient.log_metric`` (one HTTP request per call); points per second, the platform also
  "until flushed" (the time until ``flush()`` has stored every point);
- one batch of 1,000 points: ``run.log_metrics`` + ``flush()`` (one ``POST /runs/{id}/metrics``)
  against ``MlflowClient.log_batch``; p50 of each;
- searching 10,000 runs with a filter on one param and one metric, sorted by the metric, 100
  results: ``p.runs.search`` (a DataFrame) against ``MlflowClient.search_runs``; p50, alternating
  rounds, a different metric threshold in each query (so no answer comes from a cache).

Seeding the 10,000 runs is not measured: each side's rows are bulk-copied into its own database
before its server starts (a run made through each one's API is the template), since 10,000 runs
through either API take minutes on 2 cores. Prints a Markdown table and writes
``benchmarks/results/tracking_bench.json``.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _results import row, write_results  # noqa: E402
from client_bench import mlflow_server, platform_up, say  # noqa: E402

import dlplatform as dlp  # noqa: E402

PER_CALL_RATIO = 20.0
BATCH_RATIO = 5.0
SEARCH_RATIO = 0.2
KEY_PARAM = "opt"
KEY_METRIC = "val_accuracy"


def _values(n: int) -> list[tuple[str, float, float]]:
    rng = random.Random(7)
    return [("adam" if i % 2 else "sgd", rng.uniform(1e-4, 1e-1), rng.random()) for i in range(n)]


def seed_platform(home: Path, n: int) -> None:
    """``n`` finished tracked runs (params opt and lr, one val_accuracy point each) in the
    home's metadata database, before ``dlp up`` opens it."""
    import duckdb
    import pyarrow as pa

    from dlplatform.config import load_settings
    from dlplatform.metadata import MetadataStore, Run, RunStatus
    from dlplatform.metadata.records import utcnow

    path = load_settings(home=home).metadata_path
    store = MetadataStore(path)
    template = Run(id="run-template", kind="tracked", name="template", owner="admin",
                   status=RunStatus.SUCCEEDED, created_at=utcnow())  # fmt: skip
    store.create_run(template)
    store.close()
    values = _values(n)
    ids = [f"run-seed{i:05d}" for i in range(n)]
    row0 = template.model_dump(mode="python")
    runs = pa.Table.from_pylist([{**row0, "id": rid, "name": f"seed-{i}"}
                                 for i, rid in enumerate(ids)])  # fmt: skip
    params = pa.table({
        "run_id": ids * 2, "key": [KEY_PARAM] * n + ["lr"] * n,
        "value": [v[0] for v in values] + [str(v[1]) for v in values],
    })  # fmt: skip
    con = duckdb.connect(str(path))
    con.register("_runs", runs)
    con.register("_params", params)
    cols = ", ".join(f'"{c}"' for c in runs.column_names)
    con.execute(f"INSERT INTO runs ({cols}) SELECT {cols} FROM _runs")
    con.execute("INSERT INTO params SELECT run_id, key, value FROM _params")
    con.close()
    store = MetadataStore(path)  # metric points through the store: it keeps the final values
    store.log_metric_batch(ids, [KEY_METRIC] * n, [v[2] for v in values], [1] * n)
    store.close()


def seed_mlflow(db: Path, artifacts: Path, n: int) -> str:
    """``n`` runs like the platform's in MLflow's sqlite database, before its server starts;
    returns the experiment id. One run is made through MLflow's store, then its rows are copied
    (every column, whatever the schema version) with new ids and values."""
    from mlflow.entities import Metric, Param
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{db}", str(artifacts))
    exp = store.create_experiment(f"bench-{uuid.uuid4().hex[:6]}")
    now = int(time.time() * 1000)
    run = store.create_run(exp, "bench", now, [], "template")
    tid = run.info.run_id
    store.log_batch(tid, [Metric(KEY_METRIC, 0.5, now, 1)], [Param(KEY_PARAM, "adam"),
                    Param("lr", "0.01")], [])  # fmt: skip
    store.engine.dispose()
    values = _values(n)
    con = sqlite3.connect(db)
    for table, change in (
        ("runs", lambda r, i, rid: {**r, "run_uuid": rid, "name": f"seed-{i}"}),
        ("latest_metrics", lambda r, i, rid: {**r, "run_uuid": rid, "value": values[i][2]}),
        ("metrics", lambda r, i, rid: {**r, "run_uuid": rid, "value": values[i][2]}),
        ("params", lambda r, i, rid: {**r, "run_uuid": rid, "value": values[i][0]
                                      if r["key"] == KEY_PARAM else str(values[i][1])}),
        ("tags", lambda r, i, rid: {**r, "run_uuid": rid}),
    ):  # fmt: skip
        cur = con.execute(f"SELECT * FROM {table} WHERE run_uuid = ?", [tid])
        names = [d[0] for d in cur.description]
        template_rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        new = [change(r, i, uuid.uuid4().hex if table == "runs" else None)
               for i in range(n) for r in template_rows]  # fmt: skip
        if table == "runs":
            run_ids = [r["run_uuid"] for r in new]
        else:
            for k, r in enumerate(new):
                r["run_uuid"] = run_ids[k // len(template_rows)]
        marks = ", ".join("?" for _ in names)
        con.executemany(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})",
                        [[r[c] for c in names] for r in new])  # fmt: skip
    con.commit()
    con.close()
    return exp


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def bench(p: dlp.Platform, mlflow_url: str, exp: str, args: Any) -> list[dict[str, Any]]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_url)
    ml_run = client.create_run(exp).info.run_id
    mine = p.runs.start(name="bench-per-call")
    # per-call log_metric
    n = args.per_call_n
    t0 = time.perf_counter()
    for i in range(n):
        mine.log_metric("loss", 1.0 / (i + 1), i)
    caller_s = time.perf_counter() - t0
    mine.flush()
    flushed_s = time.perf_counter() - t0
    ml_n = args.mlflow_per_call_n
    t0 = time.perf_counter()
    for i in range(ml_n):
        client.log_metric(ml_run, "loss", 1.0 / (i + 1), step=i)
    ml_rate = ml_n / (time.perf_counter() - t0)
    assert len(p.runs.metrics(mine.id, "loss")) == n
    say(f"  per call: platform {n / caller_s:,.0f}/s (flushed {n / flushed_s:,.0f}/s), "
        f"MLflow {ml_rate:,.0f}/s")  # fmt: skip
    # batches of 1,000
    ours, theirs = [], []
    now_ms = int(time.time() * 1000)
    for r in range(args.batch_n):
        batch = {f"m{k}": float(k) for k in range(1000)}
        t0 = time.perf_counter()
        mine.log_metrics(batch, step=r)
        assert mine.flush() == 1000
        ours.append(time.perf_counter() - t0)
        metrics = [Metric(f"m{k}", float(k), now_ms, r) for k in range(1000)]
        t0 = time.perf_counter()
        client.log_batch(ml_run, metrics=metrics)
        theirs.append(time.perf_counter() - t0)
    mine.end()
    say(f"  1,000-point batch: platform p50 {_p50_ms(ours):.1f} ms, MLflow {_p50_ms(theirs):.1f}")
    # search 10,000 runs
    s_ours, s_theirs = [], []
    for q in range(args.search_n + 2):
        threshold = 0.5 + q / 1000
        t0 = time.perf_counter()
        frame = p.runs.search(f'params.{KEY_PARAM} = "adam" and metrics.{KEY_METRIC} > {threshold}',
                              order_by=f"metrics.{KEY_METRIC} DESC", max_results=100)  # fmt: skip
        took = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = client.search_runs(
            [exp], f"params.{KEY_PARAM} = 'adam' and metrics.{KEY_METRIC} > {threshold}",
            order_by=[f"metrics.{KEY_METRIC} DESC"], max_results=100,
        )  # fmt: skip
        took_ml = time.perf_counter() - t0
        assert len(frame) == len(found) == 100, (len(frame), len(found))
        ours_best = frame[f"metrics.{KEY_METRIC}"].iloc[0]
        assert abs(ours_best - found[0].data.metrics[KEY_METRIC]) < 1e-12
        if q >= 2:  # the first two: warm-up
            s_ours.append(took)
            s_theirs.append(took_ml)
    say(f"  search: platform p50 {_p50_ms(s_ours):.1f} ms, MLflow {_p50_ms(s_theirs):.1f} ms")
    per_call = n / caller_s
    return [
        row("per-call log_metric, caller side (buffered)", per_call, "points/s",
            "MlflowClient.log_metric", ml_rate, f">= {PER_CALL_RATIO:g}x",
            per_call >= PER_CALL_RATIO * ml_rate),
        row("per-call log_metric, until flush() stored them", n / flushed_s, "points/s",
            "MlflowClient.log_metric", ml_rate, "reported", None),
        row("1,000-point batch, p50", _p50_ms(ours), "ms", "MlflowClient.log_batch",
            _p50_ms(theirs), f"<= {1 / BATCH_RATIO:g}x (>= {BATCH_RATIO:g}x faster)",
            _p50_ms(ours) * BATCH_RATIO <= _p50_ms(theirs)),
        row(f"search {args.runs:,} runs (1 param + 1 metric filter, sort by metric, 100), p50",
            _p50_ms(s_ours), "ms", "MlflowClient.search_runs", _p50_ms(s_theirs),
            f"<= {SEARCH_RATIO:g}x", _p50_ms(s_ours) <= SEARCH_RATIO * _p50_ms(s_theirs)),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--per-call-n", type=int, default=20_000)
    parser.add_argument("--mlflow-per-call-n", type=int, default=300)
    parser.add_argument("--batch-n", type=int, default=15)
    parser.add_argument("--search-n", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlp-tracking-bench-") as tmp_name:
        tmp = Path(tmp_name)
        say(f"seeding {args.runs:,} runs on each side")
        seed_platform(tmp / "home", args.runs)
        exp = seed_mlflow(tmp / "mlflow.db", tmp / "mlflow-artifacts", args.runs)
        say("starting the platform and mlflow server")
        with (
            platform_up(tmp / "home") as (url, token),
            mlflow_server(tmp) as mlflow_url,
            dlp.connect(url, token) as p,
        ):
            rows = bench(p, mlflow_url, exp, args)
    write_results("tracking_bench", rows)


if __name__ == "__main__":
    main()
