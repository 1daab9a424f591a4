"""Failed authentications per source (#18, finding 4): the first of a window is audited, the
rest become one aggregated row, a source failing too often gets 429; counted for Prometheus."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dlplatform import access
from dlplatform.access import SYSTEM, AuthCache, AuthFailures, UserSpec
from dlplatform.api.app import create_app
from dlplatform.context import Backend
from dlplatform.errors import TooManyRequests
from dlplatform.metadata import MetadataStore, Role

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BOGUS = "dlp_0123456789ab_" + "x" * 43  # our shape, unknown
SOURCE = "testclient"  # the client address Starlette's TestClient reports


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Gateway:
    client: TestClient
    clock: Clock
    seen: list[str]


@pytest.fixture
def gateway(backend: Backend, admin_token: str) -> Iterator[Gateway]:
    app = create_app(backend)
    clock, seen = Clock(), []
    # a long cache TTL keeps the test independent of the real clock's speed
    app.state.auth_cache = AuthCache(60, failures=AuthFailures(clock=clock, observe=seen.append))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield Gateway(client, clock, seen)


def _whoami(gw: Gateway, token: str) -> tuple[int, dict[str, str]]:
    r = gw.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    return r.status_code, r.json()


def _auth_rows(store: MetadataStore) -> list[tuple[str, str]]:
    entries = reversed(store.list_audit(action="authenticate", limit=1000))  # oldest first
    return [(e.target, e.detail) for e in entries]


def test_bogus_tokens_are_audited_once_per_window_then_as_one_row(
    gateway: Gateway, store: MetadataStore, admin_token: str
) -> None:
    for _ in range(5):
        assert _whoami(gateway, BOGUS)[0] == 401
    # before: one audit row per request, each through the single metadata actor
    assert _auth_rows(store) == [
        ("token:0123456789ab", "invalid or revoked token (from testclient)")
    ]
    assert gateway.seen == ["refused"] * 5  # the Prometheus series counts every one
    gateway.clock.now += 61  # the window closes; the next request writes the aggregate
    assert _whoami(gateway, admin_token)[0] == 200
    rows = _auth_rows(store)
    assert len(rows) == 2 and rows[1][0] == f"source:{SOURCE}"
    assert rows[1][1] == (
        "5 failed authentications from testclient in the last 60 s "
        "(latest: invalid or revoked token)"
    )


def test_the_next_failure_after_a_window_writes_its_row_and_starts_a_new_one(
    gateway: Gateway, store: MetadataStore
) -> None:
    for _ in range(3):
        _whoami(gateway, "not-a-token")
    gateway.clock.now += 61
    assert _whoami(gateway, "not-a-token")[0] == 401
    assert [target for target, _ in _auth_rows(store)] == [
        "token:malformed",
        f"source:{SOURCE}",  # the closed window: 3 failures in one row
        "token:malformed",  # the first of the new window, on its own
    ]
    assert _auth_rows(store)[1][1].startswith("3 failed authentications from testclient")


def test_a_source_failing_too_often_gets_429_until_its_block_ends(
    gateway: Gateway, backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    assert _whoami(gateway, admin_token)[0] == 200  # remembered by the gateway from now on
    ann = access.create_user(backend, SYSTEM, UserSpec(name="ann", role=Role.VIEWER)).token
    for _ in range(20):
        assert _whoami(gateway, BOGUS)[0] == 401
    r = gateway.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {BOGUS}"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "60"
    assert r.json() == {
        "error": "too_many_requests",
        "message": "too many failed authentications from testclient: try again in 60 s",
    }
    status, _ = _whoami(gateway, ann)  # a valid token is not even looked up while blocked
    assert status == 429
    assert _whoami(gateway, admin_token)[0] == 200  # one the gateway remembers still passes
    assert gateway.seen.count("refused") == 20 and gateway.seen.count("throttled") == 2
    rows = _auth_rows(store)
    assert len(rows) == 2  # 22 bad requests, 2 rows
    assert rows[1] == (
        f"source:{SOURCE}",
        "20 failed authentications from testclient in the last 60 s "
        "(latest: invalid or revoked token); testclient blocked for 60 s",
    )
    gateway.clock.now += 61
    assert _whoami(gateway, ann) == (200, {"name": "ann", "role": "viewer", "groups": []})
    assert _auth_rows(store)[-1] == (
        f"source:{SOURCE}",
        "2 requests from testclient refused with 429",
    )


def test_a_missing_token_is_neither_counted_nor_audited(
    gateway: Gateway, store: MetadataStore
) -> None:
    for _ in range(30):
        assert gateway.client.get("/api/v1/whoami").status_code == 401
    assert _auth_rows(store) == [] and gateway.seen == []


def test_eviction_under_many_sources_never_lifts_a_block() -> None:
    clock = Clock()
    failures = AuthFailures(max_failures=2, max_sources=2, clock=clock)
    assert failures.failed("10.0.0.1", "invalid or revoked token") is True
    assert failures.failed("10.0.0.1", "invalid or revoked token") is False  # now blocked
    assert failures.failed("10.0.0.2", "invalid or revoked token") is True
    clock.now += 1
    assert failures.failed("10.0.0.3", "invalid or revoked token") is True  # evicts .2, not .1
    with pytest.raises(TooManyRequests, match="try again in 59 s"):
        failures.check("10.0.0.1")
    failures.check("10.0.0.2")  # not blocked
    assert failures.counts == {"refused": 4, "throttled": 1}
