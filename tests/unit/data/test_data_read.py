"""The read API other components use: resolve, to_arrow, to_pandas, split, part_paths."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlplatform import data
from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata import Role


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "x": pa.array([float(i) for i in range(start, start + n)], pa.float32()),
            "label": pa.array([i % 3 for i in range(start, start + n)], pa.int64()),
        }
    )


@pytest.fixture
def two_commits(backend: Backend, admin: Principal) -> tuple[str, str]:
    data.create_dataset(backend, admin, "digits")
    c1 = data.push(backend, admin, "digits", _table(100), message="first")
    c2 = data.push(backend, admin, "digits", _table(50, 100), message="second")
    return c1.id, c2.id


def test_resolve_head_and_pinned_commit(
    backend: Backend, admin: Principal, two_commits: tuple[str, str]
) -> None:
    c1, c2 = two_commits
    assert data.resolve(backend, admin, "digits").id == c2
    pinned = data.resolve(backend, admin, f"digits@{c1}")
    assert pinned.id == c1 and pinned.row_count == 100
    reads = backend.store.list_audit(action="dataset.read")
    assert any(e.detail == f"commit={c1}" for e in reads)


def test_resolve_errors(backend: Backend, admin: Principal, two_commits: tuple[str, str]) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        data.resolve(backend, admin, "digits@0123456789abcdef")
    with pytest.raises(NotFound):
        data.resolve(backend, admin, "nope")
    with pytest.raises(InvalidInput):
        data.resolve(backend, admin, "Bad Name")
    with pytest.raises(InvalidInput):
        data.resolve(backend, admin, "digits@../x")


def test_to_arrow_pandas_columns(
    backend: Backend, admin: Principal, two_commits: tuple[str, str]
) -> None:
    c1, _ = two_commits
    head = data.resolve(backend, admin, "digits")
    table = data.to_arrow(backend, head)
    assert table.num_rows == 150
    assert table.column("x").to_pylist() == [float(i) for i in range(150)]
    assert data.to_arrow(backend, head, columns=["label"]).column_names == ["label"]
    old = data.resolve(backend, admin, f"digits@{c1}")
    assert data.to_pandas(backend, old)["x"].tolist() == [float(i) for i in range(100)]
    assert data.arrow_schema(head) == pa.schema({"x": pa.float32(), "label": pa.int64()})
    with pytest.raises(InvalidInput, match="no column 'y'"):
        data.to_arrow(backend, head, columns=["y"])


def test_part_paths_are_the_commit_parts(
    backend: Backend, admin: Principal, two_commits: tuple[str, str]
) -> None:
    head = data.resolve(backend, admin, "digits")
    fs, paths = data.part_paths(backend, head)
    assert len(paths) == 2
    rows = sum(pq.read_table(p, filesystem=fs).num_rows for p in paths)
    assert rows == 150


def test_split_is_deterministic_and_partitions(
    backend: Backend, admin: Principal, two_commits: tuple[str, str]
) -> None:
    head = data.resolve(backend, admin, "digits")
    a = data.split(backend, head, seed=7)
    b = data.split(backend, head, seed=7)
    c = data.split(backend, head, seed=8)
    assert set(a) == {"train", "validation", "test"}
    assert all(a[k].equals(b[k]) for k in a)
    assert not a["test"].equals(c["test"])
    xs = sorted(x for t in a.values() for x in t.column("x").to_pylist())
    assert xs == [float(i) for i in range(150)]
    assert 90 <= a["train"].num_rows <= 140
    # Rows keep their split when rows are appended later (split depends on the row index).
    c1 = data.resolve(backend, admin, f"digits@{two_commits[0]}")
    old = data.split(backend, c1, seed=7)
    assert set(old["test"].column("x").to_pylist()) <= set(a["test"].column("x").to_pylist())
    with pytest.raises(InvalidInput, match="fractions"):
        data.split(backend, head, seed=1, fractions=(0.5, 0.6))


def test_restricted_dataset_denied_without_group(backend: Backend, admin: Principal) -> None:
    data.create_dataset(backend, admin, "secret", groups=["medical"])
    data.push(backend, admin, "secret", _table(5))
    outsider = Principal(name="rita", role=Role.RESEARCHER)
    member = Principal(name="mo", role=Role.RESEARCHER, groups=("medical",))
    from dlplatform.errors import NotFound

    with pytest.raises(NotFound, match=r"^dataset 'secret' does not exist$"):  # as if missing
        data.resolve(backend, outsider, "secret")
    denied = backend.store.list_audit(actor="rita", outcome="denied")
    assert denied and denied[0].target == "dataset:secret" and "restricted" in denied[0].detail
    assert [d.name for d in data.list_datasets(backend, outsider)] == []
    assert data.to_arrow(backend, data.resolve(backend, member, "secret")).num_rows == 5
    assert backend.store.list_audit(actor="mo", action="dataset.read")


def test_ray_read_tasks_cover_exactly_the_parts(
    backend: Backend, admin: Principal, two_commits: tuple[str, str]
) -> None:
    """The Datasource behind to_ray (no cluster needed): one task per part, exact rows."""
    c1, _ = two_commits
    head = data.resolve(backend, admin, "digits")
    source = data.commit_datasource(backend, head, ["x"])
    tasks = source.get_read_tasks(8)
    assert [t.metadata.num_rows for t in tasks] == [p.row_count for p in head.parts]
    rows = [x for t in tasks for table in t() for x in table.column("x").to_pylist()]
    assert rows == [float(i) for i in range(150)]
    old = data.commit_datasource(backend, data.resolve(backend, admin, f"digits@{c1}"))
    assert len(old.get_read_tasks(8)) == 1


@pytest.mark.parametrize("damage", ["flip-data", "flip-footer", "truncate"])
def test_a_damaged_part_is_refused_on_read(
    backend: Backend, admin: Principal, two_commits: tuple[str, str], damage: str
) -> None:
    """Reads return rows only from parts whose bytes still match their sha256."""
    from pathlib import Path

    from dlplatform.errors import IntegrityError

    head = data.resolve(backend, admin, "digits")
    part = head.parts[-1]
    path = Path(backend.artifacts.path_for(part.sha256))
    raw = bytearray(path.read_bytes())
    path.chmod(0o600)
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        at = len(raw) // 3 if damage == "flip-data" else len(raw) - 12
        raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=part.sha256):
        data.to_arrow(backend, head)
    # the undamaged first commit still reads
    first = data.resolve(backend, admin, f"digits@{two_commits[0]}")
    assert part.sha256 not in {p.sha256 for p in first.parts}
    assert data.to_arrow(backend, first).num_rows == 100
