"""``POST /admin/backup`` through the gateway app in-process, over a real DuckDB store and a real
artifact root: the tar stream, what it holds, who may take it, and the audit."""

from __future__ import annotations

import io
import tarfile
import warnings
from pathlib import Path
from typing import Any

import pytest
from fixtures_client import bearer

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.api.app import API_PREFIX
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, Role
from dlplatform.metadata.backup import (
    MANIFEST_FILE,
    METADATA_FILE,
    TAR_MEDIA_TYPE,
    BackupManifest,
    from_tar,
    write_backup,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BACKUP = f"{API_PREFIX}/admin/backup"


def _members(content: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(content), mode="r:") as archive:
        return archive.getmembers()


def _snapshots(store: MetadataStore) -> list[Path]:
    folder = Path(f"{store.path}.snapshots")
    return list(folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("with_artifacts", [False, True])
def test_admin_gets_a_tar_stream_with_the_manifest_last(
    lenient_client: TestClient, backend: Backend, store: MetadataStore, admin_token: str,
    tmp_path: Path, with_artifacts: bool,
) -> None:  # fmt: skip
    weights = backend.artifacts.put_bytes(b"model weights")
    params: dict[str, Any] = {"with_artifacts": with_artifacts}
    reply = lenient_client.post(BACKUP, params=params, headers=bearer(admin_token))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == TAR_MEDIA_TYPE
    assert "dlplatform-backup.tar" in reply.headers["content-disposition"]
    names = [m.name for m in _members(reply.content)]
    copy = f"artifacts/{backend.artifacts.relative_path(weights.sha256)}"
    assert names == [METADATA_FILE, *([copy] if with_artifacts else []), MANIFEST_FILE]

    manifest = write_backup(from_tar([reply.content]), tmp_path / "bk")
    assert manifest == BackupManifest.model_validate_json(
        (tmp_path / "bk" / MANIFEST_FILE).read_text()
    )
    assert [e.sha256 for e in manifest.artifacts] == [weights.sha256]
    assert manifest.has_artifacts is with_artifacts
    copy_store = MetadataStore(tmp_path / "bk" / METADATA_FILE)
    try:
        assert [u.name for u in copy_store.list_users()] == ["admin"]
    finally:
        copy_store.close()

    entries = store.list_audit(actor="admin", action="metadata.backup")
    assert [(e.target, e.outcome) for e in entries] == [("metadata", "ok")]
    assert "1 artifacts" in entries[0].detail
    assert _snapshots(store) == []


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DATA_SCIENTIST, Role.DATA_ENGINEER])
def test_a_non_admin_gets_403_and_the_denial_is_audited(
    lenient_client: TestClient, backend: Backend, store: MetadataStore, role: Role
) -> None:
    token = access.create_user(backend, access.SYSTEM, UserSpec(name="nadia", role=role)).token
    reply = lenient_client.post(BACKUP, headers=bearer(token))
    assert reply.status_code == 403, reply.text
    assert reply.json()["error"] == "permission_denied"
    denied = store.list_audit(actor="nadia", outcome="denied")
    assert [(e.action, e.target) for e in denied] == [("audit.view", "metadata")]
    assert store.list_audit(action="metadata.backup") == []
    assert _snapshots(store) == []  # refused before any snapshot was taken


def test_a_backup_needs_a_token(lenient_client: TestClient) -> None:
    reply = lenient_client.post(BACKUP)
    assert reply.status_code == 401 and reply.json()["error"] == "unauthenticated"


def test_the_backup_route_is_in_openapi(lenient_client: TestClient) -> None:
    op = lenient_client.get(f"{API_PREFIX}/openapi.json").json()["paths"][BACKUP]["post"]
    assert TAR_MEDIA_TYPE in op["responses"]["200"]["content"]
    assert op["security"] == [{"bearerAuth": []}]
    assert [p["name"] for p in op["parameters"]] == ["with_artifacts"]
