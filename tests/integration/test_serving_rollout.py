"""Progressive delivery on real Ray Serve under a real concurrent HTTP client: a version whose
predictions are wrong against the feedback labels the test sends is rolled back with zero failed
requests and an alert, and a good version is promoted through every step (its driver killed and
restarted by Ray mid-rollout: it goes on from the store)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fixtures_serve import ServingEnv, register_mlp, serve_url, serving_env  # noqa: F401

from dlplatform import serve as serving
from dlplatform.access import SYSTEM
from dlplatform.errors import NotFound
from dlplatform.serve import FeedbackRequest, RolloutSpec, RolloutStatus

pytestmark = pytest.mark.integration

_RNG = random.Random(7)
ROWS = [[round(_RNG.uniform(-3, 3), 2) for _ in range(4)] for _ in range(24)]
"""Inputs the client cycles through; untrained MLPs of seeds 1 and 4 disagree on 21 of them."""
FAST = {"min_dwell_s": 1, "min_requests": 30, "min_samples": 30, "latency_tolerance": 1.0,
        "latency_slack_ms": 50}  # fmt: skip
"""Small numbers for a test (a shared 2-core machine: a generous latency allowance)."""


@pytest.fixture(scope="module")
def env(serving_env: ServingEnv) -> Iterator[ServingEnv]:  # noqa: F811
    from dlplatform.serve._rollout_driver import ensure_driver, stop_driver

    ensure_driver(serving_env.backend.settings)  # starts while the test deploys its model
    yield serving_env
    stop_driver(serving_env.backend.settings)


class Traffic:
    """A real client posting ``ROWS`` in turn to a deployment, from its own thread; with
    ``truth`` set, a second thread sends the true label of each answered request."""

    def __init__(self, env: ServingEnv, name: str, truth: dict[int, Any] | None = None) -> None:
        self.env, self.name, self.truth = env, name, truth
        self.answers: list[tuple[str, int, int, Any]] = []  # request id, row, version, output
        self.failures: list[str] = []
        self.labelled = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._post, daemon=True)]
        if truth is not None:
            self._threads.append(threading.Thread(target=self._label, daemon=True))

    def __enter__(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _post(self) -> None:
        headers = {"Authorization": f"Bearer {self.env.app_token}"}
        with httpx.Client(base_url=self.env.url, timeout=30) as c:
            i = 0
            while not self._stop.is_set():
                row = i % len(ROWS)
                i += 1
                try:
                    r = c.post(f"/models/{self.name}", json={"inputs": [ROWS[row]]},
                               headers=headers)  # fmt: skip
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                self.answers.append((body["request_id"], row, body["version"], body["outputs"][0]))
                time.sleep(0.01)

    def _label(self) -> None:
        assert self.truth is not None
        done = 0
        while not self._stop.is_set():
            if done >= len(self.answers):
                time.sleep(0.1)
                continue
            request_id, row, _, _ = self.answers[done]
            try:
                serving.feedback(self.env.backend, SYSTEM,
                                 FeedbackRequest(request_id=request_id, label=self.truth[row]))  # fmt: skip
            except NotFound:  # not flushed to the log yet (about a second)
                time.sleep(0.2)
                continue
            done += 1
            self.labelled = done

    def wait_for(self, count: int, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.answers) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.answers) >= count, (len(self.answers), self.failures[:3])


def _wait_status(
    env: ServingEnv, name: str, done: set[str], timeout_s: float = 120
) -> RolloutStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        status = serving.rollout_status(env.backend, SYSTEM, name)
        if status.status in done or time.monotonic() > deadline:
            return status
        time.sleep(0.2)


def test_a_bad_version_is_rolled_back_and_a_good_one_promoted_across_a_driver_restart(
    env: ServingEnv,
) -> None:
    """One deployment under one client: a version wrong against the feedback labels the test
    sends is rolled back at its first step with no failed request and an alert; then a good
    version is promoted through every step, though its driver is killed in the first one."""
    import ray

    from dlplatform.serve._rollout_driver import DRIVER_NAME

    store = env.backend.store
    name = f"ro-{uuid.uuid4().hex[:6]}"
    v1 = register_mlp(env.backend, name, seed=1)
    bad = register_mlp(env.backend, name, seed=4)  # disagrees with v1 on most of ROWS
    good = register_mlp(env.backend, name, seed=1)  # answers as v1 does
    serving.deploy(env.backend, SYSTEM, f"{name}@{v1.version}")
    # the truth is what v1 answers: v1 is right on every row, ``bad`` wrong where it differs
    truth = {
        i: serving.predict(env.backend, SYSTEM, name, [r]).outputs[0] for i, r in enumerate(ROWS)
    }
    spec = RolloutSpec(steps=[50, 100], min_labels=30, **FAST)
    ended = {"PROMOTED", "ROLLED_BACK", "ABORTED"}
    with Traffic(env, name, truth) as traffic:
        while traffic.labelled < 40:  # the current version's labelled baseline
            assert not traffic.failures, traffic.failures[:3]
            time.sleep(0.1)
        serving.start_rollout(env.backend, SYSTEM, name, bad.version, spec)
        rolled_back = _wait_status(env, name, ended)
        answered = len(traffic.answers)
        traffic.wait_for(answered + 30)  # the current version answers alone again

        started = serving.start_rollout(env.backend, SYSTEM, name, good.version, spec)
        assert (started.status, started.percent, started.from_version) == ("RUNNING", 50, 1)
        # the driver dies once the first step's traffic is on: Ray restarts it, and it goes on
        # from the step the store records
        deadline = time.monotonic() + 60
        mid = serving.rollout_status(env.backend, SYSTEM, name)
        while not any(e.kind == "traffic" for e in mid.events) and time.monotonic() < deadline:
            time.sleep(0.1)
            mid = serving.rollout_status(env.backend, SYSTEM, name)
        assert (mid.id, mid.status, mid.step) == (started.id, "RUNNING", 0)
        driver = ray.get_actor(DRIVER_NAME, namespace=env.backend.settings.namespace)
        ray.kill(driver, no_restart=False)
        promoted = _wait_status(env, name, ended)
        promoted_at = len(traffic.answers)
        traffic.wait_for(promoted_at + 20)  # still answered after the promotion
    assert traffic.failures == []

    # the bad version: rolled back at its first step, on the accuracy test, with an alert
    assert rolled_back.status == "ROLLED_BACK", rolled_back.model_dump_json(indent=1)
    last = rolled_back.events[-1]
    assert (last.kind, last.percent, last.decision) == ("rollback", 50, "fail")
    checks = {c["name"]: c for c in last.numbers["checks"]}
    assert checks["wrong_rate"]["verdict"] == "fail" and checks["wrong_rate"]["new_n"] >= 30
    assert checks["error_rate"]["verdict"] == "pass" and "wrong_rate" in rolled_back.reason
    assert {v for _, _, v, _ in traffic.answers[answered:promoted_at]} >= {v1.version}
    alerts = store.list_alerts()
    assert any(a.kind == "rollout" and a.target == f"deployment:{name}" for a in alerts)
    wrong = [out != truth[row] for _, row, v, out in traffic.answers if v == bad.version]
    assert sum(wrong) > len(wrong) / 2  # the version really was worse

    # the good version: promoted through every step
    assert promoted.status == "PROMOTED", promoted.model_dump_json(indent=1)
    assert [(e.kind, e.percent, e.decision) for e in promoted.events] == [
        ("start", 0, ""), ("traffic", 50, ""), ("step", 50, "pass"), ("traffic", 100, ""),
        ("promote", 100, "pass"),
    ]  # fmt: skip
    step = {c["name"]: c for c in promoted.events[2].numbers["checks"]}
    assert {c["verdict"] for c in step.values()} == {"pass"} and step["wrong_rate"]["new_n"] >= 30
    assert store.resolve_alias(name, "production") == good.version
    assert serving.get_deployment(env.backend, SYSTEM, name).traffic == {str(good.version): 100}
    assert {v for _, _, v, _ in traffic.answers[-20:]} == {good.version}
    for action in ("rollout.start", "rollout.step", "rollout.rollback", "rollout.promote"):
        targets = {a.target for a in store.list_audit(action=action, limit=20)}
        assert f"deployment:{name}" in targets, action
    relations = {(e.relation, e.src) for e in store.edges_of([f"deployment:{name}"])}
    assert ("promoted", f"model_version:{name}@{good.version}") in relations
    assert ("rolled_back", f"model_version:{name}@{bad.version}") in relations
