"""A run's startup breakdown, step-level progress, the job watch (long poll) and the job log's
noise filter, without Ray: a real DuckDB store, the gateway in-process, the CLI over HTTP."""

from __future__ import annotations

import io
import json
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixtures_serve import LocalStoreClient

from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec, _startup, runner
from dlplatform.train._joblog import NoiseFilter
from dlplatform.train.spec import epoch_table

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOISE = (
    "\x1b[33m(raylet)\x1b[0m WARNING: 12 PYTHON worker processes have been started on node: "
    "abc with address: 10.0.0.1, which is 6x the maximum expected startup concurrency (2)."
)


def _running(store: MetadataStore, run_id: str = "run-live", **fields: Any) -> Run:
    spec = TrainingJobSpec(dataset="digits@c-1", label="target")
    run = Run(id=run_id, owner="admin", status=RunStatus.RUNNING, spec_json=spec.model_dump_json(),
              created_at=utcnow(), **fields)  # fmt: skip
    return store.create_run(run)


# --- the breakdown ---------------------------------------------------------------------------


def test_the_parts_add_up_to_submit_to_the_last_mark() -> None:
    marks = {"submitted": 100.0, "admitted": 100.5, "driver_started": 103.0,
             "worker_started": 102.0,  # a pooled process, started before this run: counts 0
             "loop_started": 110.0, "first_step": 111.25}  # fmt: skip
    parts = _startup.breakdown(marks)
    assert list(parts) == ["admitted", "driver_started", "worker_started", "loop_started",
                           "first_step", "total"]  # fmt: skip
    assert parts["worker_started"] == 0.0 and parts["loop_started"] == 7.0
    assert sum(v for k, v in parts.items() if k != "total") == pytest.approx(parts["total"])
    assert parts["total"] == pytest.approx(11.25)
    assert _startup.breakdown({"admitted": 1.0}) == {}  # no submit mark: nothing to measure from
    assert _startup.parse("not json") == {} and _startup.parse(None) == {}
    assert json.loads(_startup.dump({"submitted": 1.0, "bogus": 2.0})) == {"submitted": 1.0}


def test_process_start_time_is_this_processes() -> None:
    started = _startup.process_start_time()
    assert started is not None and time.time() - 24 * 3600 < started <= time.time()


# --- step-level progress from rank 0 ---------------------------------------------------------


def test_progress_reports_startup_once_and_steps_at_most_once_a_second(
    store: MetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _running(store)
    clock = {"now": 1000.0}
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock["now"])
    reporter = runner.ProgressReporter(LocalStoreClient(store), "run-live",
                                       {"submitted": time.time() - 5, "fit_started": time.time()})  # fmt: skip
    reporter.worker_ready(time.time() - 1, time.time())
    reporter.mark("first_batch")
    reporter.step(0, loss_sum=20.0, samples=10, world=2)  # the first step: reported at once
    for _ in range(50):  # 0.5 s of steps: none reported
        clock["now"] += 0.01
        reporter.step(0, loss_sum=10.0, samples=10, world=2)
    clock["now"] += 0.6
    reporter.step(1, loss_sum=10.0, samples=10, world=2)
    points = store.get_metrics("run-live")
    loss = sorted((p for p in points if p.key == "step/loss"), key=lambda p: p.step)
    assert [p.step for p in loss] == [1, 52] and loss[0].value == pytest.approx(2.0)
    assert loss[1].value == pytest.approx(1.0)  # the mean of the 51 steps since the first
    rate = next(p for p in points if p.key == "step/samples_per_s" and p.step == 52)
    assert rate.value == pytest.approx(51 * 20 / 1.1, rel=0.01)  # both ranks' samples
    assert epoch_table(points) == []  # step-level keys are not epochs
    marks = _startup.parse(store.get_run("run-live").startup_json)
    assert {"worker_started", "loop_started", "model_ready", "first_batch",
            "first_step"} <= set(marks)  # fmt: skip
    parts = _startup.breakdown(marks)
    assert parts["total"] == pytest.approx(marks["first_step"] - marks["submitted"], abs=0.01)


def test_a_restarted_worker_group_keeps_the_first_startup(store: MetadataStore) -> None:
    _running(store, startup_json=_startup.dump({"submitted": 1.0, "first_step": 9.0}))
    reporter = runner.ProgressReporter(LocalStoreClient(store), "run-live", {})
    reporter.worker_ready(time.time(), time.time())
    reporter.step(3, loss_sum=1.0, samples=1, world=1)
    assert _startup.parse(store.get_run("run-live").startup_json) == {
        "submitted": 1.0, "first_step": 9.0}  # fmt: skip
    assert [p.key for p in store.get_metrics("run-live")] != []  # progress still reported


def test_rows_are_dealt_evenly_to_ranks() -> None:
    rows = {"x": np.arange(11).reshape(11, 1), "y": np.arange(11)}
    equal = runner.rank_rows(rows, 3, equal=True)
    assert [list(s["y"]) for s in equal] == [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    assert all(len(s["x"]) == 3 for s in equal)
    every = runner.rank_rows(rows, 3, equal=False)  # validation: every row counts
    assert sorted(int(v) for s in every for v in s["y"]) == list(range(11))


# --- the watch: a follower learns of a change at once -----------------------------------------


def test_the_store_wakes_a_follower_on_metrics_and_status(store: MetadataStore) -> None:
    _running(store)
    known = store.run_version("run-live")
    t0 = time.monotonic()
    assert store.wait_run_change("run-live", known, 0.2) == known  # nothing changed: timeout
    assert time.monotonic() - t0 >= 0.19
    assert store.wait_run_change("run-live", None, 5) == known  # unknown: answered at once
    answers: list[tuple[int, float]] = []
    waiter = threading.Thread(
        target=lambda: answers.append((store.wait_run_change("run-live", known, 30),
                                       time.monotonic())))  # fmt: skip
    waiter.start()
    time.sleep(0.2)
    sent = time.monotonic()
    store.log_metric_batch(["run-live"], ["loss"], [0.5], [0])
    waiter.join(10)
    assert answers and answers[0][0] != known and answers[0][1] - sent < 1.0
    after_metric = answers[0][0]
    store.update_run("run-live", status=RunStatus.SUCCEEDED)
    assert store.wait_run_change("run-live", after_metric, 5) != after_metric
    other = store.run_version("run-other")
    store.log_metric_batch(["run-live"], ["loss"], [0.4], [1])
    assert store.run_version("run-other") == other  # another run's followers sleep on


def test_watch_route_answers_on_change(
    backend: Backend, client: TestClient, admin_token: str
) -> None:
    _running(backend.store)
    admin = {"Authorization": f"Bearer {admin_token}"}
    first = client.get("/api/v1/training/jobs/run-live/watch", headers=admin)
    assert first.status_code == 200
    known = first.json()["version"]
    timer = threading.Timer(0.3, lambda: backend.store.log_metric_batch(
        ["run-live"], ["loss"], [0.5], [0]))  # fmt: skip
    timer.start()
    t0 = time.monotonic()
    changed = client.get("/api/v1/training/jobs/run-live/watch",
                         params={"known": known, "timeout_s": 20}, headers=admin)  # fmt: skip
    assert changed.status_code == 200 and changed.json()["version"] != known
    assert time.monotonic() - t0 < 5
    idle = client.get("/api/v1/training/jobs/run-live/watch",
                      params={"known": changed.json()["version"], "timeout_s": 0.2},
                      headers=admin)  # fmt: skip
    assert idle.json() == changed.json()  # nothing new: the same version after the timeout
    assert client.get("/api/v1/training/jobs/run-live/watch").status_code == 401
    assert client.get("/api/v1/training/jobs/run-nope/watch", headers=admin).status_code == 404
    too_long = client.get("/api/v1/training/jobs/run-live/watch", params={"timeout_s": 3600},
                          headers=admin)  # fmt: skip
    assert too_long.status_code == 422


def test_sdk_wait_follows_the_watch_not_a_timer(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    _running(backend.store)
    seen: list[tuple[str, int, float]] = []
    job = http_platform(admin_token).training.get("run-live")

    def work() -> None:
        for epoch in range(3):
            time.sleep(0.3)
            backend.store.log_metric_batch(["run-live"], ["epoch_time_s"], [0.3], [epoch])
        backend.store.update_run("run-live", status=RunStatus.SUCCEEDED, ended_at=utcnow())

    worker = threading.Thread(target=work)
    worker.start()
    run = job.wait(timeout_s=30, on_update=lambda j, points: seen.append(
        (j.status, len(epoch_table(points)), time.monotonic())))  # fmt: skip
    worker.join()
    assert run.status is RunStatus.SUCCEEDED
    epochs = [n for _, n, _ in seen]
    assert epochs == sorted(epochs) and set(epochs) >= {0, 1, 2, 3}  # each epoch seen as it came
    assert len(seen) <= 12  # woken by changes, not polled many times over


def test_train_show_prints_the_startup_breakdown(backend: Backend, run: Callable[..., Any]) -> None:
    marks = {"submitted": 100.0, "admitted": 100.2, "driver_started": 104.0, "first_step": 130.5}
    _running(backend.store, startup_json=_startup.dump(marks))
    backend.store.log_metric_batch(["run-live"] * 2, ["loss", "epoch_time_s"], [0.25, 1.0], [0, 0])
    shown = run("train", "show", "run-live")
    assert shown.exit_code == 0, shown.output
    assert "startup" in shown.output and "driver_started" in shown.output
    assert "30.50" in shown.output and "26.50" in shown.output  # total; driver start → first step
    assert "epoch 0 loss=0.25" in shown.output
    as_json = json.loads(run("train", "show", "run-live", "--json").output)
    assert as_json["startup"]["total"] == pytest.approx(30.5)


# --- the job log a user reads ----------------------------------------------------------------


def test_ray_noise_goes_to_the_platform_log(tmp_path: Path) -> None:
    out = io.StringIO()
    noise = tmp_path / "logs" / "ray-noise.log"
    stream = NoiseFilter(out, noise, "run-1")
    stream.write("epoch 0 loss=0.5\n" + NOISE + "\n")
    stream.write("(RayTrainWorker pid=1) Traceback (most recent call last):\n")
    stream.write("a partial ")
    assert "a partial" not in out.getvalue()  # a line waits for its end
    stream.write("line\n")
    stream.flush()
    kept = out.getvalue()
    assert "epoch 0 loss=0.5" in kept and "Traceback" in kept and "a partial line" in kept
    assert "worker processes have been started" not in kept
    assert noise.read_text().startswith("run-1 ") and "6x the maximum" in noise.read_text()
