"""Shared output of the benchmark scripts: a Markdown table and ``results/<script>.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        gpu = out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        gpu = None
    return {"cores": os.cpu_count(), "cpu": cpu, "gpu": gpu, "python": platform.python_version()}


def row(
    figure: str,
    value: float,
    unit: str,
    baseline: str,
    baseline_value: float,
    target: str,
    meets: bool | None,
    *,
    ratio: float | None = None,
) -> dict[str, Any]:
    """One result; ``ratio`` defaults to value / baseline_value."""
    if ratio is None:
        ratio = value / baseline_value if baseline_value else float("nan")
    return {
        "figure": figure, "value": round(value, 4), "unit": unit, "baseline": baseline,
        "baseline_value": round(baseline_value, 4), "ratio": round(ratio, 3), "target": target,
        "meets": meets,
    }  # fmt: skip


def write_results(script: str, rows: list[dict[str, Any]]) -> Path:
    """Print the Markdown table and write ``results/<script>.json``; returns the file."""
    head = "| figure | value | unit | baseline | baseline value | ratio | target | meets |"
    print(head)
    print("|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['figure']} | {r['value']:,} | {r['unit']} | {r['baseline']} | "
            f"{r['baseline_value']:,} | {r['ratio']} | {r['target']} | {r['meets']} |"
        )
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{script}.json"
    path.write_text(json.dumps({"machine": machine(), "results": rows}, indent=2))
    print(f"\nwritten {path}")
    return path
