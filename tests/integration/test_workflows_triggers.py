"""Workflow triggers on the shared Ray cluster: a real dataset commit starts a real run; a due
cron schedule fires through the manager (clock injected); registrations persist."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
import ray

from dlplatform import data
from dlplatform.access import SYSTEM
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.inprocess import Platform
from dlplatform.metadata import RunStatus, WorkflowRun
from dlplatform.workflows import get_manager, stop_manager

pytestmark = pytest.mark.integration

DEMO = "tests.integration.wf_demo"


@pytest.fixture(autouse=True)
def registered(wf: Platform) -> None:
    """Triggers name registered workflows: the demo factories, under their own names."""
    for name in ("commit_wf", "cron_wf"):
        wf.workflows.register(name, f"{DEMO}:{name}")


def _runs_of(p: Platform, workflow: str, n: int, timeout_s: float = 60) -> list[WorkflowRun]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = [r for r in p.workflows.list() if r.workflow == workflow]
        if len(runs) >= n:
            return runs
        time.sleep(0.2)
    raise AssertionError(f"expected {n} runs of {workflow}, got {len(runs)}")


def test_a_dataset_commit_starts_a_run_with_the_commit(wf: Platform) -> None:
    backend = wf.backend
    data.create_dataset(backend, SYSTEM, "iris")
    first = data.push(backend, SYSTEM, "iris", pa.table({"x": [1.0, 2.0]}))
    trig = wf.workflows.on_commit("iris", "commit_wf", {"tag": "t"})
    assert trig.kind == "commit" and trig.last_commit == first.id
    assert [t.id for t in wf.workflows.triggers()] == [trig.id]
    time.sleep(2.5)  # the manager polls every second: the old commit starts nothing
    assert [r for r in wf.workflows.list() if r.workflow == "commit_wf"] == []

    second = data.push(backend, SYSTEM, "iris", pa.table({"x": [3.0]}))
    (run,) = _runs_of(wf, "commit_wf", 1)
    detail = wf.workflows.wait(run.id, timeout_s=120)
    assert detail.run.status is RunStatus.SUCCEEDED
    assert wf.workflows.load_output(run.id, "echo") == {
        "dataset": "iris",
        "commit": second.id,
        "tag": "t",
    }
    upstream = [n.entity for n in backend.store.upstream(f"workflow_run:{run.id}")]
    assert f"commit:{second.id}" in upstream
    assert backend.store.get_workflow_trigger(trig.id).last_commit == second.id

    with pytest.raises(NotFound):
        wf.workflows.on_commit("no-such-dataset", "commit_wf")
    with pytest.raises(InvalidInput, match="set by the commit trigger"):
        wf.workflows.on_commit("iris", "commit_wf", {"commit": "x"})
    with pytest.raises(InvalidInput, match="is not registered"):
        wf.workflows.on_commit("iris", "tests.integration.nothing_here:f")


def test_a_due_cron_schedule_fires_once_and_survives_a_manager_restart(wf: Platform) -> None:
    settings = wf.backend.settings
    trig = wf.workflows.schedule("cron_wf", "0 3 * * *", {"tag": "nightly"})
    assert trig.cron == "0 3 * * *"
    created = trig.created_at
    # the minute before the first 03:00 after the schedule was made (today's, when it was made
    # before 03:00 UTC: the test failed when run between midnight and 03:00)
    first = created.replace(hour=3, minute=0, second=0, microsecond=0)
    first += timedelta(days=1) if first <= created else timedelta(0)
    not_yet = first - timedelta(minutes=1)
    assert get_manager(settings).tick(not_yet) == []
    # the manager goes away; the registration is a row in the metadata store
    stop_manager(settings)
    get_manager(settings)
    due = not_yet + timedelta(days=3, minutes=2)  # three nightly ticks missed: one run
    started = get_manager(settings).tick(due)
    assert len(started) == 1
    assert get_manager(settings).tick(due + timedelta(seconds=30)) == []
    detail = wf.workflows.wait(started[0], timeout_s=120)
    assert detail.run.status is RunStatus.SUCCEEDED
    assert wf.workflows.load_output(started[0], "echo") == {"tag": "nightly"}
    assert wf.backend.store.get_workflow_trigger(trig.id).last_fired_at == due

    wf.workflows.delete_trigger(trig.id)
    assert wf.workflows.triggers() == []
    with pytest.raises(InvalidInput, match="never fires"):
        wf.workflows.schedule("cron_wf", "0 0 30 2 *")


def test_the_manager_loop_fires_an_every_minute_schedule(wf: Platform) -> None:
    """No injected clock: a schedule registered more than a minute ago is due now."""
    settings = wf.backend.settings
    trig = wf.workflows.schedule("cron_wf", "* * * * *", {"tag": "loop"})
    # pretend it was registered 2 minutes ago (as if the platform had been down)
    store = wf.backend.store
    store.update_workflow_trigger(
        trig.id, last_fired_at=datetime.now(timezone.utc) - timedelta(minutes=2)
    )
    get_manager(settings)
    (run,) = _runs_of(wf, "cron_wf", 1, timeout_s=30)
    assert wf.workflows.wait(run.id, timeout_s=120).run.status is RunStatus.SUCCEEDED
    assert ray.is_initialized()
