"""A real multi-node platform: a head and a worker node started in the test (``ray.cluster_utils``)
in a fresh process (``multinode_driver.py``), so it does not touch the session's ``ray_cluster``.

Checks: the metadata actor sits on the head; a 2-worker training job puts one worker on each
node; killing the worker node mid-training makes the run restart from its checkpoint on a
replacement node and succeed (``max_failures=1``); the model is then served over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("multinode_driver.py")
TIMEOUT_S = 600


@pytest.fixture(scope="module")
def facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    # A short path: Ray's unix sockets live under it (107-byte limit).
    workdir = Path(f"/tmp/dlpmn-{os.getpid()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "DLP_"))}
    proc = subprocess.Popen(
        [sys.executable, str(DRIVER), str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True, cwd=str(tmp_path_factory.mktemp("multinode")),
    )  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver's session: its Ray nodes included
        output, _ = proc.communicate()
        pytest.fail(
            f"the multi-node driver ran over {TIMEOUT_S}s (Ray logs in {workdir}):\n{output[-4000:]}"
        )
    lines = [line for line in output.splitlines() if line.startswith("RESULT ")]
    assert lines, f"the driver printed no result (exit {proc.returncode}):\n{output[-4000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert "exception" not in result, f"Ray logs in {workdir}:\n{result['exception']}"
    shutil.rmtree(workdir, ignore_errors=True)
    return result


def test_two_nodes_and_the_metadata_actor_on_the_head(facts: dict[str, Any]) -> None:
    assert facts["nodes_alive"] == 2
    assert facts["metadata_actor_node"] == facts["head_node"]
    assert facts["metadata_actor_node_after"] == facts["head_node"]
    assert facts["metadata_answers_after"] is True


def test_training_workers_are_spread_over_both_nodes(facts: dict[str, Any]) -> None:
    nodes = sorted(w["node"] for w in facts["workers_before"])
    assert nodes == sorted([facts["head_node"], facts["worker_node"]])


def test_losing_the_worker_node_restarts_training_from_a_checkpoint(facts: dict[str, Any]) -> None:
    assert facts["epochs_before_kill"] >= 1
    assert facts["final_status"] == "SUCCEEDED", facts["error"]
    assert facts["model_version"] == "digits-multinode@1"
    assert facts["epochs_recorded"] == list(range(len(facts["epochs_recorded"])))
    assert len(facts["epochs_recorded"]) == 24
    workers = facts["workers_all"]
    # the first group (one worker died with its node) and the restarted group after it
    assert len({w["id"] for w in workers}) >= 4
    on_lost = [w for w in workers if w["node"] == facts["worker_node"]]
    assert on_lost and all(w["state"] == "DEAD" for w in on_lost)
    assert any(w["node"] == facts["replacement_node"] for w in workers)


def test_the_trained_model_is_served(facts: dict[str, Any]) -> None:
    assert facts["deployed_version"] == 1
    assert facts["predict_status"] == 200
    outputs = facts["predict_outputs"]
    assert len(outputs) == 5 and all(int(o) in range(10) for o in outputs)
