"""Run tokens: the token a training or tuning job gets for its run acts as the run's owner, and
stops working when the run ends or expires (real DuckDB store; the gateway app in-process)."""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from typing import Any

import pytest

from dlplatform import access
from dlplatform.access import (
    SYSTEM,
    Principal,
    UserSpec,
    authenticate,
    issue_run_token,
    revoke_run_tokens,
)
from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from dlplatform.metadata import MetadataStore, Role, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import service
from dlplatform.train._lifecycle import finish
from dlplatform.train.scheduler import _Scheduler, job_env, job_runtime_env
from dlplatform.train.spec import TrainingJobSpec

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TTL_S = 3600.0
USER_CODE: dict[str, Any] = {
    "dataset": "digits",
    "label": "target",
    "model": "dlp_user_mod:train_fn",
}


@pytest.fixture
def alice(backend: Backend) -> Principal:
    access.create_user(backend, SYSTEM, UserSpec(name="alice", role=Role.DATA_SCIENTIST))
    return Principal(name="alice", role=Role.DATA_SCIENTIST)


def _run(
    store: MetadataStore,
    owner: str = "alice",
    status: RunStatus = RunStatus.RUNNING,
    spec: dict[str, Any] | None = None,
) -> Run:
    spec_json = TrainingJobSpec(**(spec or USER_CODE)).model_dump_json()
    run = Run(
        id=service.new_run_id(), owner=owner, status=status, spec_json=spec_json,
        created_at=utcnow(),
    )  # fmt: skip
    return store.create_run(run)


def _denials(store: MetadataStore) -> list[str]:
    return [e.detail for e in store.list_audit(action="authenticate", outcome="denied")]


def test_a_run_token_acts_as_the_owner_while_the_run_is_live(
    store: MetadataStore, alice: Principal, admin_token: str
) -> None:
    run = _run(store, status=RunStatus.QUEUED)
    secret, info = issue_run_token(store, "alice", run.id, TTL_S)
    assert info.user == "alice" and info.run_id == run.id and info.revoked_at is None
    assert info.expires_at is not None
    assert timedelta(seconds=TTL_S - 60) < info.expires_at - utcnow() <= timedelta(seconds=TTL_S)
    assert authenticate(store, secret) == alice  # the owner's name and role, not an admin's
    store.update_run(run.id, status=RunStatus.RUNNING)
    principal = authenticate(store, secret)
    assert principal.role is Role.DATA_SCIENTIST and not principal.is_admin
    created = store.list_audit(action="tokens.create")
    assert created[0].target == "user:alice" and f"run={run.id}" in created[0].detail
    assert secret not in created[0].detail


@pytest.mark.parametrize(
    "status", [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.STOPPED]
)
def test_a_run_token_is_refused_once_its_run_is_final(
    store: MetadataStore, alice: Principal, status: RunStatus
) -> None:
    run = _run(store)
    secret, info = issue_run_token(store, "alice", run.id, TTL_S)
    store.update_run(run.id, status=status, ended_at=utcnow())
    with pytest.raises(Unauthenticated, match=rf"token expired: its run ended \({status.value}\)"):
        authenticate(store, secret)
    assert _denials(store) == [f"token expired: its run ended ({status.value})"]
    assert store.list_audit(action="authenticate")[0].target == f"token:{info.id}"


def test_a_run_token_is_refused_after_it_expires(store: MetadataStore, alice: Principal) -> None:
    run = _run(store)
    secret, _ = issue_run_token(store, "alice", run.id, ttl_s=0.05)
    time.sleep(0.1)
    with pytest.raises(Unauthenticated, match="token expired"):
        authenticate(store, secret)
    # an expiry in the past, written straight to the store, is refused just the same
    past = "dlp_0123456789ab_past"
    store.add_token(
        "0123456789ab", "alice", access.hash_token(past), past[:12], run_id=run.id,
        expires_at=utcnow() - timedelta(seconds=1),
    )  # fmt: skip
    with pytest.raises(Unauthenticated, match="token expired"):
        authenticate(store, past)
    assert store.get_run(run.id).status is RunStatus.RUNNING  # the run itself is still live


def test_a_run_token_is_issued_only_for_the_live_run_of_its_owner(
    backend: Backend, store: MetadataStore, alice: Principal, admin_token: str
) -> None:
    run = _run(store)
    with pytest.raises(InvalidInput, match=f"run {run.id} belongs to alice, not admin"):
        issue_run_token(store, "admin", run.id, TTL_S)
    with pytest.raises(InvalidInput, match="ttl_s must be positive"):
        issue_run_token(store, "alice", run.id, 0)
    with pytest.raises(NotFound):
        issue_run_token(store, "alice", "run-doesnotexist", TTL_S)
    ended = _run(store, status=RunStatus.SUCCEEDED)
    with pytest.raises(Conflict, match="already ended"):
        issue_run_token(store, "alice", ended.id, TTL_S)
    assert all(t.run_id is None for t in store.list_tokens())


def test_revoking_the_run_tokens(store: MetadataStore, alice: Principal) -> None:
    run, other = _run(store), _run(store)
    secret, info = issue_run_token(store, "alice", run.id, TTL_S)
    kept, _ = issue_run_token(store, "alice", other.id, TTL_S)
    revoked = revoke_run_tokens(store, run.id, "its run ended (SUCCEEDED)")
    assert [t.id for t in revoked] == [info.id] and revoked[0].revoked_at is not None
    with pytest.raises(Unauthenticated, match="invalid or revoked token"):
        authenticate(store, secret)
    assert authenticate(store, kept).name == "alice"  # another run's token is untouched
    assert revoke_run_tokens(store, run.id, "again") == []  # harmless, and not audited twice
    entries = store.list_audit(action="tokens.revoke")
    assert [(e.actor, e.target) for e in entries] == [("system", f"token:{info.id}")]
    assert entries[0].detail == f"user=alice run={run.id}: its run ended (SUCCEEDED)"


def test_run_tokens_are_listed_with_the_users_tokens(
    backend: Backend, store: MetadataStore, alice: Principal
) -> None:
    run = _run(store)
    _, info = issue_run_token(store, "alice", run.id, TTL_S)
    listed = access.list_tokens(backend, alice, "alice")
    assert [(t.id, t.run_id) for t in listed][-1] == (info.id, run.id)
    assert listed[0].run_id is None and listed[0].expires_at is None  # her first, plain token
    assert listed[-1].expires_at == info.expires_at
    assert store.list_tokens(run_id=run.id) == [info]


def test_whoami_with_a_run_token_over_http(
    backend: Backend, store: MetadataStore, alice: Principal
) -> None:
    run = _run(store)
    secret, info = issue_run_token(store, "alice", run.id, TTL_S)
    auth = {"Authorization": f"Bearer {secret}"}
    with TestClient(create_app(backend), base_url="http://127.0.0.1:8000") as client:
        reply = client.get(f"{API_PREFIX}/whoami", headers=auth)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"name": "alice", "role": "data-scientist", "groups": []}
        tokens = client.get(f"{API_PREFIX}/users/alice/tokens", headers=auth).json()
        assert {t["id"]: t["run_id"] for t in tokens}[info.id] == run.id
        store.update_run(run.id, status=RunStatus.SUCCEEDED, ended_at=utcnow())
        reply = client.get(f"{API_PREFIX}/whoami", headers=auth)
    assert reply.status_code == 401
    assert reply.json() == {
        "error": "unauthenticated",
        "message": "token expired: its run ended (SUCCEEDED)",
    }


# --- the job gets the run token, never the platform's --------------------------------------


class FakeJobs:
    """The Ray Jobs client, as the scheduler uses it to submit."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.submitted: list[dict[str, Any]] = []

    def submit_job(self, **kwargs: Any) -> str:
        if self.fail:
            raise ConnectionError("the Jobs agent is not up yet")
        self.submitted.append(kwargs)
        return str(kwargs["submission_id"])


@pytest.fixture
def admin_settings(settings: Settings, admin_token: str) -> Settings:
    """Settings of a process that holds the admin token (as `dlp up`'s would)."""
    settings.admin_token_path.write_text(admin_token + "\n")
    return load_settings(home=settings.home, token=admin_token, gateway_url="http://gw:9000/")


def _scheduler(store: MetadataStore, settings: Settings, jobs: FakeJobs) -> Any:
    """The scheduler actor's body, without its actor and thread, on a real store."""
    scheduler: Any = object.__new__(_Scheduler)
    scheduler.__dict__.update(
        _settings=settings, _store=store, _client=jobs, _reasons={}, _submit_failures={},
        errors=[],
    )  # fmt: skip
    return scheduler


def test_the_job_gets_the_owners_run_token_and_no_admin_token(
    store: MetadataStore, alice: Principal, admin_settings: Settings, admin_token: str
) -> None:
    spec = {**USER_CODE, "runtime_env": {"env_vars": {"MINE": "1", "DLP_TOKEN": "forged"}}}
    run = _run(store, status=RunStatus.QUEUED, spec=spec)
    jobs = FakeJobs()
    scheduler = _scheduler(store, admin_settings, jobs)
    scheduler._launch(run, TrainingJobSpec.model_validate_json(run.spec_json), False)
    (submitted,) = jobs.submitted
    env = submitted["runtime_env"]["env_vars"]
    assert env["MINE"] == "1" and env["DLP_URL"] == "http://gw:9000"
    principal = authenticate(store, env["DLP_TOKEN"])  # the run token, not the spec's
    assert principal == alice
    (token,) = store.list_tokens(run_id=run.id)
    assert token.user == "alice" and env["DLP_TOKEN"].startswith(token.prefix)
    assert admin_token not in str(submitted)
    # the stored run (its spec is shown to viewers) holds no credential
    stored = store.get_run(run.id)
    assert stored.status is RunStatus.RUNNING and stored.name == f"dlp-{run.id}"
    assert env["DLP_TOKEN"] not in stored.model_dump_json()
    assert "DLP_URL" not in stored.spec_json and "forged" in stored.spec_json


def test_job_env_never_carries_a_token(admin_settings: Settings, admin_token: str) -> None:
    env = job_env(admin_settings)
    assert not any("TOKEN" in key for key in env)
    assert admin_token not in "".join(env.values())
    full = job_runtime_env(admin_settings, TrainingJobSpec(**USER_CODE), None)["env_vars"]
    assert full["DLP_TOKEN"] == ""  # set, so the cluster's own DLP_TOKEN never reaches a job
    assert admin_token not in str(full)


def test_a_system_run_gets_no_token(store: MetadataStore, settings: Settings) -> None:
    run = _run(store, owner=SYSTEM.name, status=RunStatus.QUEUED)
    jobs = FakeJobs()
    _scheduler(store, settings, jobs)._launch(run, TrainingJobSpec(**USER_CODE), False)
    assert jobs.submitted[0]["runtime_env"]["env_vars"]["DLP_TOKEN"] == ""
    assert store.list_tokens() == []


def test_a_failed_submission_revokes_the_token(
    store: MetadataStore, alice: Principal, settings: Settings
) -> None:
    run = _run(store, status=RunStatus.QUEUED)
    _scheduler(store, settings, FakeJobs(fail=True))._launch(
        run, TrainingJobSpec(**USER_CODE), False
    )
    assert store.get_run(run.id).status is RunStatus.QUEUED  # back in the queue, retried later
    (token,) = store.list_tokens(run_id=run.id)
    assert token.revoked_at is not None


def test_the_token_is_revoked_when_the_run_ends_fails_or_is_cancelled(
    backend: Backend, store: MetadataStore, alice: Principal, settings: Settings
) -> None:
    finished, failed, cancelled = _run(store), _run(store), _run(store, status=RunStatus.QUEUED)
    for run in (finished, failed, cancelled):
        issue_run_token(store, "alice", run.id, TTL_S)
    finish(backend, finished.id, RunStatus.SUCCEEDED)  # the job's own ending
    _scheduler(store, settings, FakeJobs())._fail_if_running(failed.id, "driver died")
    service.cancel_job(backend, alice, cancelled.id)
    for run in (finished, failed, cancelled):
        (token,) = store.list_tokens(run_id=run.id)
        assert token.revoked_at is not None, run.id
    actors = {e.detail.split(": ")[-1]: e.actor for e in store.list_audit(action="tokens.revoke")}
    assert actors == {
        "its run ended (SUCCEEDED)": "system",
        "its Ray job ended": "system",
        "its job was cancelled": "alice",
    }


def test_internal_gateway_url(tmp_path: Any) -> None:
    def url(**fields: Any) -> str:
        return Settings(home=tmp_path, **fields).internal_gateway_url

    assert url() == "http://127.0.0.1:8000"
    assert url(host="0.0.0.0", port=8100) == "http://127.0.0.1:8100"
    assert url(host="localhost") == "http://127.0.0.1:8000"
    assert url(host="10.1.2.3", port=80) == "http://10.1.2.3:80"
    assert url(host="fd00::5") == "http://[fd00::5]:8000"
    assert url(host="10.1.2.3", gateway_url="https://dlp.example.com/") == "https://dlp.example.com"


def test_a_workflow_runs_token_ends_with_the_workflow_run(
    store: MetadataStore, alice: Principal
) -> None:
    """Workflow steps get the same kind of token, bound to their workflow run."""
    from dlplatform.metadata import WorkflowRun

    run = store.create_workflow_run(
        WorkflowRun(
            id="wf-1",
            workflow="m:f",
            params_json="{}",
            owner="alice",
            status=RunStatus.RUNNING,
            created_at=utcnow(),
        )
    )
    secret, info = issue_run_token(store, "alice", run.id, 3600)
    assert info.run_id == "wf-1"
    assert authenticate(store, secret).name == "alice"
    with pytest.raises(InvalidInput, match="belongs to alice"):
        issue_run_token(store, "admin", run.id, 3600)
    store.update_workflow_run(run.id, status=RunStatus.FAILED, ended_at=utcnow())
    with pytest.raises(Unauthenticated, match=r"its run ended \(FAILED\)"):
        authenticate(store, secret)
