"""The metadata actor on the shared local Ray cluster: start, typed errors, concurrency, placement."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from dlplatform.config import Settings, load_settings
from dlplatform.errors import AlreadyExists, BackendUnavailable, InvalidInput, NotFound
from dlplatform.metadata import Dataset, Run, RunStatus
from dlplatform.metadata.actor import ACTOR_NAME, connect_store, stop_store
from dlplatform.metadata.metrics_logger import MetricLogger
from dlplatform.metadata.records import utcnow

pytestmark = pytest.mark.integration


@pytest.fixture
def actor_settings(ray_cluster: None, tmp_path: Path) -> Iterator[Settings]:
    """Settings with a namespace of its own, so that no two tests share an actor."""
    settings = load_settings(home=tmp_path / "home", namespace=f"t-{uuid.uuid4().hex[:8]}")
    yield settings
    stop_store(settings)


@ray.remote(num_cpus=0.25)
def log_through_logger(settings: Settings, run_id: str, worker: int, n: int) -> int:
    store = connect_store(settings)
    logger = MetricLogger(store, run_id, flush_interval_s=0.05, max_buffer=256)
    for step in range(n):
        logger.log_metric(f"w{worker}", float(step), step)
    logger.close()
    if logger.errors:
        raise RuntimeError(f"logger errors: {logger.errors}")
    return n


@ray.remote(num_cpus=0.25)
def log_in_batches(settings: Settings, run_id: str, worker: int, n: int, batch: int) -> int:
    store = connect_store(settings)
    sent = 0
    for start in range(0, n, batch):
        steps = list(range(start, min(n, start + batch)))
        sent += store.log_metric_batch(
            [run_id] * len(steps), [f"b{worker}"] * len(steps), [float(s) for s in steps], steps
        )
    return sent


def test_connect_starts_the_actor_and_round_trips_records(actor_settings: Settings) -> None:
    with pytest.raises(BackendUnavailable, match="not running"):
        connect_store(actor_settings, create=False)
    store = connect_store(actor_settings)
    assert store.ping() == "ok"
    assert store.schema_version() >= 1
    ds = store.create_dataset(Dataset(name="iris", created_at=utcnow(), created_by="alice"))
    assert store.get_dataset("iris") == ds
    store.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    run = store.update_run("r-1", status=RunStatus.RUNNING)
    assert run.status is RunStatus.RUNNING
    assert actor_settings.metadata_path.is_file()  # the actor owns the file under the home


def test_typed_errors_come_back_through_the_actor(actor_settings: Settings) -> None:
    store = connect_store(actor_settings)
    with pytest.raises(NotFound, match="ghost"):
        store.get_dataset("ghost")
    store.create_dataset(Dataset(name="iris", created_at=utcnow(), created_by="alice"))
    with pytest.raises(AlreadyExists, match="iris"):
        store.create_dataset(Dataset(name="iris", created_at=utcnow(), created_by="bob"))
    with pytest.raises(InvalidInput, match="same length"):
        store.log_metric_batch(["r"], ["a", "b"], [1.0], [0])
    with pytest.raises(InvalidInput, match="type"):
        store.update_dataset("iris", type="video")  # pydantic's error, typed by the actor
    with pytest.raises(AttributeError):
        store._db  # noqa: B018 - private members are not forwarded
    with pytest.raises(AttributeError):
        store.no_such_method  # noqa: B018
    assert store.get_dataset("iris").created_by == "alice"


def test_second_connect_returns_the_same_actor(actor_settings: Settings) -> None:
    first = connect_store(actor_settings)
    second = connect_store(actor_settings)
    assert first._handle._actor_id == second._handle._actor_id
    first.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    assert second.get_run("r-1").owner == "alice"
    # a client travels to tasks and still reaches the same actor
    assert ray.get(_get_run_owner.remote(first, "r-1")) == "alice"


@ray.remote(num_cpus=0.25)
def _get_run_owner(store: object, run_id: str) -> str:
    return store.get_run(run_id).owner  # type: ignore[attr-defined]


def test_actor_is_detached_named_and_on_the_head_node(actor_settings: Settings) -> None:
    from ray.util.state import list_actors

    connect_store(actor_settings)
    handle = ray.get_actor(ACTOR_NAME, namespace=actor_settings.namespace)
    found = [
        a for a in list_actors(
            address=ray.get_runtime_context().gcs_address,  # other clusters may run here
            filters=[("state", "=", "ALIVE")],
            detail=True,
        )
        if a.actor_id == handle._actor_id.hex()
    ]  # fmt: skip
    assert len(found) == 1
    actor = found[0]
    assert actor.name == ACTOR_NAME and actor.ray_namespace == actor_settings.namespace
    assert actor.is_detached
    heads = [
        n["NodeID"] for n in ray.nodes()
        if n["Alive"] and "node:__internal_head__" in n["Resources"]
    ]  # fmt: skip
    assert actor.node_id in heads
    assert stop_store(actor_settings) is True
    assert stop_store(actor_settings) is False


def test_state_survives_an_actor_restart(actor_settings: Settings) -> None:
    store = connect_store(actor_settings)
    store.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    store.log_metric_batch(["r-1"] * 3, ["loss"] * 3, [1.0, 2.0, 3.0], [0, 1, 2])
    stop_store(actor_settings)
    again = connect_store(actor_settings)
    assert again.get_run("r-1").owner == "alice"
    assert len(again.get_metrics("r-1")) == 3


def test_reads_wait_out_a_crash_of_the_actor(actor_settings: Settings) -> None:
    """The actor's process is SIGKILLed while a reader reads in a loop: Ray restarts it, and
    every read succeeds (those in flight or sent meanwhile wait for it) instead of failing."""
    store = connect_store(actor_settings)
    store.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    pid = ray.get(store._handle.pid.remote())
    reads: list[float] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert store.get_run("r-1").owner == "alice"
                reads.append(time.monotonic())
            except BaseException as exc:  # the test reports every failure
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    time.sleep(0.3)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = killed + 60
    while not [t for t in reads if t > killed + 0.5] and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    thread.join(60)
    assert errors == []
    after = [t for t in reads if t > killed]
    assert after, "no read succeeded after the kill"
    assert ray.get(store._handle.pid.remote()) != pid  # a new process: it really restarted
    print(f"\nmetadata actor killed: first read answered {after[0] - killed:.2f} s later")


def test_concurrent_tasks_lose_no_metric_points(actor_settings: Settings) -> None:
    store = connect_store(actor_settings)
    store.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    n = 2000
    refs = [log_through_logger.remote(actor_settings, "r-1", w, n) for w in range(8)]
    refs += [log_in_batches.remote(actor_settings, "r-1", w, n, 100) for w in range(8)]
    assert ray.get(refs, timeout=300) == [n] * 16
    points = store.get_metrics("r-1")
    assert len(points) == 16 * n
    by_key: dict[str, list[int]] = {}
    for p in points:
        by_key.setdefault(p.key, []).append(p.step)
    assert sorted(by_key) == sorted([f"w{w}" for w in range(8)] + [f"b{w}" for w in range(8)])
    for steps in by_key.values():
        assert steps == list(range(n))  # every step exactly once


def test_an_in_process_store_never_reaches_platform_actors(actor_settings: Settings) -> None:
    """With some Ray cluster up, a backend over an in-process DuckDB file must not start the
    scheduler or the workflow manager (they could not open the locked file and calls would hang
    for a minute): cluster work fails at once with a clear error; queue-only work still runs."""
    import time

    from dlplatform.access import SYSTEM
    from dlplatform.context import Backend
    from dlplatform.metadata import MetadataStore
    from dlplatform.metadata.artifacts import ArtifactStore
    from dlplatform.train import service as training
    from dlplatform.workflows import service as workflows

    store = MetadataStore(actor_settings.metadata_path)
    try:
        backend = Backend(store, ArtifactStore.from_settings(actor_settings), actor_settings)
        assert ray.is_initialized() and not backend.on_cluster
        run = store.create_run(
            Run(id="run-local", kind="train", status=RunStatus.QUEUED, owner="system",
                name="dlp-train-run-local", created_at=utcnow(),
                spec_json='{"dataset": "digits", "label": "target"}')
        )  # fmt: skip
        start = time.monotonic()
        with pytest.raises(BackendUnavailable, match="training needs the running platform"):
            training.get_logs(backend, SYSTEM, run.id)
        with pytest.raises(BackendUnavailable, match="workflows needs the running platform"):
            workflows.run_workflow(
                backend, SYSTEM, "dlplatform.workflows.pipelines:train_and_deploy"
            )
        # a queued job needs no cluster to be cancelled
        assert training.cancel_job(backend, SYSTEM, run.id).status == "CANCELLED"
        assert time.monotonic() - start < 5
        named = {(a["namespace"], a["name"]) for a in ray.util.list_named_actors(True)}
        assert not {n for n in named if n[0] == actor_settings.namespace}
    finally:
        store.close()
