"""Datasets on a real Ray cluster: to_ray over real Parquet parts, transforms, the s3:// root."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pytest

from dlplatform import data
from dlplatform.access import Principal
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore
from dlplatform.metadata.artifacts import ArtifactStore

pytestmark = pytest.mark.integration


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "x": pa.array(range(start, start + n), pa.int64()),
            "y": pa.array([float(i) / 2 for i in range(start, start + n)], pa.float32()),
        }
    )


def test_to_ray_reads_exactly_the_commit(
    ray_cluster: None, backend: Backend, admin: Principal, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlplatform.data import _io

    monkeypatch.setattr(_io, "PART_TARGET_BYTES", 4000)  # several parts per push
    data.create_dataset(backend, admin, "rays")
    c1 = data.push(backend, admin, "rays", _table(1000))
    c2 = data.push(backend, admin, "rays", _table(500, 1000))
    assert len(c1.parts) > 2 and len(c2.parts) > len(c1.parts)
    ds = data.to_ray(backend, data.resolve(backend, admin, f"rays@{c1.id}"))
    rows = ds.to_arrow_refs()
    import ray

    table = pa.concat_tables(ray.get(rows))
    assert sorted(table.column("x").to_pylist()) == list(range(1000))
    head = data.to_ray(backend, data.resolve(backend, admin, "rays"), columns=["x"])
    assert head.count() == 1500
    assert sorted(r["x"] for r in head.take_all()) == list(range(1500))
    assert head.schema().names == ["x"]


def test_transform_commits_a_derived_version_with_lineage(
    ray_cluster: None, backend: Backend, admin: Principal
) -> None:
    def add_ten(batch: pa.Table) -> pa.Table:
        """The transform under test (nested, so Ray pickles it by value; its source is hashed)."""
        import pyarrow.compute as pc

        return batch.set_column(0, "x", pc.add(batch.column("x"), 10))

    data.create_dataset(backend, admin, "raw")
    src = data.push(backend, admin, "raw", _table(300))
    out = data.transform(backend, admin, "raw", add_ten, "shifted")
    assert out.dataset == "shifted" and out.row_count == 300
    assert (
        ":test_transform_commits_a_derived_version_with_lineage.<locals>.add_ten sha256="
        in out.notes
    )
    table = data.to_arrow(backend, data.resolve(backend, admin, "shifted"))
    assert sorted(table.column("x").to_pylist()) == list(range(10, 310))
    up = backend.store.upstream(f"commit:{out.id}", 1)
    assert any(n.entity == f"commit:{src.id}" and n.relation == "transform" for n in up)


def test_s3_round_trip(
    ray_cluster: None,
    s3_server: str,
    s3_root: str,
    settings: Settings,
    tmp_path: Path,
    admin: Principal,
) -> None:
    store = MetadataStore(tmp_path / "s3meta.duckdb")
    try:
        backend = Backend(
            store=store,
            artifacts=ArtifactStore(s3_root, s3_endpoint_url=s3_server),
            settings=settings,
        )
        data.create_dataset(backend, admin, "remote")
        t = _table(2000)
        commit = data.push(backend, admin, "remote", t)
        assert backend.artifacts.exists(commit.parts[0].sha256)
        head = data.resolve(backend, admin, "remote")
        assert data.to_arrow(backend, head).equals(t)
        # The session's Ray workers may predate the S3 server's credentials in the environment.
        creds = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        rows = data.to_ray(backend, head, runtime_env={"env_vars": creds}).take_all()
        assert sorted(r["x"] for r in rows) == list(range(2000))
    finally:
        store.close()
