"""The gateway's read cache over a real store file: it answers repeated lookups from memory and
never misses a write acknowledged before the read began (the writer publishes its generation
beside the database, as the metadata actor does); it caches nothing it cannot trust."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlplatform.errors import NotFound
from dlplatform.metadata import Dataset, MetadataStore
from dlplatform.metadata._generation import SUFFIX, SharedGeneration
from dlplatform.metadata.records import utcnow
from dlplatform.metadata.shared_reads import SharedReads


def _dataset(store: MetadataStore, name: str, description: str = "") -> None:
    store.create_dataset(Dataset(name=name, description=description, created_at=utcnow(),
                                 created_by="admin"))  # fmt: skip


@pytest.fixture
def writer(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(tmp_path / "metadata.duckdb")
    store.publish_generation()
    return store


def test_repeated_reads_come_from_memory_until_anything_is_written(writer: MetadataStore) -> None:
    _dataset(writer, "sales", "v1")
    reads = SharedReads(writer, writer.path)
    assert reads.get_dataset("sales").description == "v1"
    assert [reads.get_dataset("sales").description for _ in range(5)] == ["v1"] * 5
    assert (reads.hits, reads.misses) == (5, 1)
    writer.update_dataset("sales", description="v2")  # acknowledged: the next read sees it
    assert reads.get_dataset("sales").description == "v2"
    _dataset(writer, "other")  # any write: nothing remembered is used after it
    assert reads.get_dataset("sales").description == "v2" and reads.misses == 3
    listed = reads.list_datasets()
    listed.append("mine")  # the caller's own list
    assert [d.name for d in reads.list_datasets()] == ["other", "sales"]
    assert reads.ping() == "ok"  # not a cached method: passed through


def test_errors_are_not_remembered(writer: MetadataStore) -> None:
    reads = SharedReads(writer, writer.path)
    for _ in range(2):
        with pytest.raises(NotFound):
            reads.get_dataset("later")
    _dataset(writer, "later")
    assert reads.get_dataset("later").name == "later"


def test_a_restarted_writer_invalidates_everything(writer: MetadataStore, tmp_path: Path) -> None:
    _dataset(writer, "sales", "v1")
    reads = SharedReads(writer, writer.path)
    reads.get_dataset("sales")
    SharedGeneration(writer.path + SUFFIX)  # another writer took the file over, in place
    assert reads.get_dataset("sales").description == "v1"
    assert reads.hits == 0  # its nonce is not the live store's: no cache, plain calls


def test_nothing_is_cached_without_a_published_generation(tmp_path: Path) -> None:
    store = MetadataStore(tmp_path / "plain.duckdb")  # publishes nothing
    _dataset(store, "sales")
    reads = SharedReads(store, store.path)
    for _ in range(3):
        reads.get_dataset("sales")
    assert reads.hits == 0
    (tmp_path / f"plain.duckdb{SUFFIX}").write_bytes(b"\x01" * 16)  # a file nobody maintains
    reads.get_dataset("sales")
    reads.get_dataset("sales")
    assert reads.hits == 0
