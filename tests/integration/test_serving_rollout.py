"""Progressive delivery on real Ray Serve under a real concurrent HTTP client: a version whose
predictions are wrong against the feedback labels the test sends is rolled back with zero failed
requests and an alert, and a good version is promoted through every step (its driver killed and
restarted by Ray mid-rollout: it goes on from the store); a rollout goes on across a restart of
the gateway, and one aborted by hand sends every request back to the current version at once."""

from __future__ import annotations

import contextlib
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
        "latency_slack_ms": 250}  # fmt: skip
"""Small numbers for a test (a shared 2-core machine: a generous latency allowance; the
latency test itself is checked in tests/unit/serve/test_serve_rollout.py)."""


@pytest.fixture(scope="module")
def env(serving_env: ServingEnv) -> Iterator[ServingEnv]:  # noqa: F811
    from dlplatform.serve._rollout_driver import stop_driver
    from dlplatform.serve.rollout import ensure_driver

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
    final = serving.get_deployment(env.backend, SYSTEM, name)
    assert final.traffic == {str(good.version): 100}
    assert final.standby == [v1.version]  # held by every replica: a move back is in place
    # the rollback and the promotion moved no replica: weights changed in place
    moves = [a.detail for a in store.list_audit(action="deploy.traffic", limit=50)
             if a.target == f"deployment:{name}"]  # fmt: skip
    assert f"{v1.version}=100 (in place)" in moves and f"{good.version}=100 (in place)" in moves
    assert {v for _, _, v, _ in traffic.answers[-20:]} == {good.version}
    for action in ("rollout.start", "rollout.step", "rollout.rollback", "rollout.promote"):
        targets = {a.target for a in store.list_audit(action=action, limit=20)}
        assert f"deployment:{name}" in targets, action
    relations = {(e.relation, e.src) for e in store.edges_of([f"deployment:{name}"])}
    assert ("promoted", f"model_version:{name}@{good.version}") in relations
    assert ("rolled_back", f"model_version:{name}@{bad.version}") in relations


def test_a_rollout_goes_on_across_a_gateway_restart_and_an_abort_moves_traffic_back_at_once(
    gateway_url: str, gateway_admin_token: str, gateway_backend: Any
) -> None:
    """Started over HTTP, a rollout is driven by the platform, not by the gateway: the gateway
    is deleted and deployed again mid-rollout, and the new one reports the promotion. A second
    rollout aborted over HTTP at its first step: every later request is answered by the current
    version (an in-place change of weights), with no failed request throughout."""
    from types import SimpleNamespace

    from ray import serve

    from dlplatform.api.gateway import GATEWAY_APP, deploy_gateway
    from dlplatform.runtime import wait_healthy
    from dlplatform.serve._rollout_driver import stop_driver

    backend = gateway_backend
    name = f"rg-{uuid.uuid4().hex[:6]}"
    v1, v2, v3 = (register_mlp(backend, name, seed=1) for _ in range(3))
    serving.deploy(backend, SYSTEM, f"{name}@{v1.version}")
    client = SimpleNamespace(url=gateway_url, app_token=gateway_admin_token, backend=backend)
    api = httpx.Client(base_url=f"{gateway_url}/api/v1", timeout=120,
                       headers={"Authorization": f"Bearer {gateway_admin_token}"})  # fmt: skip

    def events(kind: str) -> list[Any]:
        status = serving.rollout_status(backend, SYSTEM, name)
        return [e for e in status.events if e.kind == kind]

    def until(check: Any, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            assert time.monotonic() < deadline, serving.rollout_status(backend, SYSTEM, name)
            time.sleep(0.1)

    try:
        with api, Traffic(client, name) as traffic:  # type: ignore[arg-type]
            traffic.wait_for(20)
            spec = {"steps": [50, 100], **FAST}
            r = api.post(
                f"/deployments/{name}/rollouts", json={"version": v2.version, "spec": spec}
            )
            assert r.status_code == 201, r.text
            until(lambda: bool(events("traffic")))
            serve.delete(GATEWAY_APP)  # the gateway goes away in mid-rollout ...
            until(lambda: len(events("traffic")) == 2)  # ... and the rollout goes on without it
            deploy_gateway(backend.settings)
            wait_healthy(gateway_url)
            until(lambda: api.get(f"/deployments/{name}/rollout").json()["status"] != "RUNNING")
            promoted = api.get(f"/deployments/{name}/rollout").json()
            assert promoted["status"] == "PROMOTED", promoted

            slow = {**spec, "min_dwell_s": 600}  # it stays in its first step until aborted
            r = api.post(
                f"/deployments/{name}/rollouts", json={"version": v3.version, "spec": slow}
            )
            assert r.status_code == 201, r.text
            until(lambda: bool(events("traffic")))  # v3 loaded and taking its share
            until(lambda: any(v == v3.version for _, _, v, _ in traffic.answers[-40:]))
            r = api.post(f"/deployments/{name}/rollout/abort")
            assert r.status_code == 200 and r.json()["status"] == "ABORTED", r.text
            aborted_at = len(traffic.answers)
            traffic.wait_for(aborted_at + 30)
            again = api.post(f"/deployments/{name}/rollout/abort")
            assert again.status_code == 409 and "has ended" in again.json()["message"]
            info = api.get(f"/deployments/{name}").json()
        assert traffic.failures == []
        # requests in flight when the abort answered may still be v3's; none after them
        assert {v for _, _, v, _ in traffic.answers[aborted_at + 4 :]} == {v2.version}
        assert (info["traffic"], info["standby"]) == ({str(v2.version): 100}, [v3.version])
        aborts = [a for a in backend.store.list_audit(action="rollout.abort", limit=20)
                  if a.target == f"deployment:{name}"]  # fmt: skip
        assert aborts and aborts[0].actor == "admin"
        # usage follows the replicas Serve runs: a figure that differs from what the driver
        # recorded last opens a new interval with what the deployment holds now
        from dlplatform.serve.service import account_replicas

        held = {name: (99.0, 0)}
        assert account_replicas(backend, held) >= 1 and held[name][0] == 0.25 * info["replicas"]
        latest = backend.store.usage_of("deployment", name)[-1]
        assert (latest.end_at, latest.cpus) == (None, held[name][0])
        # and the memory its replicas hold on this node, sampled from /proc
        assert held[name][1] > 10 * 2**20 and latest.peak_mem_bytes == held[name][1]
    finally:
        with contextlib.suppress(Exception):
            serving.undeploy(backend, SYSTEM, name)
        stop_driver(backend.settings)
