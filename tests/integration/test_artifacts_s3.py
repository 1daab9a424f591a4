"""ArtifactStore against real backends: a local root and a loopback moto S3 server."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import pytest

from dlplatform.errors import IntegrityError, InvalidInput, NotFound
from dlplatform.metadata.artifacts import CHUNK_BYTES, ArtifactRef, ArtifactStore


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(f"file://{tmp_path}/root")
    s3_server: str = request.getfixturevalue("s3_server")
    s3_root: str = request.getfixturevalue("s3_root")
    return ArtifactStore(s3_root, s3_endpoint_url=s3_server)


def _tamper(store: ArtifactStore, sha: str, data: bytes) -> None:
    with store.filesystem.open_output_stream(store.path_for(sha)) as out:
        out.write(data)


def test_bucket_created_when_missing(s3_server: str) -> None:
    store = ArtifactStore(f"s3://fresh-{os.urandom(4).hex()}/a/b", s3_endpoint_url=s3_server)
    ref = store.put_bytes(b"in a new bucket")
    assert store.get_bytes(ref) == b"in a new bucket"


def test_round_trips(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"hello")
    assert ref.sha256 == hashlib.sha256(b"hello").hexdigest()
    assert store.get_bytes(ref) == b"hello"

    data = os.urandom(2 * CHUNK_BYTES + 7)
    (tmp_path / "big.bin").write_bytes(data)
    big = store.put_file(tmp_path / "big.bin")
    assert big.size_bytes == len(data)
    assert store.get_file(big, tmp_path / "copy.bin").read_bytes() == data

    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"a")
    (src / "sub" / "b.txt").write_bytes(b"b")
    dir_ref = store.put_dir(src)
    out = store.get_dir(dir_ref, tmp_path / "out")
    assert (out / "a.txt").read_bytes() == b"a"
    assert (out / "sub" / "b.txt").read_bytes() == b"b"
    store.verify(dir_ref)


def test_dedup_and_list(store: ArtifactStore) -> None:
    first = store.put_bytes(b"same")
    second = store.put_stream(iter([b"sa", b"me"]))
    assert first == second
    other = store.put_bytes(b"other")
    assert store.list() == sorted([first, other], key=lambda r: r.sha256)


def test_staging_and_promote(store: ArtifactStore) -> None:
    fs, path = store.staging_path()
    with fs.open_output_stream(path) as out:
        out.write(b"part")
    ref = store.promote(path)
    assert store.get_bytes(ref) == b"part"
    with pytest.raises(InvalidInput):
        store.promote(store.path_for(ref.sha256))


def test_tamper_detected(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"original")
    _tamper(store, ref.sha256, b"evil")
    with pytest.raises(IntegrityError, match=f"artifact {ref.sha256} is corrupt: expected"):
        store.verify(ref)
    with pytest.raises(IntegrityError):
        store.get_file(ref, tmp_path / "out" / "dest.bin")
    assert list((tmp_path / "out").iterdir()) == []  # no dest, no temp file


def test_delete_and_not_found(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"bye")
    store.delete(ref.sha256)
    assert not store.exists(ref.sha256)
    with pytest.raises(NotFound):
        store.delete(ref.sha256)
    with pytest.raises(NotFound):
        store.get_bytes(ref)


def test_gc(store: ArtifactStore, tmp_path: Path) -> None:
    keep = store.put_bytes(b"keep")
    drop = store.put_bytes(b"drop")
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.txt").write_bytes(b"listed by the manifest")
    dir_ref = store.put_dir(src)
    fs, stale = store.staging_path()
    with fs.open_output_stream(stale) as out:
        out.write(b"abandoned")

    assert store.gc([keep.sha256]).deleted == 0  # everything is younger than an hour
    report = store.gc([keep.sha256, dir_ref.sha256], min_age_s=0)
    assert (report.deleted, report.kept) == (2, 3)
    assert report.freed_bytes == len(b"drop") + len(b"abandoned")
    assert not store.exists(drop.sha256)
    store.get_dir(dir_ref, tmp_path / "out")


def test_pickles_for_ray_tasks(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"shared")
    clone = pickle.loads(pickle.dumps(store))
    assert clone.get_bytes(ref) == b"shared"
    assert clone.list() == [ArtifactRef(sha256=ref.sha256, size_bytes=6)]
