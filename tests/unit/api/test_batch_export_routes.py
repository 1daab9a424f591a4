"""``GET /metadata/export`` (a ZIP of Parquet tables) and ``POST /batch-predictions``'s checks,
through the gateway app in-process over a real DuckDB store. The batch run itself needs Ray:
``tests/integration/test_serving_shared_batch.py`` calls the route through Serve."""

from __future__ import annotations

import io
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from fixtures_client import bearer

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.api.app import API_PREFIX
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, ModelVersion, Role
from dlplatform.metadata.records import utcnow
from dlplatform.metadata.store import EXPORTED_TABLES

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8000"
EXPORT = f"{API_PREFIX}/metadata/export"
BATCH = f"{API_PREFIX}/batch-predictions"


def _user_token(backend: Backend, name: str, role: Role) -> str:
    return access.create_user(backend, access.SYSTEM, UserSpec(name=name, role=role)).token


def _assert_error(reply: Any, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error", "message"} and body["error"] == code, body
    assert "Traceback" not in reply.text
    return dict(body)


def _export_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("dlp-metadata-export-*"))


# --- GET /metadata/export -----------------------------------------------------------------------


def test_admin_downloads_every_table_as_parquet_in_a_zip(
    lenient_client: TestClient, backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    _user_token(backend, "vic", Role.VIEWER)
    before = _export_dirs()
    reply = lenient_client.get(EXPORT, headers=bearer(admin_token))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/zip"
    disposition = reply.headers["content-disposition"]
    assert disposition == 'attachment; filename="dlplatform-metadata.zip"'
    assert int(reply.headers["content-length"]) == len(reply.content)

    with zipfile.ZipFile(io.BytesIO(reply.content)) as zf:
        assert zf.testzip() is None
        names = zf.namelist()
        assert sorted(names) == sorted(f"{t}.parquet" for t in EXPORTED_TABLES)
        tables = {n.removesuffix(".parquet"): pq.read_table(io.BytesIO(zf.read(n))) for n in names}
    users = tables["users"].to_pylist()
    assert {(u["name"], u["role"]) for u in users} == {("admin", "admin"), ("vic", "viewer")}
    tokens = tables["tokens"]
    assert tokens.num_rows == 2 and "token_hash" not in tokens.column_names
    assert admin_token.encode() not in reply.content
    assert access.hash_token(admin_token).encode() not in reply.content

    # audited once, as the admin; the temporary directory is gone after the response
    entries = store.list_audit(actor="admin", action="metadata.export")
    assert [(e.target, e.outcome) for e in entries] == [("metadata", "ok")]
    assert f"{len(EXPORTED_TABLES)} tables" in entries[0].detail
    assert _export_dirs() <= before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.DATA_SCIENTIST])
def test_metadata_export_is_admin_only_and_the_denial_audited(
    lenient_client: TestClient, backend: Backend, store: MetadataStore, role: Role
) -> None:
    token = _user_token(backend, "nadia", role)
    before = _export_dirs()
    _assert_error(lenient_client.get(EXPORT, headers=bearer(token)), 403, "permission_denied")
    denied = store.list_audit(actor="nadia", outcome="denied")
    assert [(e.action, e.target) for e in denied] == [("audit.view", "metadata")]
    assert store.list_audit(action="metadata.export") == []
    assert _export_dirs() <= before


def test_metadata_export_needs_a_token(lenient_client: TestClient) -> None:
    _assert_error(lenient_client.get(EXPORT), 401, "unauthenticated")


def test_metadata_export_route_in_openapi(lenient_client: TestClient) -> None:
    doc = lenient_client.get(f"{API_PREFIX}/openapi.json").json()
    op = doc["paths"][EXPORT]["get"]
    assert "application/zip" in op["responses"]["200"]["content"]
    assert op["security"] == [{"bearerAuth": []}]


def test_export_table_refuses_unknown_tables(store: MetadataStore) -> None:
    from dlplatform.errors import InvalidInput

    for bad in ("schema_version", "users; DROP TABLE users", "../users"):
        with pytest.raises(InvalidInput, match="not an exported metadata table"):
            store.export_table(bad)
    assert "token_hash" not in store.export_table("tokens").column_names


# --- POST /batch-predictions (validation and errors; the run needs Ray) -------------------------


def _model(store: MetadataStore, name: str) -> ModelVersion:
    return store.add_model_version(
        ModelVersion(model=name, version=0, run_id=None, artifact_sha256="ab" * 32,
                     signature_json="{}", created_at=utcnow())
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "dataset": "d", "output": "o", "workers": 0}, "workers"),
        ({"model": "m", "dataset": "d", "output": "o", "workers": 65}, "workers"),
        ({"model": "m", "dataset": "d", "output": "o", "workers": "many"}, "workers"),
        ({"model": "m", "dataset": "d", "output": "../o"}, "output"),
        ({"model": "m", "dataset": "d", "output": "O"}, "output"),
        ({"model": "m", "dataset": "d"}, "output"),
        ({"model": "m", "dataset": "d", "output": "o", "extra": 1}, "extra"),
    ],
)
def test_batch_predict_request_validation_is_422(
    lenient_client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    error = _assert_error(lenient_client.post(BATCH, json=body, headers=bearer(admin_token)), 422,
                          "invalid_input")  # fmt: skip
    assert field in error["message"]


def test_batch_predict_unknown_model_or_dataset_is_404(
    lenient_client: TestClient, store: MetadataStore, admin_token: str
) -> None:
    h = bearer(admin_token)
    reply = lenient_client.post(
        BATCH, json={"model": "ghost", "dataset": "d", "output": "o"}, headers=h
    )
    assert "ghost" in _assert_error(reply, 404, "not_found")["message"]
    _model(store, "known")
    reply = lenient_client.post(
        BATCH, json={"model": "known@7", "dataset": "d", "output": "o"}, headers=h
    )
    _assert_error(reply, 404, "not_found")
    reply = lenient_client.post(
        BATCH, json={"model": "known@1", "dataset": "nowhere", "output": "o"}, headers=h
    )
    assert "nowhere" in _assert_error(reply, 404, "not_found")["message"]


def test_batch_predict_bad_model_reference_is_422_and_viewer_403(
    lenient_client: TestClient, backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    reply = lenient_client.post(
        BATCH, json={"model": "Bad Name", "dataset": "d", "output": "o"},
        headers=bearer(admin_token),
    )  # fmt: skip
    assert "model reference" in _assert_error(reply, 422, "invalid_input")["message"]
    _model(store, "known")
    viewer = _user_token(backend, "vic", Role.VIEWER)
    reply = lenient_client.post(
        BATCH, json={"model": "known", "dataset": "d", "output": "o"}, headers=bearer(viewer)
    )
    _assert_error(reply, 403, "permission_denied")
    denied = store.list_audit(actor="vic", outcome="denied")
    assert [(e.action, e.target) for e in denied] == [("predict", "model:known")]
