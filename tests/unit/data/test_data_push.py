"""Pushing data: files, schema checks, modes, concurrency, rollback, crashes, gc."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from dlplatform import data
from dlplatform.access import Principal
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied, SchemaMismatch
from dlplatform.metadata import MetadataStore, Role
from dlplatform.metadata.artifacts import ArtifactStore


def _table(n: int = 10, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "x": pa.array(range(start, start + n), pa.int64()),
            "name": pa.array([f"n{i % 3}" for i in range(start, start + n)]),
        }
    )


@pytest.fixture
def ds(backend: Backend, admin: Principal) -> str:
    data.create_dataset(backend, admin, "events")
    return "events"


def test_schema_mismatch_names_column_and_both_types(
    backend: Backend, admin: Principal, ds: str
) -> None:
    data.push(backend, admin, ds, _table())
    bad = pa.table({"x": pa.array(["a"]), "name": pa.array(["b"])})
    with pytest.raises(SchemaMismatch, match=r"'x'.*string.*int64"):
        data.push(backend, admin, ds, bad)
    with pytest.raises(SchemaMismatch, match=r"'name' is missing.*string"):
        data.push(backend, admin, ds, pa.table({"x": pa.array([1])}))
    with pytest.raises(SchemaMismatch, match=r"'extra'"):
        data.push(backend, admin, ds, _table().append_column("extra", pa.array([1.0] * 10)))
    assert len(data.list_commits(backend, admin, ds)) == 1


def test_safe_widening_and_nullable_column_recorded(
    backend: Backend, admin: Principal, ds: str
) -> None:
    narrow = pa.table({"x": pa.array([1, 2], pa.int32()), "name": pa.array(["a", "b"])})
    data.create_dataset(backend, admin, "narrow")
    data.push(backend, admin, "narrow", narrow)
    wide = data.push(backend, admin, "narrow", _table(3))
    assert "widened x int32->int64" in wide.notes
    head = data.resolve(backend, admin, "narrow")
    table = data.to_arrow(backend, head)
    assert table.schema.field("x").type == pa.int64() and table.num_rows == 5
    added = data.push(
        backend,
        admin,
        "narrow",
        _table(2).append_column("score", pa.array([0.5, None])),
        mode="overwrite",
    )
    assert "added nullable column score double" in added.notes
    assert data.to_arrow(backend, data.resolve(backend, admin, "narrow")).column_names == [
        "x",
        "name",
        "score",
    ]
    # A narrower push into a wider dataset is cast up.
    data.push(backend, admin, ds, _table(1))
    cast = data.push(backend, admin, ds, narrow)
    assert "cast x int32->int64" in cast.notes


def test_malformed_csv_line_is_named(
    backend: Backend, admin: Principal, ds: str, tmp_path: Path
) -> None:
    f = tmp_path / "rows.csv"
    f.write_text("x,name\n1,a\n2,b\n3,c,extra\n4,d\n")
    with pytest.raises(InvalidInput, match="line 4"):
        data.push(backend, admin, ds, f)
    assert data.list_commits(backend, admin, ds) == []


def test_empty_files_are_rejected(
    backend: Backend, admin: Principal, ds: str, tmp_path: Path
) -> None:
    for name in ("empty.csv", "empty.parquet", "empty.jsonl"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(InvalidInput, match="is empty"):
            data.push(backend, admin, ds, tmp_path / name)
    header_only = tmp_path / "header.csv"
    header_only.write_text("x,name\n")
    with pytest.raises(InvalidInput, match="no rows"):
        data.push(backend, admin, ds, header_only)
    with pytest.raises(InvalidInput, match="no rows"):
        data.push(backend, admin, ds, _table(0))


def test_unsupported_file_type(backend: Backend, admin: Principal, ds: str, tmp_path: Path) -> None:
    f = tmp_path / "data.xlsx"
    f.write_bytes(b"PK\x03\x04 not a table")
    with pytest.raises(InvalidInput, match=r"unsupported file type \.xlsx"):
        data.push(backend, admin, ds, f)
    fake = tmp_path / "fake.parquet"
    fake.write_text("x,name\n1,a\n")
    with pytest.raises(InvalidInput, match="not a valid parquet"):
        data.push(backend, admin, ds, fake)
    with pytest.raises(InvalidInput, match="unsupported format"):
        data.push(backend, admin, ds, fake, format="xml")


def test_all_file_formats(backend: Backend, admin: Principal, ds: str, tmp_path: Path) -> None:
    t = _table(4)
    pq.write_table(t, tmp_path / "a.parquet")
    feather.write_feather(t, tmp_path / "a.arrow")
    (tmp_path / "a.csv").write_text("x,name\n" + "".join(f"{i},n{i % 3}\n" for i in range(4)))
    (tmp_path / "a.jsonl").write_text(
        "".join(f'{{"x": {i}, "name": "n{i % 3}"}}\n' for i in range(4))
    )
    (tmp_path / "noext").write_bytes((tmp_path / "a.parquet").read_bytes())
    for name in ("a.parquet", "a.arrow", "a.csv", "a.jsonl", "noext"):
        data.push(backend, admin, ds, tmp_path / name)
    data.push(backend, admin, ds, t.to_pandas())
    head = data.resolve(backend, admin, ds)
    assert head.row_count == 24
    assert data.to_arrow(backend, head).column("x").to_pylist() == list(range(4)) * 6


def test_unknown_commit(backend: Backend, admin: Principal, ds: str) -> None:
    data.push(backend, admin, ds, _table())
    with pytest.raises(NotFound, match="commit 'ffffffffffffffff'"):
        data.get_commit(backend, admin, ds, "ffffffffffffffff")
    with pytest.raises(NotFound):
        data.rollback(backend, admin, ds, "ffffffffffffffff")


def test_rollback_to_commit_of_another_dataset(backend: Backend, admin: Principal, ds: str) -> None:
    data.create_dataset(backend, admin, "other")
    foreign = data.push(backend, admin, "other", _table())
    data.push(backend, admin, ds, _table())
    with pytest.raises(InvalidInput, match="belongs to dataset 'other'"):
        data.rollback(backend, admin, ds, foreign.id)


def test_rollback_restores_content_and_hash(backend: Backend, admin: Principal, ds: str) -> None:
    c1 = data.push(backend, admin, ds, _table(5))
    data.push(backend, admin, ds, _table(5, 5))
    back = data.rollback(backend, admin, ds, c1.id)
    assert back.version_hash == c1.version_hash and back.row_count == 5
    assert data.list_commits(backend, admin, ds)[0].id == back.id
    assert len(data.list_commits(backend, admin, ds)) == 3  # history is kept
    assert data.to_arrow(backend, data.resolve(backend, admin, ds)).equals(
        data.to_arrow(backend, c1)
    )


def test_stale_parent_on_overwrite_conflicts(backend: Backend, admin: Principal, ds: str) -> None:
    c1 = data.push(backend, admin, ds, _table())
    data.push(backend, admin, ds, _table(3))
    with pytest.raises(Conflict, match="not the head"):
        data.push(backend, admin, ds, _table(2), mode="overwrite", parent=c1.id)
    assert data.resolve(backend, admin, ds).row_count == 13


def test_same_data_same_version_hash(backend: Backend, admin: Principal, tmp_path: Path) -> None:
    hashes = []
    for name in ("one", "two"):
        data.create_dataset(backend, admin, name)
        data.push(backend, admin, name, _table(100))
        hashes.append(data.push(backend, admin, name, _table(50, 100)).version_hash)
    assert hashes[0] == hashes[1]
    data.create_dataset(backend, admin, "three")
    assert data.push(backend, admin, "three", _table(100, 1)).version_hash != hashes[0]


def test_append_rebases_when_head_moved(backend: Backend, admin: Principal, ds: str) -> None:
    c1 = data.push(backend, admin, ds, _table(2))
    c2 = data.push(backend, admin, ds, _table(3, 2))
    # A writer that started from c1 appends: its parts land on top of c2 (nothing is lost).
    c3 = data.push(backend, admin, ds, _table(4, 5), parent=c1.id)
    assert c3.parent == c2.id and c3.row_count == 9
    assert data.to_arrow(backend, c3).column("x").to_pylist() == list(range(9))


def test_concurrent_appends_all_land(backend: Backend, admin: Principal, ds: str) -> None:
    data.push(backend, admin, ds, _table(1))
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            data.push(backend, admin, ds, _table(10, 100 * (i + 1)), compute_stats=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    head = data.resolve(backend, admin, ds)
    assert head.row_count == 41 and len(head.parts) == 5


def test_permissions(backend: Backend, admin: Principal, ds: str) -> None:
    researcher = Principal(name="rose", role=Role.RESEARCHER)
    viewer = Principal(name="vic", role=Role.VIEWER)
    engineer = Principal(name="eve", role=Role.DATA_ENGINEER)
    data.push(backend, engineer, ds, _table())
    with pytest.raises(PermissionDenied, match=r"dataset\.write"):
        data.push(backend, researcher, ds, _table())
    with pytest.raises(PermissionDenied, match=r"dataset\.read"):
        data.resolve(backend, viewer, ds)
    assert data.get_dataset(backend, viewer, ds).head is not None
    with pytest.raises(PermissionDenied, match=r"dataset\.export"):
        data.export(backend, researcher, ds, "/nonexistent")
    with pytest.raises(InvalidInput):
        data.create_dataset(backend, admin, "Bad/Name")


def test_describe_stats(backend: Backend, admin: Principal, ds: str) -> None:
    c = data.push(backend, admin, ds, _table(9))
    assert c.stats_json is not None
    stats = data.describe(backend, admin, ds)
    x, name = stats.columns
    assert (x.count, x.nulls, x.min, x.max, x.mean) == (9, 0, 0.0, 8.0, 4.0)
    assert name.top[0].count == 3 and name.approx_distinct == 3


def test_sample_and_export(backend: Backend, admin: Principal, ds: str, tmp_path: Path) -> None:
    data.push(backend, admin, ds, _table(50))
    s = data.read_sample(backend, admin, ds, 5, seed=1)
    assert s.num_rows == 5 and s.equals(data.read_sample(backend, admin, ds, 5, seed=1))
    files = data.export(backend, admin, ds, tmp_path / "out")
    assert sum(pq.read_table(f).num_rows for f in files) == 50


def _crashing_writer(home: str, table_path: str) -> None:
    """Write the parts of a push, then die before the metadata transaction (like a kill -9)."""
    from dlplatform.config import load_settings
    from dlplatform.data import _io

    settings = load_settings(home=home)
    artifacts = ArtifactStore.from_settings(settings)
    table = pq.read_table(table_path)
    _io.write_parts(artifacts, iter([table]))
    os._exit(9)


def test_crash_between_parts_and_commit(
    backend: Backend,
    admin: Principal,
    ds: str,
    settings: Settings,
    tmp_path: Path,
    store: MetadataStore,
) -> None:
    head = data.push(backend, admin, ds, _table(5))
    before = {r.sha256 for r in backend.artifacts.list()}
    pq.write_table(_table(1000, 7), tmp_path / "big.parquet")
    proc = multiprocessing.get_context("spawn").Process(
        target=_crashing_writer, args=(str(settings.home), str(tmp_path / "big.parquet"))
    )
    proc.start()
    proc.join(60)
    assert proc.exitcode == 9
    orphans = {r.sha256 for r in backend.artifacts.list()} - before
    assert orphans  # the writer's parts reached the store ...
    now = data.resolve(backend, admin, ds)
    assert now.id == head.id  # ... but no commit points at them
    assert data.to_arrow(backend, now).num_rows == 5
    report = data.gc(backend, admin, min_age_s=0)
    assert report.deleted >= len(orphans)
    assert {r.sha256 for r in backend.artifacts.list()} == before
    assert data.to_arrow(backend, data.resolve(backend, admin, ds)).num_rows == 5


def test_soft_delete_and_gc(backend: Backend, admin: Principal, ds: str) -> None:
    c = data.push(backend, admin, ds, _table(5))
    data.create_dataset(backend, admin, "kept")
    k = data.push(backend, admin, "kept", _table(6))
    backend.store.add_edges(
        [
            __import__("dlplatform.metadata", fromlist=["LineageEdge"]).LineageEdge(
                src=f"commit:{k.id}", dst="run:r1", relation="trained"
            )
        ]
    )
    data.delete_dataset(backend, admin, ds)
    data.delete_dataset(backend, admin, "kept")
    assert [d.name for d in data.list_datasets(backend, admin)] == []
    report = data.gc(backend, admin, min_age_s=0)
    assert report.purged_datasets == [ds] and report.kept_datasets == ["kept"]
    assert not backend.artifacts.exists(c.parts[0].sha256)
    assert backend.artifacts.exists(k.parts[0].sha256)


def test_push_progress_and_pandas(backend: Backend, admin: Principal, ds: str) -> None:
    seen: list[tuple[int, int]] = []
    df = pd.DataFrame({"x": range(20), "name": ["a"] * 20})
    c = data.push(backend, admin, ds, df, progress=lambda done, total: seen.append((done, total)))
    assert c.row_count == 20 and seen and seen[-1][0] == seen[-1][1]
