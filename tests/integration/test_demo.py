"""The main job: `dlp demo --stop` on a fresh home, end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return (
        Path(f"/proc/{pid}").exists()
        and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    )


def test_dlp_demo_runs_end_to_end_and_stops() -> None:
    home = Path(tempfile.mkdtemp(prefix="dlpd-", dir="/tmp"))  # short: Ray's socket paths
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DLP_"))}
    dlp = str(Path(sys.executable).with_name("dlp"))
    done = subprocess.run(
        [dlp, "demo", "--home", str(home), "--stop", "--json"],
        env=env, capture_output=True, text=True, timeout=1200, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)  # stdout is the JSON alone: every log line goes to stderr
    assert len(result["dataset_commits"]) == 2
    assert result["gate_passed"] is True
    assert result["model_version"] == "digits-mlp@1"
    assert result["predictions"] > 200 and result["accuracy"] > 0.8
    chain = result["lineage"]
    assert chain[0].startswith("prediction:") and chain[-1] == "dataset:digits"
    assert f"commit:{result['dataset_commits'][-1]}" in chain
    assert "epoch 1:" in done.stderr  # per-epoch progress was shown
    record = (
        json.loads((home / "cluster.json").read_text()) if (home / "cluster.json").exists() else {}
    )
    assert not any(_alive(pid) for pid in record.get("pids", []))
