"""Per-step overhead of durable workflows, against the same DAGs as plain Ray tasks.

Run: ``python benchmarks/workflow_bench.py`` (about 1-2 minutes on 2 cores). Two DAGs of trivial
steps (``x + 1``), each run through the workflow engine and as plain Ray tasks in the same Ray
cluster, after a warm-up of both:

- a 50-step chain (each step needs the previous one);
- a 100-way fan-out: one source, 100 parallel steps, one fan-in step (102 steps).

The engine persists every output in the artifact store and records each step's start and end in
the metadata store (through the metadata actor), submitting a step once its upstream finished;
the plain baseline submits every task at once with object-ref dependencies and keeps nothing.
The durability overhead per step is (engine time - plain time) / steps; target < 30 ms.

Prints a Markdown table and writes ``benchmarks/results/workflow_bench.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
warnings.filterwarnings("ignore")

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlplatform.workflows import StepNode, step, workflow  # noqa: E402

CPUS_PER_STEP = 1.0  # 4 slots = Ray's idle-worker soft limit: workers stay warm in both cases
TARGET_MS = 30.0


@step(num_cpus=CPUS_PER_STEP)
def inc(x: int) -> int:
    return x + 1


@step(num_cpus=CPUS_PER_STEP)
def gather(xs: list[int]) -> int:
    return sum(xs)


@workflow
def chain(n: int = 50) -> StepNode:
    """The workflow: inc → inc → ... (n steps)."""
    node = inc.bind(0)
    for _ in range(n - 1):
        node = inc.bind(node)
    return node


@workflow
def fan(n: int = 100) -> StepNode:
    """The workflow: inc → n x inc → gather (n + 2 steps)."""
    source = inc.bind(0)
    return gather.bind([inc.bind(source) for _ in range(n)])


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _init_ray(temp_dir: str) -> None:
    import ray

    for attempt in range(10):  # a loaded 2-core machine sometimes misses Ray's start-up deadline
        try:
            ray.init(
                address="local",
                num_cpus=4,
                include_dashboard=False,
                log_to_driver=False,
                logging_level="ERROR",
                _temp_dir=temp_dir,
            )
            return
        except Exception as exc:
            say(f"ray.init failed ({exc}); retry {attempt + 1}")
            ray.shutdown()
            time.sleep(10)
    raise SystemExit("cannot start Ray")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, default=50)
    parser.add_argument("--fan", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import ray
    from _results import row, write_results

    from dlplatform.access import SYSTEM
    from dlplatform.config import load_settings
    from dlplatform.context import Backend
    from dlplatform.metadata import RunStatus
    from dlplatform.metadata.actor import stop_store
    from dlplatform.workflows import (
        WorkflowRegistrationRequest,
        register_workflow,
        run_workflow,
        stop_manager,
    )

    tmp = tempfile.mkdtemp(prefix="wfb-")
    _init_ray(os.path.join(tmp, "ray"))
    settings = load_settings(
        home=os.path.join(tmp, "home"), namespace=f"wfb-{uuid.uuid4().hex[:6]}"
    )
    backend = Backend.connect(settings)

    @ray.remote(num_cpus=CPUS_PER_STEP)
    def plain_inc(x: int) -> int:
        return x + 1

    @ray.remote(num_cpus=CPUS_PER_STEP)
    def plain_gather(*xs: int) -> int:
        return sum(xs)

    def plain_chain(n: int) -> float:
        t = time.perf_counter()
        ref = plain_inc.remote(0)
        for _ in range(n - 1):
            ref = plain_inc.remote(ref)
        assert ray.get(ref) == n
        return time.perf_counter() - t

    def plain_fan(n: int) -> float:
        t = time.perf_counter()
        source = plain_inc.remote(0)
        assert ray.get(plain_gather.remote(*[plain_inc.remote(source) for _ in range(n)])) == 2 * n
        return time.perf_counter() - t

    for factory in ("chain", "fan"):  # runs name registered workflows
        request = WorkflowRegistrationRequest(name=factory, target=f"workflow_bench:{factory}")
        register_workflow(backend, SYSTEM, request)

    def engine(factory: str, params: dict[str, Any]) -> float:
        t = time.perf_counter()
        run = run_workflow(backend, SYSTEM, factory, params)
        while True:  # one light metadata call per poll, to not compete with the engine
            state = backend.store.get_workflow_run(run.id)
            if state.status.is_final:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - t
        if state.status is not RunStatus.SUCCEEDED:
            raise SystemExit(f"run {run.id} {state.status.value}: {state.error}")
        return elapsed

    cases = [
        (f"{args.chain}-step chain", args.chain, lambda: engine("chain", {"n": args.chain}),
         lambda: plain_chain(args.chain)),
        (f"{args.fan}-way fan-out + fan-in", args.fan + 2, lambda: engine("fan", {"n": args.fan}),
         lambda: plain_fan(args.fan)),
    ]  # fmt: skip
    say("warm-up")
    for _, _, run_engine, run_plain in cases:
        run_plain()
        run_engine()
    rows = []
    for name, steps, run_engine, run_plain in cases:
        plain_s, engine_s = [], []
        for i in range(args.repeats):
            plain_s.append(run_plain())
            engine_s.append(run_engine())
            say(f"{name} #{i + 1}: plain {plain_s[-1]:.3f} s, engine {engine_s[-1]:.3f} s")
        plain, eng = statistics.median(plain_s), statistics.median(engine_s)
        overhead_ms = (eng - plain) / steps * 1000
        rows.append(row(f"{name}: wall time", eng, "s", "plain Ray tasks", plain, "", None))
        rows.append(
            row(f"{name}: durability overhead per step", overhead_ms, "ms/step",
                "plain Ray tasks (0 by definition)", 0.0, f"< {TARGET_MS:g} ms",
                overhead_ms < TARGET_MS, ratio=eng / plain)
        )  # fmt: skip
    write_results("workflow_bench", rows)
    stop_manager(settings)
    stop_store(settings)
    ray.shutdown()


if __name__ == "__main__":
    main()
