"""The store's token epoch: it moves whenever a credential loses power, waiters learn of it at
once, and every store method that takes power away moves it (checked on the source, so a new
method cannot forget). Real DuckDB, in-process."""

from __future__ import annotations

import inspect
import re
import threading
import time
from pathlib import Path

from dlplatform.access import issue_run_token, issue_token
from dlplatform.metadata import MetadataStore, Role, Run, RunStatus, User
from dlplatform.metadata.actor import _MetadataActor
from dlplatform.metadata.records import utcnow


def _user(store: MetadataStore, name: str = "ann", role: Role = Role.APP) -> User:
    return store.create_user(User(name=name, role=role, created_at=utcnow()))


def test_the_epoch_moves_on_every_loss_of_power_and_only_then(store: MetadataStore) -> None:
    _user(store)
    _user(store, "boss", Role.ADMIN)
    _, info = issue_token(store, "ann")
    epoch = store.token_epoch()

    _, other = issue_token(store, "ann")  # gaining power: nothing to forget
    store.touch_token(info.id)
    assert store.token_epoch() == epoch

    store.revoke_token(info.id)
    assert store.token_epoch() != epoch
    epoch = store.token_epoch()
    store.revoke_token(info.id)  # already revoked: nothing changed
    assert store.token_epoch() == epoch

    store.update_user("ann", role=Role.VIEWER)
    assert store.token_epoch() != epoch
    epoch = store.token_epoch()
    store.update_user("ann", disabled=True)
    assert store.token_epoch() != epoch

    run = store.create_run(
        Run(id="run-1", owner="ann", status=RunStatus.RUNNING, created_at=utcnow())
    )
    issue_run_token(store, "ann", run.id, ttl_s=60)
    epoch = store.token_epoch()
    assert store.revoke_run_tokens("run-2") == []
    assert store.token_epoch() == epoch
    assert len(store.revoke_run_tokens(run.id)) == 1
    assert store.token_epoch() != epoch
    assert other.revoked_at is None


def test_a_waiter_learns_of_a_revocation_at_once(store: MetadataStore) -> None:
    _user(store)
    _, info = issue_token(store, "ann")
    known = store.token_epoch()
    started = time.monotonic()
    assert store.wait_token_epoch(known, 0.2) == known  # nothing happened: the timeout
    assert time.monotonic() - started >= 0.15
    assert store.wait_token_epoch(None, 5) == known  # an unknown epoch: answered at once

    answers: list[tuple[int, float]] = []

    def wait() -> None:
        answers.append((store.wait_token_epoch(known, 30), time.monotonic()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.1)
    revoked_at = time.monotonic()
    store.revoke_token(info.id)
    waiter.join(timeout=10)
    assert answers and answers[0][0] == store.token_epoch() != known
    assert answers[0][1] - revoked_at < 1.0  # not after the 30 s timeout


def test_a_reopened_store_starts_from_another_epoch(tmp_path: Path) -> None:
    path = tmp_path / "epoch.duckdb"
    first = MetadataStore(path)
    epoch = first.token_epoch()
    first.close()
    second = MetadataStore(path)
    try:
        assert second.token_epoch() != epoch  # waiters of the old one cannot be fooled
    finally:
        second.close()


def test_the_actor_keeps_waits_off_the_threads_of_call(store: MetadataStore) -> None:
    actor = _MetadataActor.__new__(_MetadataActor)
    actor._store = store
    refused = actor.call("wait_token_epoch", (None, 30), {})
    assert refused[0] == "err" and "watch_token_epoch" in refused[2]
    assert actor.wait_token_epoch(None, 30) == store.token_epoch()  # its own method answers


_TAKES_POWER = re.compile(
    r"UPDATE\s+users|DELETE\s+FROM\s+users|DELETE\s+FROM\s+tokens|SET\s+revoked_at", re.I
)


def test_every_store_method_that_takes_power_away_moves_the_epoch() -> None:
    checked = []
    for name, member in inspect.getmembers(MetadataStore, inspect.isfunction):
        source = inspect.getsource(member)
        if _TAKES_POWER.search(source):
            checked.append(name)
            assert "self._bump_token_epoch()" in source, (
                f"MetadataStore.{name} changes users or revokes tokens without moving the token "
                "epoch: model replicas would keep accepting the credential"
            )
    assert {"revoke_token", "revoke_run_tokens"} <= set(checked)
