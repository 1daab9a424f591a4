"""Resource accounting and quotas (#23): usage intervals in the real DuckDB store, clipped to a
window and summed by user, run, deployment and dataset; the checks on usage windows; the quota
reasons the training scheduler shows; and the same through the gateway and the SDK."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest
from starlette.testclient import TestClient

from dlplatform import access, data, usage
from dlplatform.access import SYSTEM, UserSpec, authenticate
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import MetadataStore, Role, Run, RunStatus
from dlplatform.metadata.records import Quota, UsageInterval, utcnow
from dlplatform.train.quota import QuotaGate

API = "/api/v1"
T0 = datetime(2026, 1, 5, 12, 0, tzinfo=timezone.utc)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _interval(kind: str, subject: str, owner: str, start: float, end: float | None, *,
              cpus: float = 1.0, gpus: float = 0.0, dataset: str | None = None,
              peak: int | None = None) -> UsageInterval:  # fmt: skip
    return UsageInterval(
        kind=kind, subject=subject, owner=owner, dataset=dataset, start_at=_at(start),  # type: ignore[arg-type]
        end_at=None if end is None else _at(end), cpus=cpus, gpus=gpus, peak_mem_bytes=peak,
    )  # fmt: skip


def _fill(store: MetadataStore) -> None:
    store.open_usage(_interval("run", "r1", "alice", 0, 60, cpus=2, dataset="digits", peak=500))
    store.open_usage(_interval("run", "r2", "alice", 30, 90, cpus=1, gpus=1, dataset="digits",
                               peak=800))  # fmt: skip
    store.open_usage(_interval("run", "r3", "bob", 100, 130, cpus=4, dataset="people"))
    store.open_usage(_interval("deployment", "web", "bob", 0, None, cpus=0.5))


def test_usage_is_the_sum_of_intervals_clipped_to_the_window(store: MetadataStore) -> None:
    _fill(store)
    window = usage.resolve_window(_at(0).isoformat(), _at(120).isoformat(), "1h", now=_at(120))
    rows = store.list_usage(window.since, window.until)
    report = usage.summarize(rows, "user", window, now=_at(120))
    by_user = {t.key: t for t in report.totals}
    # alice: r1 2 CPUs x 60 min + r2 1 CPU x 60 min; r2's GPU for 60 min
    assert by_user["alice"].cpu_seconds == pytest.approx((2 * 60 + 60) * 60)
    assert by_user["alice"].gpu_seconds == pytest.approx(3600)
    assert by_user["alice"].wall_seconds == pytest.approx(120 * 60)
    assert (by_user["alice"].peak_mem_bytes, by_user["alice"].subjects) == (800, 2)
    # bob: r3 clipped to its first 20 minutes (4 CPUs), the deployment's 120 minutes x 0.5
    assert by_user["bob"].cpu_seconds == pytest.approx(4 * 20 * 60 + 0.5 * 120 * 60)
    assert by_user["bob"].peak_mem_bytes is None
    # the series: two 1-hour buckets; alice's first hour: r1 2x60 min + r2 1x30 min
    alice = {p.start: p for p in report.series if p.key == "alice"}
    assert alice[_at(0)].cpu_seconds == pytest.approx((120 + 30) * 60)
    assert alice[_at(60)].cpu_seconds == pytest.approx(30 * 60)
    assert sum(p.cpu_seconds for p in report.series) == pytest.approx(
        sum(t.cpu_seconds for t in report.totals)
    )
    by_run = usage.summarize(store.list_usage(window.since, window.until, kind="run"), "run",
                             window, now=_at(120))  # fmt: skip
    assert [t.key for t in by_run.totals] == ["r1", "r3", "r2"]
    by_dataset = {t.key: t.cpu_seconds for t in usage.summarize(rows, "dataset", window,
                                                                  _at(120)).totals}  # fmt: skip
    assert by_dataset == {"digits": pytest.approx(180 * 60), "people": pytest.approx(80 * 60)}
    deployments = usage.summarize(rows, "deployment", window, _at(120)).totals
    assert [(t.key, t.wall_seconds) for t in deployments] == [("web", pytest.approx(7200))]


def test_a_new_deployment_interval_ends_the_previous_one(store: MetadataStore) -> None:
    store.open_usage(_interval("deployment", "web", "bob", 0, None, cpus=0.5))
    store.open_usage(_interval("deployment", "web", "bob", 10, None, cpus=2))
    store.close_usage("deployment", "web", _at(30))
    rows = store.list_usage(_at(0), _at(60))
    assert [(r.start_at, r.end_at, r.cpus) for r in rows] == [
        (_at(0), _at(10), 0.5), (_at(10), _at(30), 2.0)
    ]  # fmt: skip


def test_a_runs_interval_ends_with_the_run_and_keeps_its_peak_memory(
    backend: Backend, store: MetadataStore
) -> None:
    data.create_dataset(backend, SYSTEM, "digits")
    commit = data.push(backend, SYSTEM, "digits", pa.table({"x": [1, 2]}))
    run = store.create_run(Run(id="run-a", owner="system", created_at=_at(0), started_at=_at(1),
                               status=RunStatus.RUNNING, dataset_commit=commit.id))  # fmt: skip
    usage.record_run_start(store, run, 2.0, 0.0)
    store.record_peak_memory({"run-a": 100})
    store.record_peak_memory({"run-a": 50})  # a lower sample keeps the peak
    (open_,) = store.list_usage(_at(0), _at(10))
    assert (open_.dataset, open_.end_at, open_.cpus, open_.peak_mem_bytes) == (
        "digits", None, 2.0, 100)  # fmt: skip
    store.update_run("run-a", status=RunStatus.SUCCEEDED, ended_at=_at(6))
    # before the scheduler's sweep the query already ends it with the run
    assert store.list_usage(_at(0), _at(10))[0].end_at == _at(6)
    store.close_ended_run_usage()
    (closed,) = store.list_usage(_at(0), _at(10))
    assert (closed.end_at, closed.peak_mem_bytes) == (_at(6), 100)
    held = usage.held_by(store, "run", "run-a", _at(0))  # as a job's view shows it
    assert held is not None and (held.cpu_seconds, held.wall_seconds) == (2 * 300, 300)
    assert usage.held_by(store, "run", "run-b", _at(0)) is None
    assert store.list_usage(_at(7), _at(10)) == []


@pytest.mark.parametrize(
    ("since", "until", "bucket", "message"),
    [
        (None, None, None, "since is required"),
        ("", None, None, "since is required"),
        ("1d", "2d", None, "inverted time range"),
        ("2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z", None, "inverted time range"),
        ("3000d", None, None, "at most 400 days"),
        ("0d", None, None, "longer than zero"),
        ("forever", None, None, "expected a span before now"),
        ("99999999999999d", None, None, "before the year 1"),
        ("-5d", None, None, "expected a span before now"),
        ("7d", None, "1s", "at most 2000"),
        ("7d", None, "soon", "expected a number and a unit"),
    ],
)
def test_inverted_unbounded_or_unparsable_windows_are_refused(
    since: str | None, until: str | None, bucket: str | None, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        usage.resolve_window(since, until, bucket, now=T0)


def test_windows_parse_spans_iso_times_and_pick_a_bucket() -> None:
    window = usage.resolve_window("7d", None, None, now=T0)
    assert (window.since, window.until, window.bucket_s) == (T0 - timedelta(days=7), T0, 6 * 3600)
    naive = usage.resolve_window("2026-01-05T10:00:00", "now", "15m", now=T0)
    assert (naive.since, naive.bucket_s) == (_at(-120), 900)


def _quota(scope: str, name: str, **limits: float) -> Quota:
    return Quota(scope=scope, name=name, updated_by="admin", updated_at=T0, **limits)  # type: ignore[arg-type]


def test_the_quota_gate_names_who_holds_what() -> None:
    groups = {"alice": ("ml",), "carol": ("ml",), "bob": ()}
    quotas = [_quota("user", "alice", max_cpus=2), _quota("group", "ml", max_gpus=1,
                                                          gpu_hours_per_day=2)]  # fmt: skip
    gate = QuotaGate(quotas, lambda u: groups.get(u, ()), [("alice", 2.0, 0.0)], {})
    assert gate.reason("alice", 1, 0) == (
        "waiting for quota: user alice holds 2 of 2 CPUs (this run needs 1)"
    )
    assert gate.reason("alice", 3, 0) is not None and "cannot start under quota" in str(
        gate.reason("alice", 3, 0))  # fmt: skip
    assert gate.reason("bob", 8, 2) is None  # no quota of his
    assert gate.reason("carol", 1, 1) is None
    gate.admit("carol", 1, 1)  # admitted this pass: counts at once
    assert gate.reason("alice", 0, 1) == (
        "waiting for quota: group ml holds 1 of 1 GPUs (this run needs 1)"
    )
    spent = QuotaGate(quotas, lambda u: groups.get(u, ()), [], {"carol": 7200.0})
    assert spent.reason("alice", 0, 1) == (
        "waiting for quota: group ml used 2.00 of 2 GPU-hours in the last 24 hours"
    )
    assert spent.reason("alice", 1, 0) is None  # a CPU run uses no GPU-hours


def test_quotas_are_set_by_admins_and_usage_is_private(
    backend: Backend, store: MetadataStore
) -> None:
    alice = authenticate(store, access.create_user(backend, SYSTEM, UserSpec(
        name="alice", role=Role.DATA_SCIENTIST)).token)  # fmt: skip
    with pytest.raises(PermissionDenied):
        usage.set_quota(backend, alice, "user", "alice", usage.QuotaSpec(max_cpus=8))
    with pytest.raises(NotFound, match="nobody"):
        usage.set_quota(backend, SYSTEM, "user", "nobody", usage.QuotaSpec(max_cpus=1))
    with pytest.raises(InvalidInput, match="scope"):
        usage.set_quota(backend, SYSTEM, "team", "x", usage.QuotaSpec(max_cpus=1))
    set_ = usage.set_quota(backend, SYSTEM, "user", "alice", usage.QuotaSpec(max_cpus=2))
    assert usage.list_quotas(backend, alice) == [set_]
    assert usage.delete_quota(backend, SYSTEM, "user", "alice") == set_
    with pytest.raises(NotFound, match="has no quota"):
        usage.delete_quota(backend, SYSTEM, "user", "alice")
    assert [e.action for e in store.list_audit(actor="system")][:2] == [
        "quota.delete", "quota.set"]  # fmt: skip

    now = utcnow()
    store.open_usage(UsageInterval(kind="run", subject="a1", owner="alice",
                                   start_at=now - timedelta(hours=1), cpus=1, gpus=0))  # fmt: skip
    store.open_usage(UsageInterval(kind="run", subject="b1", owner="bob",
                                   start_at=now - timedelta(hours=1), cpus=1, gpus=0))  # fmt: skip
    assert [t.key for t in usage.usage_report(backend, alice, since="1d").totals] == ["alice"]
    everyone = usage.usage_report(backend, SYSTEM, since="1d", by="run")
    assert sorted(t.key for t in everyone.totals) == ["a1", "b1"]


def test_usage_and_quotas_over_http_and_the_sdk(
    client: TestClient, admin_token: str, http_platform: Callable[[str], object],
    backend: Backend,
) -> None:  # fmt: skip
    auth = {"Authorization": f"Bearer {admin_token}"}
    backend.store.open_usage(UsageInterval(kind="deployment", subject="web", owner="admin",
                                           start_at=utcnow() - timedelta(hours=2), cpus=0.5,
                                           gpus=0))  # fmt: skip
    got = client.get(f"{API}/usage", params={"by": "deployment", "since": "1d", "bucket": "1h"},
                     headers=auth)  # fmt: skip
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["bucket_s"] == 3600 and [t["key"] for t in body["totals"]] == ["web"]
    assert body["totals"][0]["cpu_seconds"] == pytest.approx(3600, rel=0.01)
    assert len(body["series"]) in (2, 3)
    for params, status, words in (
        ({"since": "1d", "until": "2d"}, 422, "inverted time range"),
        ({}, 422, "since is required"),
        ({"since": "99999d"}, 422, "at most 400 days"),
        ({"since": "1d", "by": "planet"}, 422, "by"),
    ):
        bad = client.get(f"{API}/usage", params=params, headers=auth)
        assert bad.status_code == status, bad.text
        assert words in bad.json()["message"] and bad.json()["error"]
    put = client.put(f"{API}/quotas/user/admin", json={"max_cpus": 3}, headers=auth)
    assert put.status_code == 200 and put.json()["max_cpus"] == 3
    assert client.put(f"{API}/quotas/user/admin", json={"max_cpus": -1},
                      headers=auth).status_code == 422  # fmt: skip

    p = http_platform(admin_token)
    frame = p.usage(by="deployment", since="1d")  # type: ignore[attr-defined]
    assert list(frame["key"]) == ["web"] and frame["cpu_seconds"][0] > 3500
    assert list(p.usage.series(by="user", since="1d", bucket="1h").columns) == [  # type: ignore[attr-defined]
        "key", "start", "cpu_seconds", "gpu_seconds"]  # fmt: skip
    assert [q.max_cpus for q in p.usage.quotas()] == [3]  # type: ignore[attr-defined]
    assert p.usage.delete_quota("user", "admin").max_cpus == 3  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="inverted"):
        p.usage.report(since="1h", until="2h")  # type: ignore[attr-defined]
