"""The model replica's token check (``serve._auth.TokenCache``) on a real in-process store:
revocations reach it at once through the store's token epoch, unknown tokens never push out
known ones, and the answers are ``access.authenticate``'s and ``access.authorize``'s."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest

from dlplatform.access import hash_token, issue_run_token, issue_token
from dlplatform.errors import BackendUnavailable, PermissionDenied, Unauthenticated
from dlplatform.metadata import MetadataStore, Role, Run, RunStatus, TokenInfo, User
from dlplatform.metadata.records import utcnow
from dlplatform.serve._auth import TokenCache

T = "deployment:m"


def _cache(store: MetadataStore, **options: Any) -> TokenCache:
    """A replica's cache whose epoch poll waits on the store in a thread (the replica waits on
    the metadata actor instead); a short poll, so that a test's event loop ends quickly."""

    async def watch(known: int | None, timeout_s: float) -> int:
        return await asyncio.to_thread(store.wait_token_epoch, known, timeout_s)

    return TokenCache(store, watch, watch_timeout_s=0.2, **options)


def _user(store: MetadataStore, name: str = "ann", role: Role = Role.APP) -> tuple[str, TokenInfo]:
    store.create_user(User(name=name, role=role, created_at=utcnow()))
    secret, info = issue_token(store, name)
    return f"Bearer {secret}", info


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> float:
    """Seconds until ``condition`` held (fails after ``timeout_s``)."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, "condition not reached"
        await asyncio.sleep(0.002)
    return time.monotonic() - started


async def _refused_after(cache: TokenCache, header: str, timeout_s: float = 5.0) -> float:
    """Seconds until ``header`` is refused."""
    started = time.monotonic()
    while True:
        try:
            await cache.principal(header, T)
        except (Unauthenticated, PermissionDenied):
            return time.monotonic() - started
        assert time.monotonic() - started < timeout_s, "still accepted"
        await asyncio.sleep(0.002)


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def _remembered(cache: TokenCache, header: str) -> None:
    """Accept ``header`` once the epoch poll is live, so that the answer is remembered."""
    assert await cache.principal(header, T)
    await _until(lambda: cache.is_live)
    assert await cache.principal(header, T)
    looked = cache.lookups
    for _ in range(3):
        assert await cache.principal(header, T)
    assert cache.lookups == looked, "an accepted token is remembered"


def test_a_revoked_token_is_refused_at_once_not_after_a_ttl(store: MetadataStore) -> None:
    header, info = _user(store)
    cache = _cache(store)  # remembers acceptances for TOKEN_TTL_S (minutes)

    async def scenario() -> None:
        await _remembered(cache, header)
        store.revoke_token(info.id)  # as the gateway does, in its own process
        assert await _refused_after(cache, header) < 1.0
        with pytest.raises(Unauthenticated, match="invalid or revoked"):
            await cache.principal(header, T)
        cache.close()

    _run(scenario)


def test_a_disabled_user_or_a_role_without_predict_is_refused_at_once(
    store: MetadataStore,
) -> None:
    ann, _ = _user(store)
    bob, _ = _user(store, "bob")
    _user(store, "root", Role.ADMIN)
    cache = _cache(store)

    async def scenario() -> None:
        await _remembered(cache, ann)
        await _remembered(cache, bob)
        store.update_user("ann", disabled=True)
        assert await _refused_after(cache, ann) < 1.0
        with pytest.raises(Unauthenticated, match="disabled"):
            await cache.principal(ann, T)
        await _remembered(cache, bob)
        store.update_user("bob", role=Role.VIEWER)
        assert await _refused_after(cache, bob) < 1.0
        with pytest.raises(PermissionDenied, match="lacks permission predict"):
            await cache.principal(bob, T)
        cache.close()

    _run(scenario)


def test_a_run_token_is_refused_once_its_run_ends(store: MetadataStore) -> None:
    store.create_user(User(name="ann", role=Role.DATA_SCIENTIST, created_at=utcnow()))
    run = store.create_run(
        Run(id="run-1", owner="ann", status=RunStatus.RUNNING, created_at=utcnow())
    )
    secret, _ = issue_run_token(store, "ann", run.id, ttl_s=3600)
    cache = _cache(store)

    async def scenario() -> None:
        await _remembered(cache, f"Bearer {secret}")
        store.update_run(run.id, status=RunStatus.SUCCEEDED)
        store.revoke_run_tokens(run.id)  # what the scheduler does when the job ends
        assert await _refused_after(cache, f"Bearer {secret}") < 1.0
        cache.close()

    _run(scenario)


def test_an_expiring_token_is_not_remembered_past_its_expiry(store: MetadataStore) -> None:
    store.create_user(User(name="ann", role=Role.APP, created_at=utcnow()))
    secret = "dlp_0123456789ab_expiring-secret"
    expires_at = utcnow() + timedelta(seconds=1.5)
    store.add_token("0123456789ab", "ann", hash_token(secret), secret[:12], expires_at=expires_at)
    cache = _cache(store)

    async def scenario() -> None:
        await _remembered(cache, f"Bearer {secret}")
        assert await _refused_after(cache, f"Bearer {secret}") < 3.0  # no epoch move needed
        with pytest.raises(Unauthenticated, match="expired"):
            await cache.principal(f"Bearer {secret}", T)
        cache.close()

    _run(scenario)


def test_unknown_tokens_never_push_out_known_ones(store: MetadataStore) -> None:
    ann, _ = _user(store)
    cache = _cache(store, max_known=2, max_refused=4)

    async def scenario() -> None:
        await _remembered(cache, ann)
        looked = cache.lookups
        for i in range(50):  # anyone can send these
            with pytest.raises(Unauthenticated):
                await cache.principal(f"Bearer dlp_{i:012x}_nope", T)
        assert cache.lookups == looked + 50
        assert await cache.principal(ann, T) == "ann"
        assert cache.lookups == looked + 50  # still remembered
        cache.close()

    _run(scenario)


def test_known_and_refused_tokens_are_bounded_least_recently_used_out(
    store: MetadataStore,
) -> None:
    headers = [_user(store, name)[0] for name in ("ann", "bob", "cid")]
    cache = _cache(store, max_known=2, max_refused=2)

    async def scenario() -> None:
        ann, bob, cid = headers
        await _remembered(cache, ann)
        await _remembered(cache, bob)
        await cache.principal(ann, T)  # ann is now the most recently used
        await _remembered(cache, cid)  # pushes out bob, the least recently used
        looked = cache.lookups
        assert await cache.principal(ann, T) == "ann"
        assert cache.lookups == looked
        assert await cache.principal(bob, T) == "bob"
        assert cache.lookups == looked + 1

        # a refusal is remembered for a while too: one look-up and one audit row, not one each
        for _ in range(3):
            with pytest.raises(Unauthenticated):
                await cache.principal("Bearer dlp_0123456789ab_wrong", T)
        assert cache.lookups == looked + 2
        cache.close()

    _run(scenario)
    denials = store.list_audit(action="authenticate", outcome="denied")
    assert [e.target for e in denials] == ["token:0123456789ab"]


def test_a_permission_denial_comes_from_access_authorize_and_is_audited_once(
    store: MetadataStore,
) -> None:
    viewer, _ = _user(store, "vic", Role.VIEWER)
    cache = _cache(store)

    async def scenario() -> None:
        for _ in range(3):
            with pytest.raises(PermissionDenied, match=r"vic may not predict on deployment:m"):
                await cache.principal(viewer, T)
        cache.close()

    _run(scenario)
    denied = store.list_audit(actor="vic", outcome="denied")
    assert [(e.action, e.target) for e in denied] == [("predict", T)]


def test_without_a_live_epoch_poll_every_request_asks_the_store(store: MetadataStore) -> None:
    ann, info = _user(store)

    async def broken(known: int | None, timeout_s: float) -> int:
        raise BackendUnavailable("metadata actor is restarting")

    cache = TokenCache(store, broken)

    async def scenario() -> None:
        for i in range(4):
            assert await cache.principal(ann, T) == "ann"
            assert cache.lookups == i + 1  # nothing remembered: a revocation could be missed
            await asyncio.sleep(0.01)
        assert not cache.is_live
        store.revoke_token(info.id)
        with pytest.raises(Unauthenticated):
            await cache.principal(ann, T)
        cache.close()

    _run(scenario)


def test_a_lookup_overtaken_by_a_revocation_is_not_remembered(settings: Any) -> None:
    class SlowStore(MetadataStore):
        """Reads the token, then waits before answering: a revocation lands in between."""

        def __init__(self, path: Any) -> None:
            super().__init__(path)
            self.hold = False
            self.read = threading.Event()
            self.release = threading.Event()

        def user_for_token_hash(self, token_hash: str) -> tuple[User, TokenInfo]:
            found = super().user_for_token_hash(token_hash)
            if self.hold:
                self.read.set()
                self.release.wait(10)
            return found

    store = SlowStore(settings.metadata_path)
    header, info = _user(store)  # type: ignore[arg-type]
    cache = _cache(store)

    async def scenario() -> None:
        assert await cache.principal(header, T) == "ann"
        await _until(lambda: cache.is_live)
        cache.forget()  # what is remembered so far is not the point here
        store.hold = True
        pending = asyncio.ensure_future(cache.principal(header, T))
        await _until(store.read.is_set)  # the token was read while still valid
        store.revoke_token(info.id)
        await asyncio.sleep(0.1)  # the replica hears of the revocation
        store.release.set()
        assert await pending == "ann"  # a request racing the revocation may pass...
        store.hold = False
        with pytest.raises(Unauthenticated):  # ...but its answer is not remembered
            await cache.principal(header, T)
        cache.close()

    try:
        _run(scenario)
    finally:
        store.close()


def test_header_forms_and_no_secret_kept(store: MetadataStore) -> None:
    header, _ = _user(store)
    cache = _cache(store)

    async def scenario() -> None:
        for bad in (None, "", "Basic abc", "Bearer ", "bearer"):
            with pytest.raises(Unauthenticated, match="missing bearer token"):
                await cache.principal(bad, T)
        assert cache.lookups == 0
        await _remembered(cache, header)
        assert await cache.principal("bearer " + header.split(" ", 1)[1], T) == "ann"
        cache.close()

    _run(scenario)
    assert header.split(" ", 1)[1] not in repr(vars(cache))  # keyed by hash_token
