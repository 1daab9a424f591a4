"""Failover of the platform's actors: from an actor's death to the first successful API call.

Run: ``python benchmarks/failover_bench.py [--repeats 3] [--interval-ms 20] [--home DIR]``
(about 6-8 minutes on 2 cores, most of it ``dlp up`` and one small training job; not in
``run_all.py``'s default set: ``run_all.py --only failover`` runs it). Starts a platform with
``dlp up --home <tmp> --port <free>`` (or uses the one running under ``--home``, and leaves it
running), creates a small dataset and trains one small job on it, then for each of the
platform's three actors, ``--repeats`` times: clients call API routes that reach that actor
every ``--interval-ms`` (one thread a route, no client-side retry: what the gateway itself does
is measured), the actor's process is killed with SIGKILL, and the bench records

- the actor's own restart: from the kill until its new process answers a call (a Ray driver
  attached to the platform asks it for its pid every ``--interval-ms``);
- per route, the gap: from the kill until a call sent after it succeeds; how many calls failed;
  and the longest call (the delay a caller saw instead of an error).

Routes (each reaches the actor; reads must not fail, the gateway retries them across a
failover, ``_actors.call_actor``):

- metadata actor: ``GET /datasets/{name}`` (read); a push with a new ``Idempotency-Key`` (a
  write that is safe to retry); ``POST /runs/{id}/metrics`` (an append: not retried);
- training scheduler: ``GET /training/jobs/{id}/logs`` (read: the scheduler reads the log); it
  has no write that is cheap to repeat (a submit queues a job, cancelling a finished job is
  answered before the scheduler);
- workflow manager: ``POST /workflows/triggers`` with params the workflow does not accept (the
  manager's ``check``, a read: answered 422 by the manager, nothing is stored);
  ``POST /workflows/runs`` with the same params (the manager's ``start``, a write that is not
  retried: answered 422 by the manager, nothing is stored).

Medians over the repeats. Prints a Markdown table and writes ``results/failover_bench.json``
(with every trial's figures and the first error messages).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import pyarrow as pa  # noqa: E402
from _platform import platform, with_checkout_on_pythonpath  # noqa: E402
from _results import row, write_results  # noqa: E402
from client_bench import say  # noqa: E402

import dlplatform as dlp  # noqa: E402
from dlplatform.client import Platform  # noqa: E402
from dlplatform.errors import DLPlatformError, InvalidInput  # noqa: E402

MAX_OVER_RESTART_S = 3.0  # target: a read's gap at most this far above the actor's restart
WAIT_S = 120.0  # longest wait for every route to answer again after a kill
PREFIX = "failover-bench-"
BAD_PARAMS = {"no_such_param": 1}  # quality_check accepts n, seed, min_mean only


@dataclass
class Call:
    started: float
    ended: float
    error: str | None


@dataclass
class Probe:
    """One route, called in a loop by its own thread (sequentially, ``interval_s`` apart)."""

    name: str
    kind: str  # "read" or "write"
    fn: Callable[[], None]
    calls: list[Call] = field(default_factory=list)

    def loop(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.fn()
                error = None
            except Exception as exc:  # every failure is a finding: keep its message
                error = f"{type(exc).__name__}: {exc}"[:300]
            t1 = time.monotonic()
            self.calls.append(Call(t0, t1, error))
            stop.wait(max(0.0, interval_s - (t1 - t0)))

    def first_success_after(self, t: float) -> Call | None:
        return next((c for c in self.calls if c.started >= t and c.error is None), None)


def _manager_answer(call: Callable[[], Any]) -> None:
    """Succeeds when the workflow manager itself refused the bad params (it built the DAG)."""
    try:
        call()
    except InvalidInput as exc:
        if "does not accept params" in str(exc):
            return
        raise
    raise AssertionError("the manager accepted params it should refuse")


def make_probes(p: Platform, setup: dict[str, str]) -> dict[str, list[Probe]]:
    ds = p.datasets.get(setup["dataset"])
    job = p.training.get(setup["job"])
    one_row = pa.table({"f0": [0.5], "f1": [0.5], "y": [1]})
    step = iter(range(10**9))
    return {
        "metadata": [
            Probe("GET /datasets/{name}", "read", lambda: p.datasets.get(setup["dataset"])),
            Probe(
                "push with an Idempotency-Key",
                "write",
                lambda: ds.push(one_row, idempotency_key=uuid.uuid4().hex),
            ),
            Probe(
                "POST /runs/{id}/metrics (append)",
                "write",
                lambda: p.training.log_metrics(setup["run"], [("probe", 1.0, next(step))]),
            ),
        ],
        "scheduler": [Probe("GET /training/jobs/{id}/logs", "read", job.read_logs)],
        "manager": [
            Probe(
                "POST /workflows/triggers (manager check)",
                "read",
                lambda: _manager_answer(
                    lambda: p.workflows.schedule("quality_check", "0 0 1 1 *", BAD_PARAMS)
                ),
            ),
            Probe(
                "POST /workflows/runs (manager start)",
                "write",
                lambda: _manager_answer(lambda: p.workflows.run("quality_check", BAD_PARAMS)),
            ),
        ],
    }


# --- the actors -------------------------------------------------------------------------------


ACTORS = {  # key -> (label, Ray actor name)
    "metadata": ("metadata actor", "dlp-metadata"),
    "scheduler": ("training scheduler", "dlp-train-scheduler"),
    "manager": ("workflow manager", "dlp-workflows"),
}


def attach_ray(home: Path) -> str:
    """Join the platform's Ray cluster as a driver (with its token); returns the namespace."""
    from dlplatform import runtime
    from dlplatform.config import load_settings

    settings = load_settings(home=str(home))
    runtime.attach(settings, start=False)
    return settings.namespace


def _ask_pid(handle: Any, **options: Any) -> Any:
    return handle.__ray_call__.options(**options).remote(lambda _self: os.getpid())


def actor_pid(name: str, namespace: str, timeout_s: float) -> int:
    """The pid of the named actor's process, asked of the actor itself."""
    import ray

    handle = ray.get_actor(name, namespace=namespace)
    return int(ray.get(_ask_pid(handle, max_task_retries=-1), timeout=timeout_s))


def wait_restart(name: str, namespace: str, old_pid: int, interval_s: float) -> float:
    """Monotonic time at which the actor first answered from a process other than ``old_pid``.

    Asks in two ways at once, as neither alone sees the restart at once: one call that Ray holds
    while the actor restarts and sends when it is back (``max_task_retries``; it has been seen
    to come ~1 s late), and a plain call every ``interval_s`` (one sent while the actor restarts
    fails at Ray's next change of the actor's state, ~2 s later)."""
    import ray

    handle = ray.get_actor(name, namespace=namespace)
    held = _ask_pid(handle, max_task_retries=-1)
    pending = [held]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        pending.append(_ask_pid(handle))
        ready, pending = ray.wait(pending, num_returns=1, timeout=interval_s)
        for ref in ready:
            try:
                if ray.get(ref) != old_pid:
                    return time.monotonic()
            except ray.exceptions.RayError:
                pass  # unavailable while it restarts
            if ref is held:  # it reached the dying process: ask again
                held = _ask_pid(handle, max_task_retries=-1)
                pending.append(held)
    raise TimeoutError(f"{name} did not come back within {WAIT_S:g} s")


def trial(
    key: str, probes: list[Probe], namespace: str, interval_s: float, warm_s: float
) -> dict[str, Any]:
    """Kill the actor once while the probes run; the figures of this kill."""
    name = ACTORS[key][1]
    for probe in probes:
        probe.calls.clear()
    old_pid = actor_pid(name, namespace, timeout_s=30)
    stop = threading.Event()
    threads = [
        threading.Thread(target=pr.loop, args=(stop, interval_s), daemon=True) for pr in probes
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(warm_s)
        killed = time.monotonic()
        os.kill(old_pid, signal.SIGKILL)
        restarted = wait_restart(name, namespace, old_pid, interval_s)
        deadline = killed + WAIT_S
        while time.monotonic() < deadline and not all(
            pr.first_success_after(killed) for pr in probes
        ):
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=WAIT_S)
    out: dict[str, Any] = {"pid": old_pid, "restart_s": restarted - killed, "routes": {}}
    for pr in probes:
        first = pr.first_success_after(killed)
        after = [c for c in pr.calls if c.ended >= killed]
        failed = [c for c in pr.calls if c.error is not None]
        out["routes"][pr.name] = {
            "kind": pr.kind,
            "gap_s": None if first is None else first.ended - killed,
            "failed": len(failed),
            "calls": len(pr.calls),
            "longest_call_s": max((c.ended - c.started for c in after), default=0.0),
            "errors": [f"+{c.ended - killed:.2f} s: {c.error}" for c in failed[:3]],
        }
    return out


def run_actor(
    key: str, probes: list[Probe], namespace: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    label = ACTORS[key][0]
    trials = []
    for i in range(args.repeats):
        result = trial(key, probes, namespace, args.interval_ms / 1000, args.warm_s)
        trials.append(result)
        say(f"  {label} #{i + 1}: restart {result['restart_s']:.2f} s")
        for route, r in result["routes"].items():
            gap = "never" if r["gap_s"] is None else f"{r['gap_s']:.2f} s"
            say(f"    {route}: gap {gap}, {r['failed']} of {r['calls']} calls failed, longest "
                f"{r['longest_call_s']:.2f} s {r['errors'][:1]}")  # fmt: skip
        time.sleep(args.settle_s)
    return trials


# --- report -----------------------------------------------------------------------------------


def _median(values: list[float | None]) -> float:
    """Median of the trials; a route that never answered again counts as WAIT_S."""
    return statistics.median(WAIT_S if v is None else v for v in values)


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    rows = []
    n = args.repeats
    for key, trials in results.items():
        label = ACTORS[key][0]
        restart = statistics.median(t["restart_s"] for t in trials)
        rows.append(
            row(f"{label}: SIGKILL -> its new process answers, median of {n}", restart, "s",
                "-", 0.0, "reported", None, ratio=1.0)
        )  # fmt: skip
        for route, first in trials[0]["routes"].items():
            gap = _median([t["routes"][route]["gap_s"] for t in trials])
            failed = sum(t["routes"][route]["failed"] for t in trials)
            longest = max(t["routes"][route]["longest_call_s"] for t in trials)
            is_read = first["kind"] == "read"
            target = f"<= restart + {MAX_OVER_RESTART_S:g} s" if is_read else "reported"
            rows.append(
                row(f"{label}: SIGKILL -> first successful {first['kind']} `{route}`, median "
                    f"of {n}", gap, "s", f"the {label}'s own restart", restart, target,
                    gap <= restart + MAX_OVER_RESTART_S if is_read else None)
            )  # fmt: skip
            rows.append(
                row(f"{label}: `{route}` calls failed over {n} kills (longest call "
                    f"{longest:.1f} s)", failed, "calls", "zero", 0.0,
                    "0" if is_read else "reported", failed == 0 if is_read else None,
                    ratio=0.0)
            )  # fmt: skip
    path = write_results("failover_bench", rows)
    document = json.loads(path.read_text())
    document["trials"] = results
    document["settings"] = {"repeats": n, "interval_ms": args.interval_ms}
    path.write_text(json.dumps(document, indent=2))


# --- set-up -----------------------------------------------------------------------------------


def setup_platform(p: Platform) -> dict[str, str]:
    """A small dataset and one finished training job on it (its run has a driver log), those of
    an earlier bench on the same platform (``--home``) when there are; and a tracked run, open
    for metric points (an ended run takes none)."""
    run = p.runs.start(name="failover-bench").id
    for earlier in p.training.list(status=["SUCCEEDED"]):
        if earlier.spec.dataset_name.startswith(PREFIX):
            return {"dataset": earlier.spec.dataset_name, "job": earlier.run.id, "run": run}
    return {**train_setup_job(p), "run": run}


def train_setup_job(p: Platform) -> dict[str, str]:
    import numpy as np

    name = f"{PREFIX}{uuid.uuid4().hex[:6]}"
    rng = np.random.default_rng(0)
    rows = 200
    table = pa.table({"f0": rng.normal(size=rows), "f1": rng.normal(size=rows),
                      "y": rng.integers(0, 2, rows)})  # fmt: skip
    p.datasets.create(name).push(table, message="failover bench")
    t0 = time.monotonic()
    job = p.training.submit(dataset=name, model="mlp", label="y", workers=1, epochs=1)
    run = job.wait(timeout_s=600)
    say(f"  training job {job.id}: {run.status.value} in {time.monotonic() - t0:.0f} s")
    if run.status.value != "SUCCEEDED":
        raise SystemExit(f"the set-up job failed: {run.error}")
    return {"dataset": name, "job": job.id}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--warm-s", type=float, default=2.0, help="calls before each kill")
    parser.add_argument("--settle-s", type=float, default=3.0, help="pause between kills")
    parser.add_argument("--actors", default=",".join(ACTORS))
    parser.add_argument("--home", type=Path, help="use the platform running there (kept)")
    args = parser.parse_args()
    chosen = [a for a in args.actors.split(",") if a]
    if unknown := set(chosen) - set(ACTORS):
        parser.error(f"unknown actors {sorted(unknown)}; choose from {list(ACTORS)}")
    with_checkout_on_pythonpath()
    started = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {}
    with platform(args.home, "dlp-fo-") as (url, token, home):
        say(f"platform at {url} after {time.monotonic() - started:.0f} s; setting up ...")
        with dlp.connect(url, token, retries=0, timeout_s=120) as p:
            setup = setup_platform(p)
            namespace = attach_ray(home)
            probes = make_probes(p, setup)
            for pr in (pr for key in chosen for pr in probes[key]):  # each route answers now
                pr.fn()
            try:
                for key in chosen:
                    say(f"killing the {ACTORS[key][0]} {args.repeats} times ...")
                    results[key] = run_actor(key, probes[key], namespace, args)
            finally:
                import ray

                ray.shutdown()  # leave the cluster before `dlp down` stops it
    say(f"done in {time.monotonic() - started:.0f} s")
    report(results, args)


if __name__ == "__main__":
    try:
        main()
    except DLPlatformError as exc:
        raise SystemExit(f"failover_bench: {type(exc).__name__}: {exc}") from None
