"""The body of tests/integration/test_multinode.py, run in a fresh Python process.

It starts its own two-node Ray cluster with ``ray.cluster_utils.Cluster`` (a head and a worker
node on this machine, each with 2 CPUs and one ``train_slot``), so it never meets the session's
``ray.init``. Then it runs the platform on it through the public APIs:

1. the metadata actor (started by ``connect_store``) sits on the head node;
2. a 2-worker training job (``train.submit``: a Ray Job running the platform's entrypoint and a
   TorchTrainer) puts one worker on each node (each worker needs a ``train_slot``);
3. mid-training the worker node is killed (``Cluster.remove_node``) and a replacement node joins,
   as an autoscaler would add one: with ``max_failures=1`` the run restarts its worker group from
   the last checkpoint and SUCCEEDS, registering a model version;
4. the model is deployed with ``serve.deploy`` and answers ``POST /models/<name>`` over HTTP.

It prints one JSON line of facts (``RESULT {...}``) that the test asserts on, and always shuts
its cluster down. Usage: ``python multinode_driver.py WORKDIR``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sys
import time
import traceback
from pathlib import Path
from typing import Any

TRAIN_SLOT = "train_slot"
EPOCHS = 24
JOB_TIMEOUT_S = 300.0
# A node's agents can take >30 s to import on a loaded 2-core box, and the raylet then aborts
# ("timed out during startup"); such a start is retried from scratch.
STARTUP_ATTEMPTS = 2


def _env(workdir: Path) -> None:
    """Before Ray is imported: quiet, no auth (a private test cluster), and a private temp dir
    so the cluster's address file never reaches anyone else's ``ray.init()``."""
    os.environ["RAY_TMPDIR"] = str(workdir / "t")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.pop("RAY_ADDRESS", None)
    for key, value in {
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "120",
        "RAY_DATA_LOG_LEVEL": "WARNING",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
        "RAY_AIR_NEW_OUTPUT": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "1",
        # A loaded 2-core box can take >30 s to start a node's agents (Python imports); the
        # raylet aborts when their port files take longer than this (default 30 s).
        "RAY_raylet_start_wait_time_s": "180",
        "RAY_agent_register_timeout_ms": "180000",
    }.items():
        os.environ.setdefault(key, value)


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_port() -> int:
    return _free_ports(1)[0]


def _actors(api: str, **filters: str) -> list[dict[str, Any]]:
    """Actors of THIS cluster (an explicit State API address: "auto" would pick any cluster on
    the machine, e.g. another test session's)."""
    from ray.util.state import list_actors

    actors = list_actors(
        address=api, filters=[(k, "=", v) for k, v in filters.items()], limit=1000,
        raise_on_missing_output=False,
    )  # fmt: skip
    return [{"id": a.actor_id, "node": a.node_id, "state": a.state} for a in actors]


def _wait_for(predicate: Any, timeout_s: float, what: str, poll_s: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def run(workdir: Path, facts: dict[str, Any]) -> None:
    import httpx
    import numpy as np
    import pyarrow as pa
    import ray
    from ray.cluster_utils import Cluster
    from sklearn.datasets import load_digits

    from dlplatform import data, train
    from dlplatform import serve as serving
    from dlplatform.access import SYSTEM, bootstrap_admin
    from dlplatform.config import load_settings
    from dlplatform.context import Backend
    from dlplatform.metadata.actor import ACTOR_NAME, connect_store
    from dlplatform.metadata.artifacts import ArtifactStore
    from dlplatform.runtime import start_serve
    from dlplatform.serve import DeploymentSpec
    from dlplatform.train import TrainingJobSpec

    started = time.monotonic()
    temp_dir = str(workdir / "t" / "ray")
    # Nodes advertise the machine's address, like the session's `ray.init` (cluster_utils nodes
    # do not come up with node_ip_address=127.0.0.1: their GCS clients dial the machine address).
    node_args = {"num_cpus": 2, "temp_dir": temp_dir, "object_store_memory": 200 * 1024 * 1024}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **node_args,
            "resources": {TRAIN_SLOT: 1},
            "gcs_server_port": _free_port(),
            "include_dashboard": True,  # Ray Jobs (the training queue submits jobs) + State API
            "dashboard_host": "127.0.0.1",
            "dashboard_port": _free_port(),
            # Each node's agent on its own port: Ray's fixed default (52365) is taken by any
            # other Ray node on the machine (the test session's own cluster), and a node whose
            # agent cannot bind never accepts Ray Jobs.
            "dashboard_agent_listen_port": _free_port(),
        },
    )
    try:
        worker = cluster.add_node(
            **node_args, dashboard_agent_listen_port=_free_port(),
            resources={TRAIN_SLOT: 1, "worker_node": 1},
        )  # fmt: skip
        ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
        head_id = cluster.head_node.node_id
        api = f"http://{cluster.webui_url}"
        facts["head_node"], facts["worker_node"] = head_id, worker.node_id
        facts["nodes_alive"] = sum(1 for n in ray.nodes() if n["Alive"])
        facts["t_cluster_s"] = round(time.monotonic() - started, 1)

        settings = load_settings(home=workdir / "home", namespace="dlp-multinode")
        store = connect_store(settings)
        backend = Backend(
            store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings
        )
        admin_token = bootstrap_admin(store)
        [meta] = _actors(api, name=ACTOR_NAME)
        facts["metadata_actor_node"] = meta["node"]

        digits = load_digits()
        rows = 900
        table = pa.table(
            {**{f"p{i}": digits.data[:rows, i].astype(np.float64) for i in range(64)},
             "target": digits.target[:rows]}
        )  # fmt: skip
        data.create_dataset(backend, SYSTEM, "digits")
        data.push(backend, SYSTEM, "digits", table, message="900 digits")

        spec = TrainingJobSpec(
            dataset="digits", label="target", model="mlp", workers=2, epochs=EPOCHS,
            batch_size=32, lr=0.01, seed=3, max_failures=1, model_name="digits-multinode",
            resources_per_worker={"CPU": 1.0, TRAIN_SLOT: 1.0}, params={"hidden": 16},
        )  # fmt: skip
        job = train.submit(backend, SYSTEM, spec)
        facts["run_id"] = job.id

        def first_workers() -> list[dict[str, Any]] | None:
            alive = _actors(api, class_name="RayTrainWorker", state="ALIVE")
            return alive if len(alive) == 2 else None

        facts["workers_before"] = _wait_for(first_workers, JOB_TIMEOUT_S, "2 live train workers")
        facts["t_workers_s"] = round(time.monotonic() - started, 1)

        def epochs_done() -> int:
            return len(train.epoch_table(train.get_metrics(backend, SYSTEM, job.id)))

        facts["epochs_before_kill"] = _wait_for(epochs_done, JOB_TIMEOUT_S, "a reported epoch")
        cluster.remove_node(worker, allow_graceful=False)  # the node dies mid-training
        facts["killed_at_s"] = round(time.monotonic() - started, 1)
        facts["status_after_kill"] = train.get_job(backend, SYSTEM, job.id).status
        # An autoscaler would replace the lost node; here the test adds one.
        replacement = cluster.add_node(
            **node_args, dashboard_agent_listen_port=_free_port(),
            resources={TRAIN_SLOT: 1, "worker_node": 1},
        )  # fmt: skip
        facts["replacement_node"] = replacement.node_id

        done = train.wait_job(backend, SYSTEM, job.id, timeout_s=JOB_TIMEOUT_S, poll_s=0.5)
        facts["final_status"] = done.status
        facts["error"] = done.run.error
        facts["model_version"] = done.model_version
        facts["epochs_recorded"] = [
            int(row["epoch"])
            for row in train.epoch_table(train.get_metrics(backend, SYSTEM, job.id))
        ]
        facts["workers_all"] = _actors(api, class_name="RayTrainWorker")
        facts["t_train_s"] = round(time.monotonic() - started, 1)

        [meta] = _actors(api, name=ACTOR_NAME)
        facts["metadata_actor_node_after"] = meta["node"]
        facts["metadata_answers_after"] = store.get_run(job.id).id == job.id

        port = start_serve("127.0.0.1", _free_port())
        info = serving.deploy(backend, SYSTEM, "digits-multinode", DeploymentSpec())
        facts["deployed_version"] = info.version
        reply = httpx.post(
            f"http://127.0.0.1:{port}/models/digits-multinode",
            json={"inputs": [list(map(float, digits.data[i])) for i in range(900, 905)]},
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=60,
        )
        facts["predict_status"] = reply.status_code
        body = reply.json()
        facts["predict_outputs"] = body.get("outputs")
        facts["predict_truth"] = [int(t) for t in digits.target[900:905]]
        facts["t_total_s"] = round(time.monotonic() - started, 1)
    finally:
        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            cluster.shutdown()


def main() -> int:
    workdir = Path(sys.argv[1]).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    _env(workdir)
    facts: dict[str, Any] = {}
    for attempt in range(1, STARTUP_ATTEMPTS + 1):
        facts = {"startup_attempts": attempt}
        try:
            run(workdir, facts)
            break
        except BaseException as exc:
            facts["exception"] = "".join(traceback.format_exception(exc))[-4000:]
            # Only a node that did not come up is retried (the platform was not touched yet).
            if "run_id" in facts or "timed out during startup" not in str(exc):
                break
            _kill_leftovers(workdir)
            shutil.rmtree(workdir / "t", ignore_errors=True)
    print("RESULT " + json.dumps(facts, default=str), flush=True)
    return 0


def _kill_leftovers(workdir: Path) -> None:
    """SIGKILL the processes of a half-started node of this run (their command lines name our
    private temp dir, which no other process uses)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(workdir) in cmdline:
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
