"""Progressive delivery without Ray: the statistics, the spec, the store's rollout tables and
per-version windows, the refusals of ``start_rollout`` over HTTP and the CLI, and ``advance``
where it needs no traffic move (promotion at the last step, aborts)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fixtures_serve import register_mlp
from starlette.testclient import TestClient
from typer.testing import CliRunner, Result

from dlplatform.access import SYSTEM
from dlplatform.cli import app
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput
from dlplatform.metadata import Deployment, Feedback, MetadataStore
from dlplatform.metadata.records import Rollout, RolloutEvent, VersionWindow, utcnow
from dlplatform.serve import _stats
from dlplatform.serve.rollout import advance, judge, start_rollout
from dlplatform.serve.spec import RolloutSpec, rollout_spec


def test_two_proportion_test_latency_check_and_label_scoring() -> None:
    worse = _stats.worse_rate_test("error_rate", 20, 100, 2, 100, 0.05, 30)
    assert worse.verdict == "fail" and worse.p_value is not None and worse.p_value < 0.001
    assert "higher than" in worse.detail
    same = _stats.worse_rate_test("error_rate", 2, 100, 2, 100, 0.05, 30)
    assert same.verdict == "pass" and same.p_value == 0.5
    better = _stats.worse_rate_test("error_rate", 0, 100, 10, 100, 0.05, 30)
    assert better.verdict == "pass" and better.p_value is not None and better.p_value > 0.99
    assert _stats.worse_rate_test("e", 0, 500, 0, 500, 0.05, 30).verdict == "pass"  # no errors
    small = _stats.worse_rate_test("wrong_rate", 10, 10, 0, 10, 0.05, 30)
    assert small.verdict == "inconclusive" and "too few samples" in small.detail
    # a small but real rise needs enough samples to be significant
    assert _stats.worse_rate_test("e", 6, 100, 3, 100, 0.05, 30).verdict == "pass"
    assert _stats.worse_rate_test("e", 600, 10_000, 300, 10_000, 0.05, 30).verdict == "fail"
    with pytest.raises(ValueError, match="not a proportion"):
        _stats.worse_rate_test("e", 5, 4, 0, 4, 0.05, 1)

    assert _stats.latency_check(11.0, 50, 10.0, 50, 0.2, 0.0, 30).verdict == "pass"
    slow = _stats.latency_check(13.0, 50, 10.0, 50, 0.2, 0.5, 30)
    assert slow.verdict == "fail" and "above the limit 12.50 ms" in slow.detail
    assert _stats.latency_check(None, 0, 10.0, 50, 0.2, 0.0, 30).verdict == "inconclusive"

    pairs = [('["a","b"]', '["a","c"]'), ('["b"]', '"b"'), ("[1]", '"1"'), ("", '"x"')]
    assert _stats.count_correct(pairs) == (4, 3)
    assert _stats.normal_sf(0.0) == 0.5


def test_rollout_spec_checks_steps_and_options() -> None:
    assert RolloutSpec().steps == [5, 25, 50, 100]
    for steps, message in (([50, 25, 100], "rise strictly"), ([5, 50], "last step must be 100"),
                           ([0, 100], "within 1..100"), ([], "at least 1")):  # fmt: skip
        with pytest.raises(InvalidInput, match=message):
            rollout_spec(steps=steps)
    with pytest.raises(InvalidInput, match="alpha"):
        rollout_spec(alpha=0.7, min_requests=None)
    assert rollout_spec(steps=[100], min_dwell_s=None).steps == [100]


def _window(
    version: int, requests: int, errors: int, p99: float, labels: int, right: int
) -> VersionWindow:
    pairs = [('["a"]', '"a"')] * right + [('["a"]', '"b"')] * (labels - right)
    return VersionWindow(version=version, requests=requests, errors=errors, p99_ms=p99,
                         labelled=tuple(pairs))  # fmt: skip


def test_judge_waits_for_its_numbers_then_passes_or_fails() -> None:
    spec = RolloutSpec(steps=[50, 100], min_dwell_s=5, min_requests=50, min_labels=40,
                       min_samples=30, latency_slack_ms=2)  # fmt: skip
    cur = _window(1, 500, 1, 4.0, 200, 195)
    decision, numbers = judge(spec, 2.0, _window(2, 10, 0, 4.0, 0, 0), cur)
    assert decision == "wait"
    assert numbers["waiting_for"] == ["dwell 2.0/5 s", "requests 10/50", "labelled rows 0/40"]
    decision, numbers = judge(spec, 6.0, _window(2, 100, 0, 5.0, 60, 59), cur)
    assert decision == "pass", numbers
    assert [c["verdict"] for c in numbers["checks"]] == ["pass", "pass", "pass"]
    assert numbers["new"]["correct"] == 59 and numbers["current"]["labelled"] == 200
    decision, numbers = judge(spec, 6.0, _window(2, 100, 0, 5.0, 60, 30), cur)  # half wrong
    assert decision == "fail" and numbers["checks"][2]["verdict"] == "fail"
    decision, numbers = judge(spec, 6.0, _window(2, 100, 15, 5.0, 60, 59), cur)  # errors
    assert decision == "fail" and numbers["checks"][0]["name"] == "error_rate"
    decision, numbers = judge(spec, 6.0, _window(2, 100, 0, 50.0, 60, 59), cur)  # slow
    assert decision == "fail" and numbers["checks"][1]["verdict"] == "fail"


def _rollout(store: MetadataStore, deployment: str = "m", **fields: object) -> Rollout:
    now = utcnow()
    values: dict[str, object] = {
        "id": f"ro-{deployment}", "deployment": deployment, "model": deployment,
        "from_version": 1, "to_version": 2, "spec_json": RolloutSpec(steps=[50, 100]).model_dump_json(),
        "created_by": "admin", "created_at": now, "updated_at": now,
    }  # fmt: skip
    values.update(fields)
    rollout = Rollout(**values)  # type: ignore[arg-type]
    event = RolloutEvent(rollout_id=rollout.id, seq=1, at=now, kind="start", percent=0)
    return store.create_rollout(rollout, event)


def test_store_keeps_one_running_rollout_per_deployment_and_windows_per_version(
    store: MetadataStore,
) -> None:
    first = _rollout(store)
    with pytest.raises(Conflict, match="rollout in progress"):
        _rollout(store, id="ro-other")
    assert store.latest_rollout("m") == first
    assert store.list_rollouts(running=True) == [first]
    done = first.model_copy(update={"status": "ROLLED_BACK", "finished_at": utcnow()})
    store.update_rollout(done)
    with pytest.raises(Conflict, match="has ended"):
        store.update_rollout(done)  # an ended rollout is never moved again
    assert store.list_rollouts(running=True) == []
    assert _rollout(store, id="ro-again").id == "ro-again"  # a new one may start now

    t0 = utcnow().timestamp()
    store.log_prediction_batch("m", ["p1", "p2", "p3", "p4"], ["m"] * 4, [2, 2, 2, 1],
                               [t0, t0, t0, t0], [""] * 4, ['["a"]', '["b"]', "", '["a"]'],
                               [1.0, 3.0, 9.0, 1.0], ["", "", "internal", ""])  # fmt: skip
    store.add_feedback(Feedback(request_id="p1", label_json='"a"', by="u", at=utcnow()))
    store.add_feedback(Feedback(request_id="p2", label_json='"x"', by="u", at=utcnow()))
    store.add_feedback(Feedback(request_id="p2", label_json='"b"', by="u", at=utcnow()))
    window = store.version_window("m", 2, utcnow() - timedelta(minutes=1))
    assert (window.requests, window.errors) == (3, 1)
    assert window.p99_ms is not None and 2.9 < window.p99_ms <= 3.0  # answered requests only
    assert sorted(window.labelled) == [('["a"]', '"a"'), ('["b"]', '"b"')]  # the last label
    assert store.version_window("m", 2, utcnow() + timedelta(minutes=1)).requests == 0
    assert store.get_prediction("p3").error == "internal"


def _deployment(store: MetadataStore, name: str, traffic: dict[int, int]) -> None:
    now = utcnow()
    store.put_deployment(Deployment(name=name, model=name, version=max(traffic),
                                    traffic_json=json.dumps({str(k): v for k, v in traffic.items()}),
                                    status="RUNNING", created_by="admin", created_at=now,
                                    updated_at=now))  # fmt: skip


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    return lines[0]


def test_start_rollout_refusals_over_http_and_the_cli(
    backend: Backend,
    client: TestClient,
    admin_token: str,
    cli_as: Callable[[str], None],
    tmp_path: Path,
) -> None:
    v1 = register_mlp(backend, "m", seed=1)
    v2 = register_mlp(backend, "m", seed=2)
    v3 = register_mlp(backend, "m", seed=3, features=("x0", "x1", "x2", "x3"))
    _deployment(backend.store, "m", {v1.version: 100})
    runner = CliRunner(env={"COLUMNS": "250"})

    def dlp(*argv: str) -> Result:
        return runner.invoke(app, list(argv))

    assert "already serving" in _one_error_line(dlp("serve", "rollout", "m", str(v1.version)))
    line = _one_error_line(dlp("serve", "rollout", "m", str(v3.version)))
    assert "another signature" in line and "features" in line and "drop-in" in line
    assert "does not exist" in _one_error_line(dlp("serve", "rollout", "m", "9"))
    assert "does not exist" in _one_error_line(dlp("serve", "rollout", "ghost", "2"))
    assert "no rollout" in _one_error_line(dlp("serve", "rollout", "status", "m"))
    offline = {"DLP_TOKEN": "", "DLP_URL": "", "DLP_HOME": str(tmp_path)}
    bad = CliRunner().invoke(app, ["serve", "rollout", "m", "2", "--steps", "50,20"], env=offline)
    assert "rise strictly" in _one_error_line(bad)

    started = dlp("serve", "rollout", "m", str(v2.version), "--steps", "50,100", "--min-dwell-s",
                  "1", "--min-requests", "30")  # fmt: skip
    assert started.exit_code == 0, started.output
    assert "rollout ro-" in started.stdout and "RUNNING at step 50%" in started.stdout
    headers = {"Authorization": f"Bearer {admin_token}"}
    again = client.post("/api/v1/deployments/m/rollouts", json={"version": v2.version},
                        headers=headers)  # fmt: skip
    assert again.status_code == 409 and "rollout in progress" in again.json()["message"]
    bad_spec = client.post("/api/v1/deployments/m/rollouts",
                           json={"version": 2, "spec": {"steps": [5, 50]}}, headers=headers)  # fmt: skip
    assert bad_spec.status_code == 422
    status = client.get("/api/v1/deployments/m/rollout", headers=headers).json()
    assert status["status"] == "RUNNING" and status["spec"]["min_requests"] == 30
    assert [e["kind"] for e in status["events"]] == ["start"]
    shown = dlp("serve", "rollout", "status", "m")
    assert shown.exit_code == 0 and "start" in shown.stdout and "v2 over v1" in shown.stdout
    assert json.loads(dlp("serve", "rollout", "status", "m", "--json").stdout)["to_version"] == 2
    aborted = dlp("serve", "rollout", "abort", "m")  # its traffic never moved: nothing to undo
    assert aborted.exit_code == 0 and "ABORTED" in aborted.stdout, aborted.output
    assert "has ended" in _one_error_line(dlp("serve", "rollout", "abort", "m"))
    assert "no rollout" in _one_error_line(dlp("serve", "rollout", "abort", "ghost"))

    _deployment(backend.store, "m", {v1.version: 50, v2.version: 50})
    with pytest.raises(Conflict, match="splits its traffic"):
        start_rollout(backend, SYSTEM, "m", v2.version)
    audit = backend.store.list_audit(limit=50)
    assert any(a.action == "rollout.start" and a.target == "deployment:m" for a in audit)
    assert any(a.action == "rollout.abort" and a.target == "deployment:m" for a in audit)


def test_advance_promotes_at_the_last_step_and_aborts_on_foreign_changes(
    backend: Backend,
) -> None:
    store = backend.store
    v1 = register_mlp(backend, "m", seed=1)
    v2 = register_mlp(backend, "m", seed=1)
    spec = RolloutSpec(steps=[50, 100], min_dwell_s=0, min_requests=3, min_samples=3,
                       latency_slack_ms=100)  # fmt: skip
    started = utcnow() - timedelta(seconds=5)
    rollout = _rollout(store, spec_json=spec.model_dump_json(), step=1, step_started_at=started,
                       from_version=v1.version, to_version=v2.version)  # fmt: skip
    _deployment(store, "m", {v2.version: 100})
    assert advance(backend, rollout) == rollout  # no requests yet: the step waits
    t = utcnow().timestamp()
    ids = [f"q{i}" for i in range(8)]
    store.log_prediction_batch("m", ids, ["m"] * 8, [v1.version] * 4 + [v2.version] * 4,
                               [t] * 8, [""] * 8, ['["a"]'] * 8, [1.0] * 8)  # fmt: skip
    done = advance(backend, rollout)
    assert done.status == "PROMOTED" and done.finished_at is not None
    assert store.resolve_alias("m", "production") == v2.version
    events = store.list_rollout_events(rollout.id)
    assert events[-1].kind == "promote" and events[-1].decision == "pass"
    numbers = json.loads(events[-1].numbers_json)
    assert numbers["new"]["requests"] == 4 and len(numbers["checks"]) == 3
    assert any(e.relation == "promoted" for e in store.edges_of(["deployment:m"]))
    assert advance(backend, done) == done  # an ended rollout stays as it is

    other = _rollout(store, "n", spec_json=spec.model_dump_json(), step_started_at=started)
    _deployment(store, "n", {1: 100})  # someone set the traffic by hand mid-rollout
    aborted = advance(backend, other)
    assert aborted.status == "ABORTED" and "changed outside the rollout" in aborted.reason
    gone = _rollout(store, "gone", spec_json=spec.model_dump_json(), step_started_at=started)
    assert "undeployed" in advance(backend, gone).reason


def test_the_model_page_reads_fields_the_rollout_route_documents(client: TestClient) -> None:
    """The UI's rollout section calls the documented route and reads only documented fields."""
    import re

    from dlplatform.api.ui import ASSETS_DIR

    source = (ASSETS_DIR / "js" / "pages" / "models.js").read_text()
    part = source[
        source.index("async function rolloutPart") : source.index("async function rolloutsSection")
    ]
    spec = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/deployments/{name}/rollout" in spec["paths"]
    assert 'api.has("/deployments/{name}/rollout")' in source
    schemas = spec["components"]["schemas"]
    read = set(re.findall(r"\br\.([a-z_]+)", part))
    assert read and read <= set(schemas["RolloutStatus"]["properties"]), read
    event_fields = set(re.findall(r"\be\.([a-z_]+)", part))
    assert event_fields <= set(schemas["RolloutEventInfo"]["properties"]), event_fields
