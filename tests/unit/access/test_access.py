"""Access control in the service layer: roles, tokens, the user/token/audit services, lineage."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dlplatform import access
from dlplatform.access import (
    PERMISSIONS,
    SYSTEM,
    Permission,
    Principal,
    UserSpec,
    authenticate,
    authorize,
)
from dlplatform.context import Backend
from dlplatform.errors import (
    AlreadyExists,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from dlplatform.lineage import query_lineage
from dlplatform.metadata import LineageEdge, MetadataStore, Role


def _new(backend: Backend, name: str, role: Role, groups: tuple[str, ...] = ()) -> str:
    return access.create_user(backend, SYSTEM, UserSpec(name=name, role=role, groups=groups)).token


def test_permission_table_in_the_docstring_matches_the_code() -> None:
    lines = (access.__doc__ or "").splitlines()
    border = next(line for line in lines if line.startswith("====="))
    spans = [m.span() for m in re.finditer(r"=+", border)]
    first = lines.index(border)
    header, rows = lines[first + 1], lines[first + 3 :]
    roles = [header[a:b].strip() for a, b in spans[1:]]
    assert roles == [r.value for r in Role]
    table: dict[str, set[str]] = {}
    for row in rows:
        if row.startswith("====="):
            break
        cells = [row[a:b].strip() for a, b in spans]
        table[cells[0]] = {role for role, cell in zip(roles, cells[1:], strict=True) if cell == "x"}
    assert set(table) == {p.value for p in Permission}
    for permission in Permission:
        expected = {role.value for role, perms in PERMISSIONS.items() if permission in perms}
        assert table[permission.value] == expected, permission


def test_tokens_are_hashed_and_authenticate(backend: Backend, store: MetadataStore) -> None:
    token = _new(backend, "ann", Role.RESEARCHER, ("team-a",))
    principal = authenticate(store, token)
    assert principal == Principal(name="ann", role=Role.RESEARCHER, groups=("team-a",))
    raw = store._db.dicts("SELECT token_hash FROM tokens WHERE user_name = 'ann'")
    assert raw and token not in str(raw)
    for bad in (None, "", "dlp_x", token + "x", "hunter2-password"):
        with pytest.raises(Unauthenticated):
            authenticate(store, bad)
    denied = store.list_audit(action="authenticate", outcome="denied")
    targets = sorted(e.target for e in denied)
    token_id = token.split("_")[1]
    assert targets == sorted(["token:malformed", "token:malformed", f"token:{token_id}"])
    assert "hunter2" not in str(denied) and token not in str(denied)


def test_authorize_roles_and_groups_and_audits_denials(store: MetadataStore) -> None:
    viewer = Principal(name="v", role=Role.VIEWER, groups=("g1",))
    authorize(store, viewer, Permission.DATASET_VIEW, "dataset:d", groups=("g1", "g2"))
    # a dataset hidden by its groups answers as a missing one, even for a permission the role
    # lacks: the same status and message, no group names
    for permission in (Permission.DATASET_VIEW, Permission.DATASET_WRITE):
        with pytest.raises(NotFound, match=r"^dataset 'd' does not exist$"):
            authorize(store, viewer, permission, "dataset:d", groups=("g2",))
    with pytest.raises(PermissionDenied, match=r"lacks permission dataset\.write"):
        authorize(store, viewer, Permission.DATASET_WRITE, "dataset:d")
    authorize(store, SYSTEM, Permission.DATASET_WRITE, "dataset:d", groups=("g9",))
    denied = store.list_audit(actor="v", outcome="denied")
    assert [(e.action, e.target) for e in denied] == [
        ("dataset.write", "dataset:d"),
        ("dataset.write", "dataset:d"),
        ("dataset.view", "dataset:d"),
    ]
    assert "restricted to groups g2" in denied[1].detail  # the admins' audit log says why


def test_create_user_admin_only_and_audited(backend: Backend, store: MetadataStore) -> None:
    created = access.create_user(backend, SYSTEM, UserSpec(name="eve", role=Role.APP))
    assert created.user.role is Role.APP and created.info.user == "eve"
    assert authenticate(store, created.token).name == "eve"
    with pytest.raises(AlreadyExists):
        access.create_user(backend, SYSTEM, UserSpec(name="eve", role=Role.VIEWER))
    eve = authenticate(store, created.token)
    with pytest.raises(PermissionDenied):
        access.create_user(backend, eve, UserSpec(name="zed", role=Role.ADMIN))
    with pytest.raises(PermissionDenied):
        access.list_users(backend, eve)
    [ok] = store.list_audit(action="users.create", outcome="ok")
    assert (ok.actor, ok.target) == ("system", "user:eve") and created.token not in ok.detail
    denied = store.list_audit(actor="eve", outcome="denied")
    assert [e.target for e in denied] == ["users", "user:zed"]


def test_tokens_self_service_and_revocation(backend: Backend, store: MetadataStore) -> None:
    token = _new(backend, "fay", Role.DATA_SCIENTIST)
    fay = authenticate(store, token)
    _new(backend, "gus", Role.VIEWER)
    extra = access.create_token(backend, fay, "fay")
    assert authenticate(store, extra.token).name == "fay"
    assert len(access.list_tokens(backend, fay, "fay")) == 2
    with pytest.raises(PermissionDenied):
        access.list_tokens(backend, fay, "gus")
    with pytest.raises(PermissionDenied):
        access.create_token(backend, fay, "gus")
    gus_token = access.list_tokens(backend, SYSTEM, "gus")[0]
    # another user's token looks like a missing one, and the attempt is audited
    with pytest.raises(NotFound):
        access.revoke_token(backend, fay, gus_token.id)
    assert store.list_audit(actor="fay", action="tokens.revoke", outcome="denied")
    info = access.revoke_token(backend, fay, extra.info.id)
    assert info.revoked_at is not None
    assert access.revoke_token(backend, fay, extra.info.id).revoked_at == info.revoked_at
    with pytest.raises(Unauthenticated):
        authenticate(store, extra.token)
    access.revoke_token(backend, SYSTEM, gus_token.id)  # an admin may revoke anyone's
    for bad in ("", "..", "ZZZZZZZZZZZZ", "a" * 300):
        with pytest.raises(InvalidInput):
            access.revoke_token(backend, SYSTEM, bad)
    with pytest.raises(InvalidInput):
        access.list_tokens(backend, SYSTEM, "../etc")
    with pytest.raises(NotFound):
        access.list_tokens(backend, SYSTEM, "nobody")


def test_read_audit_filters_paginates_and_is_audited(
    backend: Backend, store: MetadataStore
) -> None:
    for name in ("h1", "h2", "h3"):
        _new(backend, name, Role.VIEWER)
    page = access.read_audit(backend, SYSTEM, action="users.create", limit=2)
    assert [e.target for e in page] == ["user:h3", "user:h2"]
    rest = access.read_audit(backend, SYSTEM, action="users.create", limit=2, offset=2)
    assert [e.target for e in rest] == ["user:h1"]
    assert access.read_audit(backend, SYSTEM, action="audit.view", limit=5)
    for kwargs in ({"limit": 0}, {"limit": 5000}, {"offset": -1}, {"outcome": "nah"}):
        with pytest.raises(InvalidInput):
            access.read_audit(backend, SYSTEM, **kwargs)  # type: ignore[arg-type]
    viewer = authenticate(store, _new(backend, "h4", Role.VIEWER))
    with pytest.raises(PermissionDenied):
        access.read_audit(backend, viewer)


def test_lineage_service_checks_input_and_permission(
    backend: Backend, store: MetadataStore
) -> None:
    store.add_edges([LineageEdge(src="commit:c-9", dst="run:r-9", relation="trained_on")])
    viewer = authenticate(store, _new(backend, "lin", Role.VIEWER))
    assert [n.entity for n in query_lineage(backend, viewer, "run:r-9")] == ["commit:c-9"]
    assert [n.entity for n in query_lineage(backend, viewer, "commit:c-9", direction="down")] == [
        "run:r-9"
    ]
    for bad in ("run", "table:x", "run:../x", "run:" + "a" * 300):
        with pytest.raises(InvalidInput):
            query_lineage(backend, viewer, bad)
    with pytest.raises(InvalidInput):
        query_lineage(backend, viewer, "run:r-9", direction="left")  # type: ignore[arg-type]
    app = authenticate(store, _new(backend, "appy", Role.APP))
    with pytest.raises(PermissionDenied):
        query_lineage(backend, app, "run:r-9")


def test_export_metadata_is_admin_only(
    backend: Backend, store: MetadataStore, tmp_path: Path
) -> None:
    files = access.export_metadata(backend, SYSTEM, str(tmp_path / "out"))
    assert any(f.endswith("audit_log.parquet") for f in files)
    viewer = authenticate(store, _new(backend, "exp", Role.VIEWER))
    with pytest.raises(PermissionDenied):
        access.export_metadata(backend, viewer, str(tmp_path / "out2"))
    assert store.list_audit(action="metadata.export", outcome="ok")
