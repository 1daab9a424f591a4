"""``dlp usage`` and ``dlp quotas`` through the in-process gateway (#23): a table and --json
with the series, bad windows as one error line, quotas set, listed and lifted."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from dlplatform.context import Backend
from dlplatform.metadata.records import UsageInterval, utcnow


def test_usage_and_quotas_commands(run: Callable[..., Any], backend: Backend) -> None:
    backend.store.open_usage(UsageInterval(kind="run", subject="r-cli", owner="admin",
                                           dataset="digits", start_at=utcnow() - timedelta(
                                               hours=2), cpus=2, gpus=0))  # fmt: skip
    table = run("usage", "--by", "dataset", "--since", "1d")
    assert table.exit_code == 0, table.output
    assert "digits" in table.stdout and "cpu_time" in table.stdout and "4.00 h" in table.stdout
    assert "2.00 h" in table.stdout  # wall time; and a short run's seconds are not 0.00 hours
    backend.store.open_usage(UsageInterval(kind="run", subject="r-short", owner="admin",
                                           dataset="tiny", start_at=utcnow() - timedelta(
                                               seconds=3), cpus=2, gpus=0))  # fmt: skip
    short = run("usage", "--by", "dataset", "--since", "1d")
    row = next(ln for ln in short.stdout.splitlines() if "tiny" in ln)
    assert " s " in row and "0.00" not in row, row
    as_json = run("usage", "--by", "run", "--since", "1d", "--bucket", "1h", "--json")
    body = json.loads(as_json.stdout)
    assert [t["key"] for t in body["totals"]] == ["r-cli", "r-short"] and body["series"]

    bad = run("usage", "--since", "1h", "--until", "2h")
    assert bad.exit_code == 1
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: inverted time range"), bad.stderr
    assert run("usage", "--since", "forever").exit_code == 1

    set_ = run("quotas", "set", "user", "admin", "--cpus", "2", "--json")
    assert set_.exit_code == 0 and json.loads(set_.stdout)["max_cpus"] == 2, set_.output
    listed = run("quotas", "list")
    assert listed.exit_code == 0 and "admin" in listed.stdout
    assert run("quotas", "delete", "user", "admin").exit_code == 0
    gone = run("quotas", "delete", "user", "admin")
    assert gone.exit_code == 1 and "has no quota" in gone.stderr
