"""The workflow engine on the shared Ray cluster: DAG runs, durability across a manager crash,
failures, retries, timeouts, cancel, bad input, registered factories that do not load, and the
HTTP routes."""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import ray

from dlplatform.access import SYSTEM, bootstrap_admin
from dlplatform.errors import AlreadyExists, Conflict, InvalidInput, NotFound
from dlplatform.inprocess import Platform
from dlplatform.metadata import RunStatus
from dlplatform.workflows.manager import MANAGER_NAME

pytestmark = pytest.mark.integration

DEMO = "tests.integration.wf_demo"
DEMO_WORKFLOWS = ("fan", "durable", "failing", "cyclic", "flaky_wf", "sleepy_wf", "forever_wf",
                  "cron_wf", "identity", "not_a_factory", "train_only")  # fmt: skip


@pytest.fixture(autouse=True)
def registered(wf: Platform) -> None:
    """Runs name registered workflows: the demo factories, under their own names."""
    for name in DEMO_WORKFLOWS:
        wf.workflows.register(name, f"{DEMO}:{name}")


def _wait_for_step(p: Platform, run_id: str, step_id: str, status: RunStatus) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        steps = {s.step_id: s for s in p.workflows.status(run_id).steps}
        if steps[step_id].status is status:
            return
        time.sleep(0.1)
    raise AssertionError(f"step {step_id} never became {status.value}")


def test_fan_out_fan_in_run_records_and_persists_every_step(wf: Platform) -> None:
    run = wf.workflows.run("fan", {"n": 4}, run_id="fan-1")
    assert run.id == "fan-1"
    detail = wf.workflows.wait(run.id, timeout_s=120)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    steps = {s.step_id: s for s in detail.steps}
    assert set(steps) == {"source", "square", "square-2", "square-3", "square-4", "total"}
    for s in steps.values():
        assert s.status is RunStatus.SUCCEEDED
        assert s.attempts == 1
        assert s.started_at is not None and s.ended_at is not None and s.ended_at >= s.started_at
        assert s.output_ref and '"sha256"' in s.output_ref
    assert wf.workflows.load_output(run.id, "total") == {"total": 4 * (0 + 1 + 4 + 9), "parts": 4}
    assert wf.workflows.load_output(run.id, "square-3") == 16
    assert [r.id for r in wf.workflows.list()] == ["fan-1"]
    with pytest.raises(AlreadyExists):
        wf.workflows.run("fan", {"n": 2}, run_id="fan-1")
    again = wf.workflows.run("fan", {"n": 4}, run_id="fan-1")  # a repeat of the same start
    assert again.id == "fan-1" and again.status is RunStatus.SUCCEEDED
    assert [r.id for r in wf.workflows.list()] == ["fan-1"]
    with pytest.raises(Conflict, match="already succeeded"):
        wf.workflows.resume("fan-1")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_restarted_manager_continues_its_runs_by_itself(wf: Platform, tmp_path: Path) -> None:
    """The manager's process dies mid-run; Ray restarts it and it continues the run without
    anyone calling resume: the finished step does not run again, the interrupted one does."""
    folder = tmp_path / "counts"
    folder.mkdir()
    run = wf.workflows.run("durable", {"folder": str(folder)})
    _wait_for_step(wf, run.id, "blocker", RunStatus.RUNNING)
    assert wf.workflows.status(run.id).run.status is RunStatus.RUNNING
    started = time.monotonic()
    while not (folder / "blocker.pid").exists():  # the step's code is running
        assert time.monotonic() - started < 60, "the blocker step never started"
        time.sleep(0.1)
    pid = int((folder / "blocker.pid").read_text())

    settings = wf.backend.settings
    manager = ray.get_actor(MANAGER_NAME, namespace=settings.namespace)
    ray.kill(manager, no_restart=False)  # a crash: Ray starts the actor again
    # Ray kills the tasks the dead manager owned; wait for the interrupted step's process to be
    # gone (slow on a loaded machine), or it could still see the go file and finish the step.
    deadline = time.monotonic() + 60
    while _alive(pid):
        assert time.monotonic() < deadline, f"the orphaned step (pid {pid}) was not killed"
        time.sleep(0.2)
    (folder / "go").write_text("go")
    detail = wf.workflows.wait(run.id, timeout_s=180)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    # the finished step ran once; the interrupted one ran again; the last one once
    assert (folder / "first.count").read_text().count("x") == 1
    assert (folder / "blocker.count").read_text().count("x") == 2
    assert (folder / "last.count").read_text().count("x") == 1
    steps = {s.step_id: s for s in detail.steps}
    assert steps["first"].attempts == 1
    assert steps["blocker"].attempts == 2
    assert wf.workflows.load_output(run.id, "blocker").num_rows == 3
    # lineage: the run produced the Run record its last step returned
    produced = [n.entity for n in wf.backend.store.downstream(f"workflow_run:{run.id}")]
    assert f"run:r-{run.id}" in produced


def test_a_train_step_run_again_after_a_manager_crash_trains_once(wf: Platform) -> None:
    """The manager dies while the train step waits for its training job; the restarted manager
    runs the step again, which finds that job by its key and awaits it instead of training
    again (#19)."""
    from dlplatform import data
    from dlplatform.train.scheduler import stop_scheduler

    backend, settings = wf.backend, wf.backend.settings
    x = np.random.default_rng(0).normal(size=(200, 4))
    table = pa.table({**{f"f{i}": x[:, i] for i in range(4)}, "y": (x[:, 0] > 0).astype("int64")})
    data.create_dataset(backend, SYSTEM, "tiny")
    commit = data.push(backend, SYSTEM, "tiny", table)
    try:
        run = wf.workflows.run("train_only", {"dataset": "tiny", "commit": commit.id, "label": "y"})
        deadline = time.monotonic() + 120
        while not (jobs := backend.store.list_runs(kind="train")):
            assert time.monotonic() < deadline, "the train step never submitted its job"
            time.sleep(0.2)
        (job,) = jobs
        assert not job.status.is_final  # it takes seconds to start: the crash comes first
        manager = ray.get_actor(MANAGER_NAME, namespace=settings.namespace)
        ray.kill(manager, no_restart=False)  # a crash: Ray starts the actor again
        detail = wf.workflows.wait(run.id, timeout_s=300)
        assert detail.run.status is RunStatus.SUCCEEDED, detail
        (step,) = detail.steps
        assert step.attempts == 2  # the step ran again ...
        assert [r.id for r in backend.store.list_runs(kind="train")] == [job.id]  # ... one job
        assert wf.workflows.load_output(run.id, "train-model")["run"].id == job.id
    finally:
        stop_scheduler(settings)


def test_a_failing_step_fails_the_run_and_later_steps_do_not_run(wf: Platform) -> None:
    run = wf.workflows.run("failing")
    detail = wf.workflows.wait(run.id, timeout_s=120)
    assert detail.run.status is RunStatus.FAILED
    assert detail.run.error is not None and "explode" in detail.run.error
    steps = {s.step_id: s for s in detail.steps}
    assert steps["source"].status is RunStatus.SUCCEEDED
    assert steps["explode"].status is RunStatus.FAILED
    assert steps["explode"].error is not None
    assert "ValueError: boom: bad value 42" in steps["explode"].error
    assert "Traceback" in steps["explode"].error or "line " in steps["explode"].error
    assert steps["square"].status is RunStatus.QUEUED and steps["square"].attempts == 0
    with pytest.raises(Conflict, match="already ended"):
        wf.workflows.cancel(run.id)
    with pytest.raises(Conflict, match="has no output"):
        wf.workflows.load_output(run.id, "explode")


def test_retries_timeouts_and_cancel(wf: Platform, tmp_path: Path) -> None:
    flaky = wf.workflows.run("flaky_wf", {"folder": str(tmp_path)})
    sleepy = wf.workflows.run("sleepy_wf")
    forever = wf.workflows.run("forever_wf", {"folder": str(tmp_path)})

    detail = wf.workflows.wait(flaky.id, timeout_s=120)
    assert detail.run.status is RunStatus.SUCCEEDED
    assert detail.steps[0].attempts == 3
    assert wf.workflows.load_output(flaky.id, "flaky") == 3

    detail = wf.workflows.wait(sleepy.id, timeout_s=120)
    assert detail.run.status is RunStatus.FAILED
    assert "timed out after 1 s" in (detail.steps[0].error or "")

    _wait_for_step(wf, forever.id, "blocked-forever", RunStatus.RUNNING)
    cancelled = wf.workflows.cancel(forever.id)
    assert cancelled.status is RunStatus.CANCELLED
    assert wf.workflows.status(forever.id).steps[0].status is RunStatus.CANCELLED


def test_bad_input_is_rejected_before_anything_runs(wf: Platform) -> None:
    with pytest.raises(InvalidInput, match="cycle"):
        wf.workflows.run("cyclic")
    for unregistered in ("tests.integration.no_such_module:f", f"{DEMO}:nope", "nope"):
        with pytest.raises(InvalidInput, match="is not registered"):
            wf.workflows.run(unregistered)
    with pytest.raises(InvalidInput, match="does not accept params"):
        wf.workflows.run("fan", {"m": 1})
    with pytest.raises(InvalidInput, match="registered workflow"):
        wf.workflows.run("../../etc/passwd")
    assert wf.workflows.list() == []  # nothing was created
    with pytest.raises(NotFound):
        wf.workflows.resume("no-such-run")
    with pytest.raises(NotFound):
        wf.workflows.cancel("no-such-run")
    with pytest.raises(InvalidInput):
        wf.workflows.schedule("cron_wf", "61 * * * *")
    # the monitor's webhook is checked when the schedule is created (by the manager's build)
    internal = {"deployment": "d", "webhook_url": "http://169.254.169.254/latest/meta-data/"}
    with pytest.raises(InvalidInput, match="link-local address"):
        wf.workflows.schedule("monitor", "*/15 * * * *", internal)
    assert wf.workflows.triggers() == []


def test_a_registered_factory_that_does_not_load_fails_its_run_with_the_reason(
    wf: Platform,
) -> None:
    """The manager imports registered factories; one whose import calls sys.exit() fails its
    run (and only its run: the manager keeps working)."""
    wf.workflows.register("broken", "tests.integration.wf_broken:flow")
    run = wf.workflows.run("broken", run_id="broken-1")
    assert (run.status, run.workflow) == (RunStatus.FAILED, "broken")
    assert "could not be loaded" in (run.error or "") and "SystemExit: 3" in (run.error or "")
    run = wf.workflows.run("not_a_factory")
    assert run.status is RunStatus.FAILED and "not a workflow factory" in (run.error or "")
    with pytest.raises(InvalidInput, match="could not be loaded"):
        wf.workflows.resume("broken-1")
    with pytest.raises(InvalidInput, match="could not be loaded"):
        wf.workflows.schedule("broken", "* * * * *")
    done = wf.workflows.wait(wf.workflows.run("fan", {"n": 1}).id, timeout_s=120)
    assert done.run.status is RunStatus.SUCCEEDED, done


def test_http_routes(wf: Platform) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from dlplatform.api.app import create_app

    token = bootstrap_admin(wf.backend.store)
    with TestClient(create_app(wf.backend), base_url="http://127.0.0.1") as client:
        _check_routes(client, {"Authorization": f"Bearer {token}"})


def _check_routes(client: Any, auth: dict[str, str]) -> None:
    assert client.get("/api/v1/workflows/runs").status_code == 401

    r = client.post(
        "/api/v1/workflows/runs",
        json={"workflow": "fan", "params": {"n": 2}, "run_id": "http-1"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    assert r.json()["owner"] == "admin"
    deadline = time.monotonic() + 120
    while True:
        r = client.get("/api/v1/workflows/runs/http-1", headers=auth)
        assert r.status_code == 200
        body = r.json()
        if body["run"]["status"] not in {"QUEUED", "RUNNING"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert body["run"]["status"] == "SUCCEEDED"
    assert {s["step_id"] for s in body["steps"]} == {"source", "square", "square-2", "total"}
    assert [x["id"] for x in client.get("/api/v1/workflows/runs", headers=auth).json()] == [
        "http-1"
    ]

    r = client.post("/api/v1/workflows/runs/http-1/cancel", headers=auth)
    assert r.status_code == 409 and r.json()["error"] == "conflict"
    r = client.post("/api/v1/workflows/runs/nope/resume", headers=auth)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = client.get("/api/v1/workflows/runs/nope", headers=auth)
    assert r.status_code == 404
    r = client.post("/api/v1/workflows/runs", json={"workflow": "not a path"}, headers=auth)
    assert r.status_code == 422
    r = client.post("/api/v1/workflows/runs", json={"workflow": "cyclic"}, headers=auth)
    assert r.status_code == 422 and "cycle" in r.json()["message"]
    r = client.post(
        "/api/v1/workflows/triggers",
        json={"workflow": "cron_wf", "cron": "not cron"},
        headers=auth,
    )
    assert r.status_code == 422 and "cron" in r.json()["message"]


def test_step_code_acts_as_the_runs_owner_with_a_token_that_ends_with_the_run(
    wf: Platform,
) -> None:
    from dlplatform.access import Principal
    from dlplatform.metadata import Role, User
    from dlplatform.metadata.records import utcnow

    store = wf.backend.store
    alice = store.create_user(User(name="alice-wf", role=Role.DATA_SCIENTIST, created_at=utcnow()))
    as_alice = Platform(wf.backend, Principal.of(alice))
    run = as_alice.workflows.run(f"{DEMO}:identity")
    detail = as_alice.workflows.wait(run.id, timeout_s=120)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    (step,) = detail.steps
    seen = as_alice.workflows.load_output(run.id, step.step_id)
    assert seen == {
        "url": wf.backend.settings.internal_gateway_url,
        "user": "alice-wf",
        "role": "data-scientist",
    }
    (token,) = store.list_tokens(run_id=run.id)
    assert token.user == "alice-wf" and token.revoked_at is not None
    # A run of the platform's own gives its steps no credentials at all (not the admin's).
    system_run = wf.workflows.run("identity")
    done = wf.workflows.wait(system_run.id, timeout_s=120)
    assert done.run.status is RunStatus.SUCCEEDED, done
    assert wf.workflows.load_output(system_run.id, done.steps[0].step_id)["user"] == ""
    assert store.list_tokens(run_id=system_run.id) == []
