"""Soak: minutes of steady mixed load on one platform; throughput over time, errors, memory.

Run: ``python benchmarks/soak.py [--minutes 10]`` (the minutes, plus about 4-6 minutes of
``dlp up``, set-up and drain on 2 cores; not a CI test and not in ``run_all.py``). Starts a
platform with ``dlp up --home <tmp> --port <free>`` (or uses the one running under ``--home``,
and leaves it running), then sets up over HTTP, as a user would: a dataset, a first training job
and a deployment of its model, and a commit trigger that runs a small workflow
(``_soak_flow.py``: read the commit, check it) on every new commit of the dataset.

Then, for ``--minutes``, one thread per kind of work calls the SDK (``dlp.connect``, HTTP only)
at a steady rate:

- predictions: ``--predict-rps`` one-row requests a second to the deployment;
- pushes: a ``--push-rows``-row commit every ``--push-every-s`` (each fires the workflow);
- metric logging: ``--metric-points`` points in one call every ``--metrics-every-s``;
- training: a one-epoch job on the dataset's head every ``--train-every-s``;

and a follower polls the training jobs and workflow runs it started. When the time is up the
load stops and the bench waits (up to ``--drain-s``) for the jobs and workflow runs to end.

Reported: per minute, what each kind of work completed (and the predictions' latency); every
error with the first messages (a call that raised, a job or workflow run that failed, a tick the
thread could not keep); the RSS of every process of the platform's Ray session (named by its
command line: raylet, gcs_server, the metadata actor, the scheduler, the workflow manager, Serve's
controller, proxy and replicas, HAProxy, ...) at the start of the load, at its end, and after the
drain; and the size of the metadata database. Prints the tables and writes
``results/soak.json``; stops the platform it started with ``dlp down`` (also on an error or
Ctrl-C: a first Ctrl-C ends the load early and still reports).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
from _platform import platform, with_checkout_on_pythonpath  # noqa: E402
from _results import row, write_results  # noqa: E402
from client_bench import say  # noqa: E402

import dlplatform as dlp  # noqa: E402
from dlplatform.client import Platform  # noqa: E402
from dlplatform.errors import AlreadyExists  # noqa: E402

WORKFLOW = "soak-commit"
WORKFLOW_TARGET = "_soak_flow:on_commit"
FEATURES = 4
PREDICT_LANES = 4  # threads taking turns at the predictions' schedule
MIN_RATE = 0.95  # each kind of work keeps at least this share of its steady rate


# --- the platform's processes -----------------------------------------------------------------

_NAMES = (  # (part of the command line, name), first match wins
    ("ray start", "ray start --head (session leader)"),
    ("gcs_server", "gcs_server"),
    ("raylet/raylet", "raylet"),
    ("ray::_MetadataActor", "metadata actor"),
    ("ray::_Scheduler", "training scheduler"),
    ("ray::WorkflowManager", "workflow manager"),
    ("ray::ServeController", "Serve controller"),
    ("ray::HAProxyManager", "Serve HAProxy manager"),
    ("ray::ProxyActor", "Serve proxy actor"),
    ("ray::ServeReplica:dlp-gateway", "gateway replica"),
    ("ray::ServeReplica:", "model replica"),
    ("haproxy", "HAProxy"),
    ("dashboard/dashboard.py", "dashboard"),
    ("ray-dashboard-", "dashboard module"),
    ("ray::DashboardAgent", "dashboard agent"),
    ("ray::RuntimeEnvAgent", "runtime env agent"),
    ("autoscaler/_private/monitor.py", "autoscaler monitor"),
    ("log_monitor.py", "log monitor"),
    ("ray.util.client.server", "Ray client server"),
    ("multiprocessing.forkserver", "dashboard forkserver"),
    ("multiprocessing.resource_tracker", "multiprocessing resource tracker"),
    ("ray::JobSupervisor", "job supervisor"),
    ("ray::TrainController", "Train controller"),
    ("ray::RayTrainWorker", "Train worker"),
    ("ray::IDLE", "idle Ray worker"),
)


_PLATFORM = ("raylet", "gcs_server", "metadata actor", "training scheduler", "workflow manager",
             "Serve", "gateway replica", "model replica", "HAProxy")  # fmt: skip
"""The processes that get a row of their own in the JSON result (all are in its tables)."""


@dataclass(frozen=True)
class Proc:
    pid: int
    name: str
    command: str
    rss_mb: float


def _session_members(session_id: int) -> Iterator[int]:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] not in ("Z", "X") and int(fields[3]) == session_id:
            yield int(entry.name)


def _name(command: str) -> str:
    for part, name in _NAMES:
        if part in command:
            if "ray-dashboard-" in part:  # ray-dashboard-JobHead-0 (...)
                return f"{name} {command.split()[0].removeprefix('ray-dashboard-')}"
            if name == "model replica":  # ray::ServeReplica:<app>:<deployment>
                return f"{name} {command.split()[0].split('ServeReplica:', 1)[1]}"
            return name
    first = command.split()[0] if command else "?"
    return first if first.startswith("ray::") else Path(first).name


def platform_processes(home: Path) -> list[Proc]:
    """Every live process of the platform's Ray session (``cluster.json``'s ``session_id``)."""
    session_id = int(json.loads((home / "cluster.json").read_text())["session_id"])
    procs = []
    for pid in _session_members(session_id):
        try:
            command = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")).decode()
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # it ended meanwhile
        rss_kb = next((int(line.split()[1]) for line in status.splitlines()
                       if line.startswith("VmRSS:")), 0)  # fmt: skip
        procs.append(Proc(pid, _name(command.strip()), command.strip()[:200], rss_kb / 1024))
    return sorted(procs, key=lambda p: -p.rss_mb)


def memory_table(snapshots: dict[str, list[Proc]]) -> list[dict[str, Any]]:
    """One row per process seen in any snapshot (by pid): its name and RSS in each (None:
    not running then)."""
    by_pid: dict[int, dict[str, Any]] = {}
    for when, procs in snapshots.items():
        for p in procs:
            entry = by_pid.setdefault(p.pid, {"pid": p.pid, "name": p.name, "command": p.command})
            entry[when] = round(p.rss_mb, 1)
    rows = list(by_pid.values())
    for r in rows:
        for when in snapshots:
            r.setdefault(when, None)
    first = next(iter(snapshots))
    return sorted(rows, key=lambda r: (r[first] is None, r["name"], r["pid"]))


# --- load -------------------------------------------------------------------------------------


@dataclass
class Event:
    t: float  # seconds since the load started
    latency_s: float
    amount: int  # what it completed (predictions, metric points, commits, ...)
    error: str | None = None


@dataclass
class Op:
    """One kind of work on a fixed schedule, a call every ``period_s``: ``lanes`` threads take
    turns (lane i makes calls i, i + lanes, ...), so one slow call does not hold the others up."""

    name: str
    period_s: float
    fn: Callable[[], int]
    lanes: int = 1
    per_call: int = 1  # what one call completes when it succeeds (metric points: a batch)
    events: list[Event] = field(default_factory=list)
    missed: int = 0  # calls skipped because their lane's previous call ran past them
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self, elapsed_s: float) -> int:
        """How many calls the schedule holds in the first ``elapsed_s`` seconds."""
        return int(elapsed_s // self.period_s) + 1

    def run(self, t0: float, stop: threading.Event, lane: int) -> None:
        tick, stride = lane, self.lanes
        while not stop.is_set():
            due = t0 + tick * self.period_s
            now = time.monotonic()
            if now < due:
                if stop.wait(due - now):
                    return
            elif now - due > stride * self.period_s:  # behind by whole turns: skip them
                skipped = int((now - due) // (stride * self.period_s))
                with self._lock:
                    self.missed += skipped
                tick += skipped * stride
            started = time.monotonic()
            try:
                amount, error = self.fn(), None
            except Exception as exc:  # an error is a finding: keep its message
                amount, error = 0, f"{type(exc).__name__}: {exc}"[:300]
            ended = time.monotonic()
            with self._lock:
                self.events.append(Event(ended - t0, ended - started, amount, error))
            tick += stride


@dataclass
class Tracked:
    """Training jobs and workflow runs the load started, followed until they end."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pending(self) -> int:
        with self.lock:
            return sum(1 for r in [*self.jobs.values(), *self.runs.values()] if r["end"] is None)


def follow(p: Platform, dataset: str, tracked: Tracked, t0: float, stop: threading.Event) -> None:
    """Every few seconds: the status of each job, and of each run of the soak's workflow on
    ``dataset``'s commits."""
    while not stop.wait(3.0):
        now = time.monotonic() - t0
        with contextlib.suppress(Exception):  # a failed poll is retried at the next one
            for run in p.workflows.list(limit=200):
                if json.loads(run.params_json).get("dataset") != dataset:
                    continue
                with tracked.lock:
                    entry = tracked.runs.setdefault(run.id, {"seen": now, "end": None})
                    if run.status.is_final and entry["end"] is None:
                        entry.update(end=now, status=run.status.value, error=run.error)
        with tracked.lock:
            open_jobs = [j for j, e in tracked.jobs.items() if e["end"] is None]
        for job_id in open_jobs:
            with contextlib.suppress(Exception):
                job = p.training.get(job_id).status()
                if job.run.status.is_final:
                    with tracked.lock:
                        tracked.jobs[job_id].update(
                            end=time.monotonic() - t0, status=job.run.status.value,
                            error=job.run.error,
                        )  # fmt: skip


def _table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {f"f{i}": rng.normal(size=rows) for i in range(FEATURES)}
    cols["y"] = (cols["f0"] + cols["f1"] > 0).astype(np.int64)
    return pa.table(cols)


def make_ops(
    p: Platform, setup: dict[str, str], tracked: Tracked, t0_box: list[float], args: Any
) -> list[Op]:
    ds = p.datasets.get(setup["dataset"])
    seeds = iter(range(1, 10**9))
    steps = iter(range(0, 10**12, args.metric_points))
    rng = np.random.default_rng(7)

    def predict() -> int:
        result = p.serving.predict(setup["deployment"], [rng.normal(size=FEATURES).tolist()])
        return len(result.outputs)

    def push() -> int:
        ds.push(_table(args.push_rows, next(seeds)), message="soak")
        return 1

    def log_metrics() -> int:
        start = next(steps)
        points = [("soak_loss", float(s % 97), s) for s in range(start, start + args.metric_points)]
        return p.training.log_metrics(setup["metrics_run"], points)

    def train() -> int:
        job = p.training.submit(dataset=setup["dataset"], model="mlp", label="y", workers=1,
                                epochs=1)  # fmt: skip
        with tracked.lock:
            tracked.jobs[job.id] = {"seen": time.monotonic() - t0_box[0], "end": None}
        return 1

    return [
        Op("predictions", 1.0 / args.predict_rps, predict, lanes=PREDICT_LANES),
        Op("pushes", args.push_every_s, push),
        Op("metric points", args.metrics_every_s, log_metrics, per_call=args.metric_points),
        Op("training submits", args.train_every_s, train),
    ]


def earlier_setup(p: Platform) -> dict[str, str] | None:
    """The set-up of an earlier soak on this platform (``--home``), when its model still runs."""
    triggered = {t.dataset for t in p.workflows.triggers() if t.workflow == WORKFLOW}
    for d in p.serving.list():
        dataset = d.model.removesuffix("-mlp")
        if d.status == "RUNNING" and dataset.startswith("soak-") and dataset in triggered:
            return {"dataset": dataset, "deployment": d.name}
    return None


def setup_platform(p: Platform, args: Any) -> dict[str, str]:
    """A dataset, a trained model deployed, the soak workflow registered with a commit trigger
    (or those of an earlier soak on the same platform)."""
    if (earlier := earlier_setup(p)) is not None:
        say(f"  reusing {earlier}")
        return earlier
    name = f"soak-{uuid.uuid4().hex[:6]}"
    ds = p.datasets.create(name)
    ds.push(_table(args.push_rows, 0), message="soak: first commit")
    t0 = time.monotonic()
    job = p.training.submit(dataset=name, model="mlp", label="y", workers=1, epochs=1)
    run = job.wait(timeout_s=900)
    if run.status.value != "SUCCEEDED":
        raise SystemExit(f"the set-up training job failed: {run.error}")
    version = job.model_version
    say(f"  trained {version} in {time.monotonic() - t0:.0f} s; deploying it ...")
    t0 = time.monotonic()
    info = p.serving.deploy(version)
    say(f"  deployment {info.name} ready in {time.monotonic() - t0:.0f} s")
    with contextlib.suppress(AlreadyExists):  # a platform reused with --home has it
        p.workflows.register(WORKFLOW, WORKFLOW_TARGET, "soak.py: on each commit")
    p.workflows.on_commit(name, WORKFLOW)
    return {"dataset": name, "deployment": info.name}


# --- report -----------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def per_minute(ops: list[Op], tracked: Tracked, minutes: int) -> list[dict[str, Any]]:
    out = []
    for m in range(minutes):
        lo, hi = 60.0 * m, 60.0 * (m + 1)
        entry: dict[str, Any] = {"minute": m + 1}
        for op in ops:
            inside = [e for e in op.events if lo <= e.t < hi]
            entry[op.name] = sum(e.amount for e in inside if e.error is None)
            entry[f"{op.name} errors"] = sum(1 for e in inside if e.error is not None)
            if op.name == "predictions":
                ok = [e.latency_s * 1000 for e in inside if e.error is None]
                entry["predict p50 ms"] = round(_pct(ok, 0.5), 2)
                entry["predict p99 ms"] = round(_pct(ok, 0.99), 2)
        for what, items in (("jobs ended", tracked.jobs), ("workflow runs ended", tracked.runs)):
            ended = [r for r in items.values() if r["end"] is not None and lo <= r["end"] < hi]
            entry[what] = len(ended)
            entry[f"{what} failed"] = sum(1 for r in ended if r.get("status") != "SUCCEEDED")
        out.append(entry)
    return out


def _markdown(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def report(
    ops: list[Op],
    tracked: Tracked,
    snapshots: dict[str, list[Proc]],
    db_mb: dict[str, float],
    elapsed_s: float,
    args: Any,
) -> None:
    minutes = max(1, round(elapsed_s / 60))
    table = per_minute(ops, tracked, minutes)
    cols = ["predictions", "predict p50 ms", "predict p99 ms", "pushes", "metric points",
            "training submits", "jobs ended", "workflow runs ended"]  # fmt: skip
    print("\nThroughput per minute (completed; failed in brackets):\n")
    body = []
    for entry in table:
        cells: list[Any] = [entry["minute"]]
        for c in cols:
            bad = entry.get(f"{c} errors", entry.get(f"{c} failed", 0))
            cells.append(f"{entry[c]:,}" + (f" ({bad})" if bad else ""))
        body.append(cells)
    print(_markdown(["minute", *cols], body))

    errors: dict[str, dict[str, Any]] = {}
    for op in ops:
        bad = [e for e in op.events if e.error is not None]
        errors[op.name] = {
            "count": len(bad),
            "missed ticks": op.missed,
            "first": [f"{e.t:.0f} s: {e.error}" for e in bad[:3]],
        }
    for what, items in (("training jobs", tracked.jobs), ("workflow runs", tracked.runs)):
        bad_items = [(k, r) for k, r in items.items() if r["end"] and r["status"] != "SUCCEEDED"]
        errors[what] = {
            "count": len(bad_items),
            "unfinished": sum(1 for r in items.values() if r["end"] is None),
            "first": [f"{k} {r['status']}: {r.get('error')}"[:300] for k, r in bad_items[:3]],
        }
    print("\nErrors:\n")
    print(_markdown(["work", "errors", "missed ticks / unfinished", "first messages"], [
        [k, v["count"], v.get("missed ticks", v.get("unfinished")),
         "<br>".join(v["first"]) or "-"] for k, v in errors.items()
    ]))  # fmt: skip

    mem = memory_table(snapshots)
    whens = list(snapshots)
    print("\nRSS of each platform process (MB; - : not running then):\n")
    mem_rows = []
    for r in mem:
        cells = [r["name"], r["pid"], *("-" if r[w] is None else f"{r[w]:,.0f}" for w in whens)]
        first, last = r[whens[0]], r[whens[-1]]
        cells.append("-" if first is None or last is None else f"{last - first:+,.0f}")
        mem_rows.append(cells)
    totals = [sum(p.rss_mb for p in snapshots[w]) for w in whens]
    mem_rows.append(["**all**", len(mem), *(f"{t:,.0f}" for t in totals),
                     f"{totals[-1] - totals[0]:+,.0f}"])  # fmt: skip
    print(_markdown(["process", "pid", *whens, "change"], mem_rows))
    print(f"\nmetadata.duckdb: {db_mb['start']:.1f} MB at the start, {db_mb['end']:.1f} MB "
          f"at the end")  # fmt: skip

    load_s = min(elapsed_s, args.minutes * 60)
    by_name = {op.name: op for op in ops}
    rows = []
    for op in ops:
        done = sum(e.amount for e in op.events if e.error is None)
        rate = done / load_s
        steady = op.due(load_s) * op.per_call / load_s
        rows.append(
            row(f"{op.name} per second over {load_s / 60:.1f} min", rate, "/s",
                "the steady rate asked for", steady, f">= {MIN_RATE}x", rate >= MIN_RATE * steady)
        )  # fmt: skip
    predictions = [e for e in by_name["predictions"].events if e.error is None]
    predict_ms = [e.latency_s * 1000 for e in predictions]
    first_minute = [e.latency_s * 1000 for e in predictions if e.t < 60]
    last_minute = [e.latency_s * 1000 for e in predictions if e.t >= load_s - 60]
    rows.append(row("prediction p99 latency, whole soak", _pct(predict_ms, 0.99), "ms",
                    "p50", _pct(predict_ms, 0.5), "reported", None))  # fmt: skip
    rows.append(row("prediction p50 latency, last minute", _pct(last_minute, 0.5), "ms",
                    "first minute", _pct(first_minute, 0.5), "reported", None))  # fmt: skip
    pushes = sum(e.amount for e in by_name["pushes"].events if e.error is None)
    runs_ok = sum(1 for r in tracked.runs.values() if r.get("status") == "SUCCEEDED")
    rows.append(row("workflow runs succeeded (one per commit pushed)", runs_ok, "runs",
                    "commits pushed", pushes, "= commits", runs_ok == pushes))  # fmt: skip
    jobs_ok = sum(1 for r in tracked.jobs.values() if r.get("status") == "SUCCEEDED")
    rows.append(row("training jobs succeeded", jobs_ok, "jobs", "jobs submitted",
                    len(tracked.jobs), "= submitted", jobs_ok == len(tracked.jobs)))  # fmt: skip
    total_errors = sum(v["count"] for v in errors.values())
    rows.append(row("errors (calls, failed jobs and workflow runs)", total_errors, "errors",
                    "zero", 0.0, "0", total_errors == 0, ratio=0.0))  # fmt: skip
    rows.append(row(f"RSS of all platform processes at the end ({whens[-1]})", totals[-1], "MB",
                    f"at the start ({len(snapshots[whens[0]])} processes)", totals[0],
                    "reported", None))  # fmt: skip
    for r in mem:
        first, last = r[whens[0]], r[whens[-1]]
        if first is not None and last is not None and r["name"].startswith(_PLATFORM):
            rows.append(row(f"RSS of the {r['name']} (pid {r['pid']}) at the end", last, "MB",
                            "at the start", first, "reported", None))  # fmt: skip
    rows.append(row("metadata.duckdb size at the end", db_mb["end"], "MB", "at the start",
                    db_mb["start"], "reported", None))  # fmt: skip
    print()
    path = write_results("soak", rows)
    document = json.loads(path.read_text())
    document.update(
        settings=vars(args) | {"home": str(args.home) if args.home else None},
        elapsed_s=round(elapsed_s, 1), per_minute=table, errors=errors, memory_mb=mem,
    )  # fmt: skip
    path.write_text(json.dumps(document, indent=2, default=str))


# --- main -------------------------------------------------------------------------------------


def _db_mb(home: Path) -> float:
    return sum(f.stat().st_size for f in home.glob("metadata.duckdb*")) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--predict-rps", type=float, default=10.0)
    parser.add_argument("--push-every-s", type=float, default=20.0)
    parser.add_argument("--push-rows", type=int, default=1000)
    parser.add_argument("--metrics-every-s", type=float, default=1.0)
    parser.add_argument("--metric-points", type=int, default=100)
    parser.add_argument("--train-every-s", type=float, default=150.0)
    parser.add_argument("--drain-s", type=float, default=300.0,
                        help="longest wait for jobs and workflow runs after the load")  # fmt: skip
    parser.add_argument("--home", type=Path, help="use the platform running there (kept)")
    args = parser.parse_args()
    # The manager imports the soak's workflow from this folder (and dlplatform from this checkout).
    with_checkout_on_pythonpath(HERE)
    started = time.monotonic()
    with platform(args.home, "dlp-soak-") as (url, token, home), dlp.connect(url, token) as p:
        say(f"platform at {url} after {time.monotonic() - started:.0f} s; setting up ...")
        setup = setup_platform(p, args)
        metrics_run = p.runs.start(name="soak-metrics")  # open: an ended run takes no points
        setup["metrics_run"] = metrics_run.id
        tracked = Tracked()
        t0_box = [0.0]
        ops = make_ops(p, setup, tracked, t0_box, args)
        snapshots = {"start": platform_processes(home)}
        db_mb = {"start": _db_mb(home)}
        stop, follow_stop = threading.Event(), threading.Event()
        t0 = t0_box[0] = time.monotonic()
        threads = [
            threading.Thread(target=op.run, args=(t0, stop, lane), daemon=True)
            for op in ops
            for lane in range(op.lanes)
        ]
        follower = threading.Thread(
            target=follow, args=(p, setup["dataset"], tracked, t0, follow_stop), daemon=True
        )
        for t in [*threads, follower]:
            t.start()
        say(f"load for {args.minutes:g} min ...")
        try:
            while (elapsed := time.monotonic() - t0) < args.minutes * 60:
                time.sleep(min(60.0 - elapsed % 60, args.minutes * 60 - elapsed) + 0.01)
                done = {op.name: sum(e.amount for e in op.events if e.error is None) for op in ops}
                bad = sum(1 for op in ops for e in op.events if e.error is not None)
                say(f"  {time.monotonic() - t0:5.0f} s: {done}, {bad} errors, "
                    f"{tracked.pending()} jobs/runs open")  # fmt: skip
        except KeyboardInterrupt:
            say("interrupted: stopping the load, reporting what ran")
        stop.set()
        elapsed = time.monotonic() - t0
        for t in threads:
            t.join(timeout=120)
        metrics_run.end()
        snapshots["end of load"] = platform_processes(home)
        say(f"draining: waiting up to {args.drain_s:g} s for {tracked.pending()} jobs/runs")
        deadline = time.monotonic() + args.drain_s
        commits = sum(e.amount for op in ops if op.name == "pushes" for e in op.events)
        with contextlib.suppress(KeyboardInterrupt):  # every job ended, a run seen per commit
            while (tracked.pending() or len(tracked.runs) < commits) and (
                time.monotonic() < deadline
            ):
                time.sleep(2.0)
            time.sleep(4.0)  # one more poll of the follower
        follow_stop.set()
        snapshots["after drain"] = platform_processes(home)
        db_mb["end"] = _db_mb(home)
    report(ops, tracked, snapshots, db_mb, elapsed, args)


if __name__ == "__main__":
    main()
