"""No read is unbounded (issue #18, finding 17): deployments, a run's metrics and lineage answer
one page with ``X-Total-Count``, and the SDK fetches page after page; a job's log is read from a
byte offset, one bounded chunk per request; tuning trials are capped; logged prediction inputs
expire. In-process gateway, real DuckDB, no Ray."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dlplatform.api.app import create_app
from dlplatform.cli import app as cli_app
from dlplatform.client import JobHandle
from dlplatform.config import load_settings
from dlplatform.context import Backend
from dlplatform.metadata import Deployment, LineageEdge, MetricPoint, Prediction, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train.spec import JobLogs, TrainingJobSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"
SPEC = TrainingJobSpec(dataset="digits@c-1", label="target", epochs=2)


@pytest.fixture
def client(backend: Backend, admin_token: str) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(backend), base_url="http://127.0.0.1", headers=headers) as c:
        yield c


def _run(backend: Backend, run_id: str, status: RunStatus, **fields: Any) -> Run:
    return backend.store.create_run(Run(id=run_id, owner="admin", status=status,
                                        spec_json=SPEC.model_dump_json(), created_at=utcnow(),
                                        **fields))  # fmt: skip


# --- deployments -------------------------------------------------------------------------------


def _deployments(backend: Backend, n: int) -> None:
    now = utcnow()
    for i in range(n):
        backend.store.put_deployment(Deployment(name=f"dep-{i:02d}", model="m", version=1,
                                                created_by="admin", created_at=now,
                                                updated_at=now))  # fmt: skip


def test_deployments_list_answers_one_page_with_the_total(
    backend: Backend, client: TestClient
) -> None:
    _deployments(backend, 5)
    first = client.get(f"{API}/deployments", params={"limit": 2})
    assert first.status_code == 200, first.text
    assert [d["name"] for d in first.json()] == ["dep-00", "dep-01"]
    assert first.headers["x-total-count"] == "5"
    last = client.get(f"{API}/deployments", params={"limit": 2, "offset": 4}).json()
    assert [d["name"] for d in last] == ["dep-04"]
    assert client.get(f"{API}/deployments", params={"limit": 101}).status_code == 422


def test_sdk_lists_every_deployment_page_by_page(
    backend: Backend,
    http_platform: Callable[[str], Any],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _deployments(backend, 5)
    monkeypatch.setattr("dlplatform.client.serving._DEPLOYMENTS_PAGE", 2)
    listed = http_platform(admin_token).serving.list()
    assert [d.name for d in listed] == [f"dep-{i:02d}" for i in range(5)]


# --- a run's metrics ---------------------------------------------------------------------------


def test_metrics_answer_one_page_and_the_sdk_reads_them_all(
    backend: Backend,
    client: TestClient,
    http_platform: Callable[[str], Any],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _run(backend, "run-m", RunStatus.SUCCEEDED)
    backend.store.log_metrics([MetricPoint(run_id="run-m", key=k, value=float(s), step=s)
                               for k in ("loss", "val_loss") for s in range(12)])  # fmt: skip
    page = client.get(f"{API}/training/jobs/run-m/metrics", params={"limit": 5, "offset": 10})
    assert page.status_code == 200 and page.headers["x-total-count"] == "24"
    assert [(p["key"], p["step"]) for p in page.json()] == [
        ("loss", 10), ("loss", 11), ("val_loss", 0), ("val_loss", 1), ("val_loss", 2)
    ]  # fmt: skip
    one_key = client.get(f"{API}/training/jobs/run-m/metrics", params={"key": "loss"})
    assert one_key.headers["x-total-count"] == "12" and len(one_key.json()) == 12
    too_big = client.get(f"{API}/training/jobs/run-m/metrics", params={"limit": 10_001})
    assert too_big.status_code == 422
    monkeypatch.setattr("dlplatform.client.training.MAX_METRICS_PAGE", 5)
    points = http_platform(admin_token).training.get("run-m").metric_points()
    assert len(points) == 24 and len({(p.key, p.step) for p in points}) == 24


# --- lineage -----------------------------------------------------------------------------------


def test_lineage_answers_one_page_and_the_sdk_reads_them_all(
    backend: Backend,
    client: TestClient,
    http_platform: Callable[[str], Any],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend.store.add_edges([LineageEdge(src="commit:c-0", dst=f"commit:d-{i:02d}",
                                         relation="derived") for i in range(30)])  # fmt: skip
    path = f"{API}/lineage/commit/c-0"
    page = client.get(path, params={"direction": "down", "limit": 10, "offset": 25})
    assert page.status_code == 200, page.text
    assert page.headers["x-total-count"] == "30"
    assert [n["entity"] for n in page.json()] == [f"commit:d-{i}" for i in range(25, 30)]
    assert client.get(path, params={"limit": 1001}).status_code == 422
    monkeypatch.setattr("dlplatform.client.admin._LINEAGE_PAGE", 7)
    nodes = http_platform(admin_token).lineage.downstream("commit:c-0")
    assert [n.entity for n in nodes] == [f"commit:d-{i:02d}" for i in range(30)]


def test_a_lineage_walk_stops_at_its_node_cap(
    backend: Backend, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain = [LineageEdge(src=f"commit:n{i}", dst=f"commit:n{i + 1}", relation="derived")
             for i in range(20)]  # fmt: skip
    fan = [LineageEdge(src="commit:n0", dst=f"commit:f{i:02d}", relation="derived")
           for i in range(40)]  # fmt: skip
    backend.store.add_edges(chain + fan)
    assert len(backend.store.downstream("commit:n0")) == 60
    capped = backend.store.downstream("commit:n0", max_nodes=25)
    assert len(capped) == 25 and all(n.depth == 1 for n in capped)  # nearest first
    monkeypatch.setattr("dlplatform.lineage.MAX_LINEAGE_NODES", 12)
    reply = client.get(f"{API}/lineage/commit/n0", params={"direction": "down"})
    assert reply.headers["x-total-count"] == "12" and len(reply.json()) == 12


# --- job logs by offset ------------------------------------------------------------------------


def test_read_log_range_seeks_and_ends_on_a_whole_character(tmp_path: Path) -> None:
    from dlplatform.train._joblog import LogChunk, read_log_range, slice_log

    log = tmp_path / "job-driver-x.log"
    data = ("a" * 9 + "é" + "b" * 10).encode()  # é is 2 bytes, at 9..10
    log.write_bytes(data)
    assert read_log_range(log, 0, 10) == LogChunk("a" * 9, 9, 21)  # é left for the next read
    assert read_log_range(log, 9, 10) == LogChunk("é" + "b" * 8, 19, 21)
    assert read_log_range(log, 19, 10) == LogChunk("bb", 21, 21)
    assert read_log_range(log, 21, 10) == LogChunk("", 21, 21)
    assert read_log_range(log, 500, 10) == LogChunk("", 500, 21)
    assert slice_log(data, 9, 10) == read_log_range(log, 9, 10)
    with pytest.raises(ValueError):
        read_log_range(log, -1, 10)


class _Scheduler:
    """The scheduler's ``logs`` as the actor answers it, over a real file; records each range."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.asked: list[tuple[int, int]] = []

    def logs(self, run_id: str, offset: int, limit: int) -> Any:
        from dlplatform.train._joblog import read_log_range

        self.asked.append((offset, limit))
        return read_log_range(self.path, offset, limit)


@pytest.fixture
def big_log(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> _Scheduler:
    """A finished job whose driver log is 600 KiB of numbered lines."""
    _run(backend, "run-log", RunStatus.SUCCEEDED, name="dlp-run-log")
    log = tmp_path / "job-driver-dlp-run-log.log"
    log.write_text("".join(f"line {i:06d}\n" for i in range(600 * 1024 // 12)))
    scheduler = _Scheduler(log)
    monkeypatch.setattr("dlplatform.train.service._scheduler", lambda _backend: scheduler)
    return scheduler


def test_logs_route_answers_a_bounded_chunk_from_the_offset(
    big_log: _Scheduler, client: TestClient
) -> None:
    from dlplatform.train.spec import MAX_LOG_CHUNK_BYTES

    path = f"{API}/training/jobs/run-log/logs"
    first = JobLogs.model_validate(client.get(path).json())
    assert first.next_offset == MAX_LOG_CHUNK_BYTES == len(first.text.encode())
    assert not first.final  # the job is final, but this chunk does not reach the end
    size = big_log.path.stat().st_size
    tail = JobLogs.model_validate(client.get(path, params={"offset": size - 12}).json())
    assert tail.text == big_log.path.read_text()[-12:] and tail.final
    small = client.get(path, params={"offset": 12, "limit": 24}).json()
    assert small["text"] == "line 000001\nline 000002\n" and small["next_offset"] == 36
    assert big_log.asked == [(0, MAX_LOG_CHUNK_BYTES), (size - 12, MAX_LOG_CHUNK_BYTES), (12, 24)]
    assert client.get(path, params={"limit": MAX_LOG_CHUNK_BYTES + 1}).status_code == 422


def test_the_scheduler_seeks_in_the_driver_log_on_its_node(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlplatform.train import _joblog
    from dlplatform.train._joblog import LogChunk
    from dlplatform.train.scheduler import _Scheduler as Actor

    log = tmp_path / "job-driver-dlp-run-1.log"
    log.write_bytes(b"x" * 1000)

    class Store:
        def get_run(self, run_id: str) -> Run:
            return Run(id=run_id, owner="a", status=RunStatus.RUNNING, name="dlp-run-1",
                       created_at=utcnow())  # fmt: skip

    class NoWholeLog:
        def get_job_logs(self, submission_id: str) -> str:
            raise AssertionError("read the whole log through Ray's API")

    actor = object.__new__(Actor)
    actor._store, actor._client = Store(), NoWholeLog()
    monkeypatch.setattr("dlplatform.train.scheduler.driver_log_path", lambda sid: log)
    assert actor._logs("run-1", 990, 100) == LogChunk("x" * 10, 1000, 1000)
    monkeypatch.setattr("dlplatform.train.scheduler.driver_log_path", lambda sid: None)

    class WholeLog:
        def get_job_logs(self, submission_id: str) -> str:
            return "abcdef"

    actor._client = WholeLog()  # the driver ran on another node: Ray's API, cut the same way
    assert actor._logs("run-1", 2, 3) == LogChunk("cde", 5, 6)
    import ray

    found = _joblog.driver_log_path("dlp-run-1")
    if ray.is_initialized():  # the session's cluster (integration tests ran first): its logs dir
        assert found is not None and found.name == "job-driver-dlp-run-1.log"
    else:
        assert found is None  # no Ray node in this process


def test_sdk_and_cli_read_every_chunk_of_a_long_log(
    big_log: _Scheduler,
    http_platform: Callable[[str], Any],
    admin_token: str,
    cli_as: Callable[[str], None],
) -> None:
    from dlplatform.train.spec import MAX_LOG_CHUNK_BYTES

    whole = big_log.path.read_text()
    assert http_platform(admin_token).training.get("run-log").logs() == whole
    result = CliRunner().invoke(cli_app, ["train", "logs", "run-log"])
    assert result.exit_code == 0 and result.stdout == whole
    assert len(big_log.asked) >= 6 and max(lim for _, lim in big_log.asked) <= MAX_LOG_CHUNK_BYTES


def test_follow_polls_until_the_job_is_final(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [JobLogs(text="a", offset=0, next_offset=1, final=False),
               JobLogs(text="", offset=1, next_offset=1, final=False),
               JobLogs(text="b", offset=1, next_offset=2, final=True)]  # fmt: skip
    asked: list[int] = []

    def read_logs(self: JobHandle, offset: int = 0) -> JobLogs:
        asked.append(offset)
        return answers[len(asked) - 1]

    naps: list[float] = []
    monkeypatch.setattr(JobHandle, "read_logs", read_logs)
    monkeypatch.setattr("dlplatform.client.training.time.sleep", naps.append)
    handle = JobHandle(None, "run-1")  # type: ignore[arg-type]
    assert [c.text for c in handle.follow_logs(follow=True, poll_s=0.5)] == ["a", "b"]
    assert asked == [0, 1, 1] and naps == [0.5, 0.5]


# --- tuning trial cap --------------------------------------------------------------------------


def test_a_search_over_the_trial_cap_is_refused_with_422(
    backend: Backend, admin_token: str
) -> None:
    training = SPEC.model_dump(mode="json")
    body = {"training": training, "space": {"lr": "uniform(0.01,0.1)"}, "samples": 257}
    headers = {"Authorization": f"Bearer {admin_token}"}
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as c:
        refused = c.post(f"{API}/tuning/jobs", json=body, headers=headers)
    assert refused.status_code == 422, refused.text
    assert "257 trials" in refused.json()["message"] and "at most 256" in refused.json()["message"]
    settings = backend.settings.model_copy(update={"max_tuning_trials": 4})
    small = Backend(store=backend.store, artifacts=backend.artifacts, settings=settings)
    grid = {**body, "space": {"hidden": "grid(8,16,32)"}, "samples": 2}
    with TestClient(create_app(small), base_url="http://127.0.0.1") as c:
        refused = c.post(f"{API}/tuning/jobs", json=grid, headers=headers)
    assert refused.status_code == 422 and "6 trials" in refused.json()["message"]
    assert load_settings().max_tuning_trials == 256


# --- retention of logged prediction inputs -----------------------------------------------------


def _predictions(store: Any, ages_days: list[float]) -> None:
    now = utcnow()
    store.log_predictions([Prediction(request_id=f"r{i}", deployment="d", model="m",
                                              version=1, at=now - timedelta(days=age),
                                              inputs_json=json.dumps([[i]]), outputs_json="[1]",
                                              latency_ms=1.0)
                                   for i, age in enumerate(ages_days)])  # fmt: skip


def test_expired_prediction_inputs_are_blanked_and_the_rest_kept(backend: Backend) -> None:
    from dlplatform.metadata.retention import purge_expired_inputs

    _predictions(backend.store, [40, 31, 29, 0])
    assert purge_expired_inputs(backend.store, 0) == 0  # 0 keeps them forever
    assert purge_expired_inputs(backend.store, 30) == 2
    assert purge_expired_inputs(backend.store, 30) == 0  # idempotent
    inputs = [backend.store.get_prediction(f"r{i}").inputs_json for i in range(4)]
    assert inputs == ["", "", "[[2]]", "[[3]]"]
    kept = backend.store.get_prediction("r0")
    assert kept.outputs_json == "[1]" and kept.version == 1  # feedback and lineage still work
    assert load_settings().prediction_input_retention_days == 30


def test_the_metadata_actor_sweeps_expired_inputs_when_it_starts(tmp_path: Path) -> None:
    from dlplatform.metadata.actor import _MetadataActor
    from dlplatform.metadata.store import MetadataStore

    path = tmp_path / "m.duckdb"
    store = MetadataStore(path)
    _predictions(store, [10, 1])
    store.close()
    actor = _MetadataActor(str(path), 5.0)
    try:
        sweeper = actor._retention
        for _ in range(500):  # the first sweep runs at start, on the sweeper's thread
            if sweeper.purged:
                break
            time.sleep(0.01)
        assert sweeper.purged == 1
        assert actor.call("get_prediction", ("r0",), {})[1].inputs_json == ""
        assert actor.call("get_prediction", ("r1",), {})[1].inputs_json == "[[1]]"
    finally:
        actor._retention.stop()
        actor._store.close()
