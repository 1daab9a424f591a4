"""Where a run's time goes between submit and its first training step.

Each stage records the wall-clock time (unix seconds) at which it ended, under its name. Three
processes add marks: the scheduler (``submitted``, ``admitted``, ``job_submitted``), the job
driver (``driver_started`` to ``fit_started``) and rank 0 of the worker group (``worker_started``
to ``first_step``). A job on the warm pool (``pool``) has no Ray Job and no driver process: the
scheduler drives it, so it skips ``job_submitted`` to ``driver_ready`` and marks
``workers_assigned`` instead; its ``worker_started`` is when the warm worker took the run up. The driver stores what it has before the workers start (so a run whose
workers never start still shows where it stopped); rank 0 stores the whole record once its first
step is done. Kept in ``runs.startup_json``.

``breakdown`` turns the marks into consecutive durations in the order of ``STAGES``: a mark
earlier than the one before it (a worker process taken from Ray's pool, started before this run)
counts from that one, so the parts always add up to submit → the last mark.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

STAGES: tuple[tuple[str, str], ...] = (
    ("submitted", "submit accepted, run recorded"),
    ("admitted", "waiting in the queue for admission"),
    ("job_submitted", "Ray Job submission"),
    ("driver_started", "Ray Job supervisor and driver process start"),
    ("driver_ready", "driver imports and Ray connect"),
    ("planned", "dataset resolved, model planned"),
    ("data_ready", "dataset read and encoded"),
    ("workers_assigned", "warm pool workers assigned"),
    ("fit_started", "run recorded, trainer configured"),
    ("worker_started", "Train controller and worker processes start (pool: run handed over)"),
    ("loop_started", "worker setup and torch.distributed init"),
    ("model_ready", "model built and wrapped"),
    ("first_batch", "first batch from Ray Data"),
    ("first_step", "first optimizer step"),
)
STAGE_NAMES = tuple(name for name, _ in STAGES)
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def now() -> float:
    return time.time()


def process_start_time(pid: int | None = None) -> float | None:
    """When this process (or ``pid``) started, in unix seconds; None where /proc cannot say."""
    try:
        stat = open(f"/proc/{pid or 'self'}/stat").read()  # noqa: SIM115 - one short read
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        for line in open("/proc/stat"):  # noqa: SIM115
            if line.startswith("btime "):
                return int(line.split()[1]) + start_ticks / _CLK_TCK
    except (OSError, ValueError, IndexError):
        return None
    return None


def parse(startup_json: str | None) -> dict[str, float]:
    """The marks stored on a run ({} when none or unreadable)."""
    if not startup_json:
        return {}
    try:
        raw = json.loads(startup_json)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): float(v) for k, v in raw.items() if isinstance(v, int | float)}


def dump(marks: dict[str, float]) -> str:
    known = {k: round(float(v), 4) for k, v in marks.items() if k in STAGE_NAMES}
    return json.dumps(known, sort_keys=False)


def breakdown(marks: dict[str, float]) -> dict[str, float]:
    """Seconds spent in each stage from ``submitted`` to the last mark, in stage order, plus
    ``total``. Stages without a mark are left out (their time counts in the next one)."""
    if "submitted" not in marks:
        return {}
    out: dict[str, float] = {}
    previous = marks["submitted"]
    for name in STAGE_NAMES[1:]:
        if name not in marks:
            continue
        at = max(marks[name], previous)
        out[name] = round(at - previous, 3)
        previous = at
    out["total"] = round(previous - marks["submitted"], 3)
    return out


def describe(name: str) -> str:
    return dict(STAGES).get(name, name)


def merge(store: Any, run_id: str, marks: dict[str, float]) -> dict[str, float]:
    """Add ``marks`` to those stored on the run and store the union; returns it."""
    merged = {**parse(store.get_run(run_id).startup_json), **marks}
    store.update_run(run_id, startup_json=dump(merged))
    return merged
