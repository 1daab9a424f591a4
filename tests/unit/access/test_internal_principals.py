"""The platform's own principals (issue #18): no user may take their names, and a run acts as its
owner or fails, never as the platform (real DuckDB store, the gateway app in-process; no Ray)."""

from __future__ import annotations

import warnings

import pytest

from dlplatform.access import (
    PERMISSIONS,
    RESERVED_USER_NAMES,
    SYSTEM,
    Permission,
    Principal,
    run_owner,
)
from dlplatform.api.app import API_PREFIX
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import PermissionDenied
from dlplatform.metadata import MetadataStore, Role, User
from dlplatform.metadata.records import utcnow
from dlplatform.workflows import _task, pipelines

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


@pytest.mark.parametrize("name", ["system", "anonymous"])
def test_internal_names_cannot_be_taken_by_a_user(
    client: TestClient, store: MetadataStore, admin_token: str, name: str
) -> None:
    auth = {"Authorization": f"Bearer {admin_token}"}
    reply = client.post(f"{API_PREFIX}/users", json={"name": name, "role": "viewer"}, headers=auth)
    assert reply.status_code == 422, reply.text
    assert reply.json() == {
        "error": "invalid_input",
        "message": f"user name {name!r} is reserved for the platform's own principals "
        "(anonymous, system): choose another name",
    }
    assert [u.name for u in store.list_users()] == ["admin"]
    ok = client.post(f"{API_PREFIX}/users", json={"name": "systems", "role": "viewer"},
                     headers=auth)  # fmt: skip
    assert ok.status_code == 201, ok.text


def test_the_reserved_names_are_the_internal_principals() -> None:
    assert SYSTEM.name in RESERVED_USER_NAMES and "anonymous" in RESERVED_USER_NAMES


def test_code_run_defaults_match_the_permission_table(settings: Settings) -> None:
    holders = {role for role, perms in PERMISSIONS.items() if Permission.CODE_RUN in perms}
    assert set(settings.code_run_roles) == holders == {Role.ADMIN, Role.DATA_SCIENTIST}


def test_run_owner_is_the_user_or_the_platform_never_a_stand_in(store: MetadataStore) -> None:
    store.create_user(User(name="alice", role=Role.RESEARCHER, created_at=utcnow()))
    assert run_owner(store, "alice") == Principal(name="alice", role=Role.RESEARCHER)
    assert run_owner(store, "system") is SYSTEM
    with pytest.raises(PermissionDenied, match="owner 'ghost' no longer exists"):
        run_owner(store, "ghost")
    with pytest.raises(PermissionDenied, match="owner 'anonymous' no longer exists"):
        run_owner(store, "anonymous")


def test_a_workflow_step_of_a_missing_owner_fails(backend: Backend, settings: Settings) -> None:
    """Before: ``pipelines._context`` ran a step of a run owned by a user named ``system`` as the
    platform (admin); now the owner must exist and a missing one fails the step clearly."""
    ctx = _task.StepContext(settings, "wf-1", "train_model", "ghost", _backend=[backend])
    token = _task._CURRENT.set(ctx)
    try:
        with pytest.raises(PermissionDenied, match="owner 'ghost' no longer exists"):
            pipelines.train_model("digits", "c-1", "target", {})
    finally:
        _task._CURRENT.reset(token)
