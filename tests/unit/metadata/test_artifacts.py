"""ArtifactStore on a local root: round trips, dedup, verification, sha validation, gc."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from dlplatform.config import Settings
from dlplatform.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from dlplatform.metadata.artifacts import CHUNK_BYTES, ArtifactRef, ArtifactStore


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "root"))


def _tamper(store: ArtifactStore, sha: str, data: bytes) -> None:
    Path(store.path_for(sha)).write_bytes(data)


def _make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "sub" / "b.bin").write_bytes(os.urandom(3000))
    (root / "sub" / "deeper" / "c.json").write_text('{"c": 1}')
    (root / "same.txt").write_bytes(b"alpha")  # same content as a.txt
    return root


def _tree_contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_layout_and_root_creation(tmp_path: Path) -> None:
    store = ArtifactStore(f"file://{tmp_path}/deep/root")
    assert (tmp_path / "deep" / "root" / "objects").is_dir()
    assert (tmp_path / "deep" / "root" / "staging").is_dir()
    ref = store.put_bytes(b"x")
    assert (
        store.path_for(ref.sha256) == f"{tmp_path}/deep/root/objects/{ref.sha256[:2]}/{ref.sha256}"
    )
    assert store.root_uri == f"file://{tmp_path}/deep/root"


def test_from_settings(tmp_path: Path) -> None:
    store = ArtifactStore.from_settings(Settings(home=tmp_path))
    assert store.root_uri == str(tmp_path / "artifacts")
    assert (tmp_path / "artifacts" / "objects").is_dir()


def test_put_get_bytes(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"hello")
    assert ref == ArtifactRef(sha256=hashlib.sha256(b"hello").hexdigest(), size_bytes=5)
    assert store.get_bytes(ref) == b"hello"
    assert store.get_bytes(ref.sha256) == b"hello"
    assert store.exists(ref.sha256)


def test_empty_object(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"")
    assert ref.size_bytes == 0
    assert store.get_bytes(ref) == b""
    store.verify(ref)


def test_put_stream(store: ArtifactStore) -> None:
    ref = store.put_stream(iter([b"ab", b"", b"cd"]))
    assert ref.sha256 == hashlib.sha256(b"abcd").hexdigest()
    assert store.get_bytes(ref) == b"abcd"


def test_put_stream_failure_leaves_no_staging(store: ArtifactStore, tmp_path: Path) -> None:
    def chunks():
        yield b"partial"
        raise RuntimeError("upload dropped")

    with pytest.raises(RuntimeError):
        store.put_stream(chunks())
    assert list((tmp_path / "root" / "staging").iterdir()) == []
    assert store.list() == []


def test_put_file_streams_large_file(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(5 * CHUNK_BYTES + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    ref = store.put_file(src)
    assert ref == ArtifactRef(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
    dest = store.get_file(ref, tmp_path / "out" / "big.bin")
    assert dest.read_bytes() == data
    with store.open(ref) as reader:
        assert reader.read(10) == data[:10]
        assert reader.read() == data[10:]


def test_put_file_missing(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        store.put_file(tmp_path / "nope")


def test_dedup(store: ArtifactStore, tmp_path: Path) -> None:
    first = store.put_bytes(b"same")
    src = tmp_path / "same.txt"
    src.write_bytes(b"same")
    second = store.put_file(src)
    assert first == second
    assert [ref.sha256 for ref in store.list()] == [first.sha256]
    assert list((tmp_path / "root" / "staging").iterdir()) == []


def test_dir_round_trip(store: ArtifactStore, tmp_path: Path) -> None:
    src = _make_tree(tmp_path / "src")
    ref = store.put_dir(src)
    assert ref.kind == "dir"
    manifest = json.loads(store.get_bytes(ref))
    assert sorted(manifest) == ["a.txt", "same.txt", "sub/b.bin", "sub/deeper/c.json"]
    assert manifest["a.txt"] == {"sha256": hashlib.sha256(b"alpha").hexdigest(), "size_bytes": 5}
    assert len(store.list()) == 4  # 3 distinct files + the manifest
    assert store.put_dir(src) == ref  # deterministic
    out = store.get_dir(ref, tmp_path / "out")
    assert _tree_contents(out) == _tree_contents(src)
    store.verify(ref)


def test_get_dir_into_empty_existing_dir(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_dir(_make_tree(tmp_path / "src"))
    (tmp_path / "out").mkdir()
    store.get_dir(ref, tmp_path / "out")
    assert (tmp_path / "out" / "a.txt").read_bytes() == b"alpha"
    with pytest.raises(AlreadyExists):
        store.get_dir(ref, tmp_path / "out")


def test_put_dir_rejects_symlink_outside(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "secret").write_text("s")
    (src / "link").symlink_to(tmp_path / "secret")
    with pytest.raises(InvalidInput, match="outside"):
        store.put_dir(src)


@pytest.mark.parametrize(
    "bad_path", ["/etc/passwd", "../escape", "a/../../escape", "a\\b", "", "a//b", "./a"]
)
def test_get_dir_rejects_unsafe_manifest_paths(
    store: ArtifactStore, tmp_path: Path, bad_path: str
) -> None:
    inner = store.put_bytes(b"payload")
    manifest = {bad_path: {"sha256": inner.sha256, "size_bytes": inner.size_bytes}}
    ref = store.put_bytes(json.dumps(manifest).encode())
    dir_ref = ArtifactRef(sha256=ref.sha256, size_bytes=ref.size_bytes, kind="dir")
    with pytest.raises(IntegrityError, match="not a safe relative path"):
        store.get_dir(dir_ref, tmp_path / "out" / "dest")
    assert not (tmp_path / "out" / "dest").exists()
    assert not (tmp_path / "escape").exists()


def test_get_dir_rejects_non_manifest(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"not json")
    with pytest.raises(IntegrityError, match="not a directory manifest"):
        store.get_dir(ref, tmp_path / "out")


def test_tampered_object_detected(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_bytes(b"original")
    _tamper(store, ref.sha256, b"tampered")
    actual = hashlib.sha256(b"tampered").hexdigest()
    expected_msg = f"artifact {ref.sha256} is corrupt: expected sha256 {ref.sha256}, got {actual}"
    with pytest.raises(IntegrityError) as info:
        store.verify(ref)
    assert str(info.value) == expected_msg
    with pytest.raises(IntegrityError):
        store.get_bytes(ref.sha256)
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(IntegrityError):
        store.get_file(ref, dest)
    assert list((tmp_path / "out").iterdir()) == []  # no dest, no temp file


def test_truncated_object_detected_by_size(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"abc")
    wrong_size = ArtifactRef(sha256=ref.sha256, size_bytes=4)
    with pytest.raises(IntegrityError, match="expected 4 bytes, got 3"):
        store.verify(wrong_size)


def test_tampered_file_in_dir(store: ArtifactStore, tmp_path: Path) -> None:
    ref = store.put_dir(_make_tree(tmp_path / "src"))
    _tamper(store, hashlib.sha256(b"alpha").hexdigest(), b"ALPHA")
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.verify(ref)
    with pytest.raises(IntegrityError):
        store.get_dir(ref, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"root", "src"}  # no temp dir left


@pytest.mark.parametrize(
    "bad", ["../x", "", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "../" + "a" * 61]
)
def test_invalid_sha_rejected(store: ArtifactStore, tmp_path: Path, bad: str) -> None:
    for call in (
        store.exists,
        store.delete,
        store.get_bytes,
        store.verify,
        store.path_for,
        store.open,
    ):
        with pytest.raises(InvalidInput, match="invalid artifact sha256"):
            call(bad)
    with pytest.raises(InvalidInput):
        store.get_file(bad, tmp_path / "x")
    with pytest.raises(InvalidInput):
        store.gc([bad])
    with pytest.raises(ValueError):
        ArtifactRef(sha256=bad, size_bytes=1)


def test_missing_object(store: ArtifactStore, tmp_path: Path) -> None:
    sha = "0" * 64
    assert not store.exists(sha)
    for call in (store.get_bytes, store.verify, store.open, store.delete):
        with pytest.raises(NotFound, match=f"artifact {sha} does not exist"):
            call(sha)
    with pytest.raises(NotFound):
        store.get_file(sha, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_delete(store: ArtifactStore) -> None:
    ref = store.put_bytes(b"bye")
    store.delete(ref.sha256)
    assert not store.exists(ref.sha256)
    with pytest.raises(NotFound):
        store.delete(ref.sha256)


def test_list(store: ArtifactStore) -> None:
    refs = [store.put_bytes(bytes([i]) * i) for i in range(1, 4)]
    assert store.list() == sorted(refs, key=lambda r: r.sha256)


def test_staging_and_promote(store: ArtifactStore) -> None:
    fs, path = store.staging_path()
    with fs.open_output_stream(path) as out:
        out.write(b"part-0")
    ref = store.promote(path)
    assert ref.sha256 == hashlib.sha256(b"part-0").hexdigest()
    assert store.get_bytes(ref) == b"part-0"
    assert fs.get_file_info(path).type.name == "NotFound"
    with pytest.raises(NotFound):
        store.promote(store.staging_path()[1])


@pytest.mark.parametrize("suffix", ["../objects/x", "abc", "", "0" * 32 + "/x"])
def test_promote_rejects_foreign_paths(store: ArtifactStore, suffix: str) -> None:
    staging_dir = store.staging_path()[1].rsplit("/", 1)[0]
    with pytest.raises(InvalidInput, match="not a staging path"):
        store.promote(f"{staging_dir}/{suffix}")
    with pytest.raises(InvalidInput):
        store.promote("/etc/passwd")


def test_gc(store: ArtifactStore, tmp_path: Path) -> None:
    keep = store.put_bytes(b"keep")
    drop = store.put_bytes(b"drop me")
    dir_ref = store.put_dir(_make_tree(tmp_path / "src"))
    fs, stale = store.staging_path()
    with fs.open_output_stream(stale) as out:
        out.write(b"abandoned")

    # Young objects are protected by min_age_s.
    report = store.gc([keep.sha256])
    assert report.deleted == 0
    assert store.exists(drop.sha256)

    report = store.gc([keep.sha256, dir_ref.sha256], min_age_s=0)
    assert report.deleted == 2  # `drop` and the stale staging file
    assert report.freed_bytes == len(b"drop me") + len(b"abandoned")
    assert report.kept == 5  # keep + manifest + 3 distinct files
    assert not store.exists(drop.sha256)
    assert fs.get_file_info(stale).type.name == "NotFound"
    store.get_dir(dir_ref, tmp_path / "out")

    report = store.gc([keep.sha256], min_age_s=0)
    assert report.deleted == 4
    assert [ref.sha256 for ref in store.list()] == [keep.sha256]
