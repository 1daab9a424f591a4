"""The HTTP SDK as a remote user has it: a separate process with only ``DLP_URL`` and ``DLP_TOKEN``
runs the README's tour against the real gateway in Ray Serve (issue 17, "Real parts in the tests").

- ``remote_tour.py`` (run here with ``subprocess``): create a dataset, push a CSV and a Parquet
  file, list, read versions back with ``to_arrow()`` and compare them with the files, train a
  1-worker MLP for 2 epochs and ``wait()``, promote, deploy, predict, lineage from the model version
  to the dataset commit, ``to_ray()`` off the cluster refused clearly, undeploy; it never imports
  Ray or torch.
- The run token the training job was given (``DLP_TOKEN`` of its Ray job) is revoked once the run
  ended, and refused over HTTP.
- Bad input over real HTTP: a wrong URL, a revoked token, a push repeated with one idempotency key.

Costs: one real 1-worker TorchTrainer job on 300 rows (the fixed job overhead, ~40 s on 2 cores,
dominates), one Serve model app, a second Python process (~1 s to start).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dlplatform as dlp
from dlplatform.access import SYSTEM, issue_token, token_refusal
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, NotFound, Unauthenticated
from dlplatform.metadata.records import utcnow

pytestmark = pytest.mark.integration

TOUR = Path(__file__).with_name("remote_tour.py")
TOUR_TIMEOUT_S = 600
SUMMARY_MARK = "TOUR-SUMMARY "


def _rows(n: int, seed: int) -> pa.Table:
    """Three well-separated classes in 4 features, values with 3 decimals (exact in CSV)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, -1.0, 0.5], [-2.0, 1.0, 2.0, -1.0]])
    x = np.round(centers[y] + rng.normal(0, 0.3, (n, 4)), 3)
    return pa.table({**{f"f{i}": x[:, i] for i in range(4)}, "y": y.astype(np.int64)})


def _write_inputs(folder: Path) -> None:
    day1 = _rows(150, seed=1)
    lines = ["f0,f1,f2,f3,y"] + [
        ",".join(f"{v:.3f}" for v in row[:4]) + f",{int(row[4])}"
        for row in zip(*(day1.column(c).to_pylist() for c in day1.column_names), strict=True)
    ]
    (folder / "day1.csv").write_text("\n".join(lines) + "\n")
    pq.write_table(_rows(150, seed=2), folder / "day2.parquet")


def _client_env(tmp: Path, url: str, token: str, **extra: str) -> dict[str, str]:
    """What a remote user's shell has: the URL and a token; no Ray address, no platform home."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp)),
        "LANG": "C.UTF-8",
        "DLP_URL": url,
        "DLP_TOKEN": token,
        "DLP_HOME": str(tmp / "no-platform-here"),  # no local admin token to fall back on
        "DLP_CONFIG_DIR": str(tmp / "config"),  # no `dlp login` profiles
        **extra,
    }
    assert "RAY_ADDRESS" not in env
    return env


def _summary(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    marks = [ln for ln in done.stdout.splitlines() if ln.startswith(SUMMARY_MARK)]
    assert marks, f"no summary; rc={done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    summary: dict[str, Any] = json.loads(marks[-1][len(SUMMARY_MARK) :])
    return summary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_tour_from_a_remote_process(
    gateway_url: str, gateway_admin_token: str, gateway_backend: Backend, tmp_path: Path
) -> None:
    name = f"tour-{uuid.uuid4().hex[:8]}"
    _write_inputs(tmp_path)
    env = _client_env(tmp_path, gateway_url, gateway_admin_token, TOUR_DIR=str(tmp_path),
                      TOUR_NAME=name)  # fmt: skip
    try:
        done = subprocess.run(
            [sys.executable, str(TOUR)], env=env, capture_output=True, text=True,
            timeout=TOUR_TIMEOUT_S, cwd=tmp_path,
        )  # fmt: skip
    finally:  # keep the session's Serve tidy even when the tour failed half-way
        from dlplatform import serve as serving

        with contextlib.suppress(NotFound):
            serving.undeploy(gateway_backend, SYSTEM, f"{name}-mlp")
    summary = _summary(done)
    print(f"tour steps (s): {summary['steps_s']}")
    assert done.returncode == 0 and summary["ok"], (summary, done.stderr[-4000:])
    assert summary["ray_imported"] is False and summary["torch_imported"] is False
    assert summary["user"] == "admin"
    assert summary["rows_read"] == 300
    assert summary["run_status"] == "SUCCEEDED" and summary["epochs"] == [0, 1]
    assert summary["model_version"] == f"{name}-mlp@1"
    assert summary["deployed"] == f"{name}-mlp@1" and summary["undeployed"] is True
    assert len(summary["predictions"]) == 2
    assert summary["lineage_reaches_commit"] and summary["lineage_reaches_run"]
    assert "to_arrow()" in (summary["to_ray_error"] or ""), summary["to_ray_error"]

    # The job's run token (its DLP_TOKEN, the owner's) no longer works now that the run ended.
    run_id = summary["run_id"]
    store = gateway_backend.store
    deadline = time.monotonic() + 30  # the status is final a moment before the revocation
    while True:
        issued = [t for t in store.list_tokens("admin") if t.run_id == run_id]
        assert len(issued) == 1, [t.model_dump() for t in store.list_tokens(run_id=run_id)]
        if issued[0].revoked_at is not None or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    token = issued[0]
    assert token.revoked_at is not None, token
    assert token.expires_at is not None and token.expires_at > token.created_at
    assert token_refusal(token, store.get_run(run_id), utcnow()) is not None
    with dlp.connect(gateway_url, gateway_admin_token) as p:  # the same listing over HTTP
        listed = {t.id: t for t in p.users.tokens("admin")}
    assert listed[token.id].run_id == run_id and listed[token.id].revoked_at is not None
    # Its secret is in the Ray job's runtime_env (visible to whoever reaches the dashboard):
    # use it for real and see it refused.
    from dlplatform.train.scheduler import job_client, submission_id

    job_env = job_client().get_job_info(submission_id(run_id)).runtime_env["env_vars"]
    assert job_env["DLP_TOKEN"].startswith(token.prefix)
    with dlp.connect(gateway_url, job_env["DLP_TOKEN"]) as p, pytest.raises(Unauthenticated):
        p.whoami()


def test_bad_input_over_real_http(
    gateway_url: str, gateway_admin_token: str, gateway_backend: Backend
) -> None:
    # a wrong URL: nothing listens there
    wrong = f"http://127.0.0.1:{_free_port()}"
    p = dlp.connect(wrong, gateway_admin_token, retries=1)
    with p, pytest.raises(BackendUnavailable, match=f"cannot reach the platform at {wrong}"):
        p.datasets.list()

    # a revoked token
    secret, info = issue_token(gateway_backend.store, "admin")
    with dlp.connect(gateway_url, secret) as p:
        assert p.whoami().name == "admin"
        with dlp.connect(gateway_url, gateway_admin_token) as admin:
            assert admin.users.revoke_token(info.id).revoked_at is not None
        with pytest.raises(Unauthenticated):
            p.whoami()

    # one idempotency key, two pushes: one commit
    with dlp.connect(gateway_url, gateway_admin_token) as p:
        ds = p.datasets.create(f"idem-{uuid.uuid4().hex[:8]}")
        key = uuid.uuid4().hex
        first = ds.push(_rows(20, seed=5), idempotency_key=key)
        again = ds.push(_rows(20, seed=5), idempotency_key=key)
        assert again.id == first.id
        assert [c.id for c in ds.commits()] == [first.id]
        other = ds.push(_rows(20, seed=5), idempotency_key=uuid.uuid4().hex)
        assert [c.id for c in ds.commits()] == [other.id, first.id]
