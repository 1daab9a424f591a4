"""Run every component benchmark, then write one table of every figure beside its baseline.

    python benchmarks/run_all.py [--only metadata,dataset,...] [--skip serve] [--no-run]

Each ``*_bench.py`` script writes ``results/<script>.json`` (see ``_results.py``); this script runs
them one after another (never in parallel: they would measure each other) and collects
``results/all.json`` and ``results/all.md``, which the README's benchmark table is copied from.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from _results import RESULTS, machine

HERE = Path(__file__).resolve().parent
SCRIPTS = ["metadata", "dataset", "train", "serve", "workflow", "client"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCRIPTS))
    parser.add_argument("--skip", default="")
    parser.add_argument(
        "--no-run",
        action="store_true",
        help="run nothing: rebuild all.md/all.json from what each script last wrote",
    )
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s and s not in args.skip.split(",")]
    status: dict[str, str] = {}
    for name in [] if args.no_run else chosen:
        script = HERE / f"{name}_bench.py"
        started = time.monotonic()
        print(f"== {script.name}", flush=True)
        done = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, check=False)
        status[name] = f"exit {done.returncode} in {time.monotonic() - started:.0f} s"
    rows = []
    for name in chosen:
        path = RESULTS / f"{name}_bench.json"
        if not path.exists():
            continue
        for r in json.loads(path.read_text())["results"]:
            rows.append({"benchmark": name, **r})
    lines = [
        f"Machine: {json.dumps(machine())}",
        "",
        "| benchmark | figure | value | unit | baseline | baseline value | ratio | target | meets |",
        "|" + "---|" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['figure']} | {r['value']:,} | {r['unit']} | {r['baseline']} | "
            f"{r['baseline_value']:,} | {r['ratio']} | {r['target']} | {r['meets']} |"
        )
    (RESULTS / "all.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "all.json").write_text(
        json.dumps({"machine": machine(), "status": status, "results": rows}, indent=2)
    )
    print("\n".join(lines))
    print("\n" + "\n".join(f"{k}: {v}" for k, v in status.items()))
    return 0 if all(v.startswith("exit 0") for v in status.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
