"""The dataset routes through the real gateway app (in-process), with streamed uploads."""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlplatform.access import bootstrap_admin
from dlplatform.api.app import create_app
from dlplatform.config import load_settings
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore
from dlplatform.metadata.artifacts import ArtifactStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

CSV = "x,name\n" + "".join(f"{i},n{i % 3}\n" for i in range(100))


@pytest.fixture
def client(backend: Backend, admin_token: str) -> Iterator[TestClient]:
    with TestClient(
        create_app(backend),
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {admin_token}"},
    ) as c:
        yield c


def _chunks(text: str, size: int = 64) -> Iterator[bytes]:
    raw = text.encode()
    for i in range(0, len(raw), size):
        yield raw[i : i + size]


def test_create_upload_list_rollback_sample(client: TestClient) -> None:
    r = client.post(
        "/api/v1/datasets",
        json={
            "name": "clicks",
            "description": "d",
            "schema": [{"name": "x", "type": "int64"}, {"name": "name", "type": "string"}],
        },
    )
    assert r.status_code == 201, r.text
    assert client.post("/api/v1/datasets", json={"name": "clicks"}).status_code == 409
    assert client.post("/api/v1/datasets", json={"name": "Bad Name"}).status_code == 422
    # A streamed (chunked) CSV upload.
    r = client.post(
        "/api/v1/datasets/clicks/commits?message=first",
        content=_chunks(CSV),
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["row_count"] == 100 and first["message"] == "first"
    buf = io.BytesIO()
    pq.write_table(pa.table({"x": pa.array([1000, 1001]), "name": ["a", "b"]}), buf)
    r = client.post("/api/v1/datasets/clicks/commits?filename=more.parquet", content=buf.getvalue())
    assert r.status_code == 201, r.text
    assert r.json()["row_count"] == 102
    commits = client.get("/api/v1/datasets/clicks/commits").json()
    assert [c["row_count"] for c in commits] == [102, 100]
    r = client.post("/api/v1/datasets/clicks/rollback", json={"commit": first["id"]})
    assert r.status_code == 201, r.text
    assert r.json()["version_hash"] == first["version_hash"]
    head = client.get("/api/v1/datasets/clicks/commits/head").json()
    assert head["row_count"] == 100 and len(head["parts"]) == 1
    r = client.get(f"/api/v1/datasets/clicks/commits/{first['id']}/sample?n=5")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == ["x", "name"] and len(body["rows"]) == 5
    assert [d["name"] for d in client.get("/api/v1/datasets").json()] == ["clicks"]
    assert client.get("/api/v1/datasets/clicks").json()["head"] == head["id"]


def test_sample_of_nan_and_bytes_is_valid_json(backend: Backend, client: TestClient) -> None:
    from dlplatform import data
    from dlplatform.access import SYSTEM

    data.create_dataset(backend, SYSTEM, "odd")
    data.push(backend, SYSTEM, "odd", pa.table({"v": [1.0, float("nan")], "b": [b"\xff", b"ok"]}))
    r = client.get("/api/v1/datasets/odd/commits/head/sample?n=2")
    assert r.status_code == 200, r.text
    assert [row["v"] for row in r.json()["rows"]] == [1.0, None]


def test_upload_errors(client: TestClient) -> None:
    client.post("/api/v1/datasets", json={"name": "logs"})
    r = client.post(
        "/api/v1/datasets/logs/commits",
        content=b"x,y\n1,2\n3\n",
        headers={"Content-Type": "text/csv"},
    )
    assert r.status_code == 422 and "line 3" in r.json()["message"]
    r = client.post("/api/v1/datasets/logs/commits?filename=a.xlsx", content=b"PK\x03\x04")
    assert r.status_code == 422 and r.json()["error"] == "invalid_input"
    r = client.post("/api/v1/datasets/logs/commits?format=csv", content=b"")
    assert r.status_code == 422 and "empty" in r.json()["message"]
    r = client.get("/api/v1/datasets/logs/commits/0123456789abcdef")
    assert r.status_code == 404
    r = client.post("/api/v1/datasets/nope/commits?format=csv", content=b"a\n1\n")
    assert r.status_code == 404
    r = client.post(
        "/api/v1/datasets/logs/commits?format=csv", content=b"a\n1\n", headers={"Authorization": ""}
    )
    assert r.status_code == 401


def test_upload_over_the_limit_is_413_and_commits_nothing(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "small", max_upload_bytes=1024)
    store = MetadataStore(settings.metadata_path)
    try:
        backend = Backend(
            store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings
        )
        token = bootstrap_admin(store)
        with TestClient(
            create_app(backend),
            base_url="http://127.0.0.1",
            headers={"Authorization": f"Bearer {token}"},
        ) as client:
            assert client.post("/api/v1/datasets", json={"name": "big"}).status_code == 201
            big = "x\n" + "".join(f"{i}\n" for i in range(1000))
            # Chunked: no Content-Length, so the limit is enforced while streaming.
            r = client.post("/api/v1/datasets/big/commits?format=csv", content=_chunks(big))
            assert r.status_code == 413, r.text
            assert r.json()["error"] == "too_large"
            # Declared length: rejected before the body is read.
            r = client.post("/api/v1/datasets/big/commits?format=csv", content=big.encode())
            assert r.status_code == 413
            assert client.get("/api/v1/datasets/big/commits").json() == []
            assert backend.artifacts.list() == []
            assert list((settings.home / "uploads").glob("*")) == []
            small = "x\n1\n2\n"
            r = client.post("/api/v1/datasets/big/commits?format=csv", content=_chunks(small))
            assert r.status_code == 201, r.text
    finally:
        store.close()
