"""Training throughput through the platform vs a plain PyTorch loop, and the fixed job overhead.

    python benchmarks/train_bench.py [--rows 200000] [--epochs 5] [--batch-size 256]

Pushes a synthetic tabular dataset version (``--rows`` rows, 32 float features, 10 classes),
then trains the built-in MLP on it through the platform with 1 and 2 workers: submit →
scheduler → the warm pool's workers, started before the jobs as ``dlp up`` starts them
(``--pool-size 0``: a Ray Job running TorchTrainer, the path of jobs the pool does not take), and runs a plain single-process PyTorch
loop over the same rows held in memory (same model, batch size, epochs, 1 torch thread like one
platform worker with 1 CPU), written as a user would: ``torch.optim.Adam`` with its defaults.
The platform's workers use fused Adam; a second baseline, the plain loop with fused Adam, shows
the platform's own overhead apart from that choice. Both baselines run before and after the
platform's jobs, and their figure is the median over both runs: on a shared 2-core VM the
machine's speed drifts by ±20% over a minute. Figures:

- steady-state samples/s: the median of the per-epoch throughput of epochs 1.. (epoch 0 includes
  Ray Data start-up); the platform figure is the one its workers report to the metadata store;
- fixed overhead: submit → start of the first epoch (queue, Ray Job driver, worker group,
  first dataset read), taken from the first epoch's metric timestamp minus its epoch time.

- start-up (issue #20): submit → first training step (the run's startup breakdown, recorded on
  the run) and submit → end of the first epoch, with 1 and 2 workers, against the floor of a
  plain process that starts, imports torch, reads the same data from Parquet and runs one step
  (``_first_step.py``, run before and after); and that same script as a bare Ray Job
  (``JobSubmissionClient.submit_job``, no Ray Train), submit → its first step.

Targets: 1-worker steady-state throughput ≥ 0.8x the plain loop; submit → first step at most 3x
the floor with 1 worker and 4x with 2 workers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

for _key, _value in {
    "RAY_AUTH_MODE": "disabled", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    "RAY_DATA_LOG_LEVEL": "WARNING", "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0", "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
}.items():  # fmt: skip
    os.environ.setdefault(_key, _value)

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402
from _results import row, write_results  # noqa: E402

FEATURES = 32
CLASSES = 10


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    w = rng.normal(size=(FEATURES, CLASSES)).astype(np.float32)
    y = (x @ w + rng.normal(scale=0.5, size=(rows, CLASSES))).argmax(axis=1)
    return pa.table({**{f"f{i}": x[:, i] for i in range(FEATURES)}, "label": y.astype(np.int64)})


def _first_step_at(output: str) -> float:
    for line in output.splitlines():
        if line.startswith("first_step_at="):
            return float(line.split("=", 1)[1])
    raise SystemExit(f"no first_step_at line in: {output[-2000:]}")


def plain_loop(
    table: pa.Table, epochs: int, batch_size: int, lr: float, hidden: int, fused: bool = False
) -> list[float]:
    """Samples/s per epoch of a single-process loop over in-memory tensors (1 torch thread)."""
    from dlplatform.models import builtin

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.as_tensor(np.stack([table.column(f"f{i}").to_numpy() for i in range(FEATURES)], 1))
    y = torch.as_tensor(np.array(table.column("label").to_numpy()))
    net = builtin.build_model({"model": "mlp", "input_shape": [FEATURES], "num_outputs": CLASSES,
                               "params": {"hidden": hidden}})  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=lr, fused=fused or None)
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(len(y))
        for start in range(0, len(y), batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x[idx]), y[idx])
            (loss / len(idx)).backward()
            opt.step()
        rates.append(len(y) / (time.perf_counter() - t0))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--num-cpus", type=int, default=4, help="logical CPUs of the local Ray")
    parser.add_argument("--workers", default="1,2", help="worker counts to run, comma-separated")
    parser.add_argument("--pool-size", type=int, default=2,
                        help="warm pool members (0: every job through Ray Jobs and Ray Train)")  # fmt: skip
    args = parser.parse_args()

    import ray

    from dlplatform import data, train
    from dlplatform.access import SYSTEM
    from dlplatform.config import load_settings
    from dlplatform.context import Backend
    from dlplatform.metadata.actor import stop_store
    from dlplatform.train.scheduler import connect_scheduler, job_client, stop_scheduler

    lr = 1e-3
    table = make_table(args.rows)
    print(f"{args.rows} rows, {args.epochs} epochs, batch {args.batch_size}", flush=True)
    baselines: dict[str, list[float]] = {"default Adam": [], "fused Adam": []}

    def run_baselines() -> None:
        for name, fused in (("default Adam", False), ("fused Adam", True)):
            rates = plain_loop(table, args.epochs, args.batch_size, lr, args.hidden, fused)
            baselines[name] += rates[1:] or rates
            print(f"  plain loop, {name}: samples/s per epoch {[round(r) for r in rates]}",
                  flush=True)  # fmt: skip

    run_baselines()
    home = Path(tempfile.mkdtemp(prefix="dlp-train-bench-"))
    parquet = home / "bench.parquet"
    pq.write_table(table, parquet)
    first_step_cmd = [sys.executable, str(Path(__file__).with_name("_first_step.py")), str(parquet),
                      "--batch-size", str(args.batch_size), "--hidden", str(args.hidden)]  # fmt: skip
    floors: list[float] = []

    def run_floor() -> None:
        for _ in range(2):
            t0 = time.time()
            out = subprocess.run(first_step_cmd, capture_output=True, text=True, check=True)
            floors.append(_first_step_at(out.stdout) - t0)
        print(f"  floor (plain process: start, import torch, read Parquet, one step): "
              f"{[round(f, 2) for f in floors[-2:]]} s", flush=True)  # fmt: skip

    run_floor()
    ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=True, log_to_driver=False,
             logging_level="WARNING", _temp_dir=str(home / "ray"))  # fmt: skip
    settings = load_settings(home=home / "home", namespace=f"bench-{uuid.uuid4().hex[:6]}",
                             train_pool_size=args.pool_size)  # fmt: skip
    backend = Backend.connect(settings)
    connect_scheduler(settings).warm_pool()  # as `dlp up` does
    data.create_dataset(backend, SYSTEM, "bench")
    commit = data.push(backend, SYSTEM, "bench", table)
    platform: dict[int, tuple[float, float, list[float]]] = {}
    starts: dict[int, tuple[float, float]] = {}
    bare: list[float] = []
    try:
        jobs = job_client()
        for _ in range(2):  # a bare Ray Job running the same plain first step (no Ray Train)
            sid = f"bench-bare-{uuid.uuid4().hex[:6]}"
            t_submit = time.time()
            jobs.submit_job(entrypoint=shlex.join(first_step_cmd), submission_id=sid)
            while str(jobs.get_job_status(sid)) not in {"SUCCEEDED", "FAILED", "STOPPED"}:
                time.sleep(0.1)
            bare.append(_first_step_at(jobs.get_job_logs(sid)) - t_submit)
        print(f"  bare Ray Job: submit -> first step {[round(b, 2) for b in bare]} s", flush=True)
        for workers in [int(w) for w in args.workers.split(",")]:
            spec = train.TrainingJobSpec(
                dataset=f"bench@{commit.id}", label="label", model="mlp", workers=workers,
                epochs=args.epochs, batch_size=args.batch_size, lr=lr, validation_fraction=0.0,
                params={"hidden": args.hidden}, model_name=f"bench-{workers}w",
            )  # fmt: skip
            t_submit = time.time()
            job = train.submit(backend, SYSTEM, spec)
            done = train.wait_job(backend, SYSTEM, job.id, timeout_s=1800, poll_s=0.5)
            if done.status != "SUCCEEDED":
                raise SystemExit(f"{workers}-worker run failed: {done.run.error}")
            points = train.get_metrics(backend, SYSTEM, job.id)
            rows = train.epoch_table(points)
            rates = [r["throughput_samples_per_s"] for r in rows]
            first = min(p.timestamp for p in points if p.step == 0 and p.key == "epoch_time_s")
            overhead = first - rows[0]["epoch_time_s"] - t_submit
            wall = (done.run.ended_at.timestamp() if done.run.ended_at else time.time()) - t_submit
            platform[workers] = (statistics.median(rates[1:] or rates), overhead, rates)
            created = done.run.created_at.timestamp()
            epoch_end = min(p.timestamp for p in points if p.step == 0 and p.key == "epoch_time_s")
            starts[workers] = (done.startup.get("total", float("nan")), epoch_end - created)
            print(f"  startup ({done.run.name}): {done.startup}", flush=True)
            waits = [round(r.get("data_wait_s", float("nan")), 3) for r in rows]
            print(f"{workers} worker(s): samples/s per epoch {[round(r) for r in rates]}, "
                  f"waiting for data {waits} s, "
                  f"overhead {overhead:.1f} s, submit→done {wall:.1f} s", flush=True)  # fmt: skip
    finally:
        stop_scheduler(settings)
        stop_store(settings)
        ray.shutdown()
    run_baselines()
    run_floor()
    floor = statistics.median(floors)
    plain_steady = statistics.median(baselines["default Adam"])
    fused_steady = statistics.median(baselines["fused Adam"])

    results = []
    for workers, (steady, overhead, _rates) in sorted(platform.items()):
        target = ">= 0.8x baseline" if workers == 1 else "reported"
        results += [
            row(f"MLP steady-state samples/s, {workers} worker(s) via platform", steady,
                "samples/s", "plain PyTorch loop, 1 process, 1 thread, default Adam", plain_steady,
                target, steady >= 0.8 * plain_steady if workers == 1 else None),
            row(f"MLP steady-state samples/s, {workers} worker(s) via platform", steady,
                "samples/s", "plain PyTorch loop, 1 process, 1 thread, fused Adam", fused_steady,
                "reported", None),
            row(f"fixed job overhead (submit -> first epoch start), {workers} worker(s)", overhead,
                "s", "none", 0.0, "reported", None, ratio=float("nan")),
        ]  # fmt: skip
    floor_name = "plain process: start, import torch, read Parquet, one step"
    results.append(row("bare Ray Job (no Ray Train): submit -> first step",
                       statistics.median(bare), "s", floor_name, floor, "reported", None))  # fmt: skip
    for workers, (first_step, epoch_end) in sorted(starts.items()):
        limit = 3.0 if workers == 1 else 4.0
        results += [
            row(f"submit -> first training step, {workers} worker(s)", first_step, "s",
                floor_name, floor, f"<= {limit:g}x baseline", first_step <= limit * floor),
            row(f"submit -> first epoch end, {workers} worker(s)", epoch_end, "s", floor_name,
                floor, "reported", None),
        ]  # fmt: skip
    print(f"\n{args.rows} rows x {FEATURES} features, {args.epochs} epochs, batch "
          f"{args.batch_size}, MLP hidden {args.hidden}\n")  # fmt: skip
    write_results("train_bench", results)


if __name__ == "__main__":
    main()
