"""Backups and restores on real DuckDB files and real artifact files (``dlplatform.backups``,
``dlplatform.metadata.backup``): round trips, concurrent writers, refusals, damaged files."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dlplatform import backups, data
from dlplatform.access import SYSTEM, authenticate
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidInput,
    error_for_code,
)
from dlplatform.metadata import ArtifactRecord, MetadataStore, ModelVersion, Run
from dlplatform.metadata.actor import _MetadataActor
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.backup import (
    MANIFEST_FILE,
    METADATA_FILE,
    Member,
    backup_members,
    check_database,
    from_tar,
    read_manifest,
    to_tar,
    write_backup,
)
from dlplatform.metadata.records import utcnow
from dlplatform.metadata.store import EXPORTED_TABLES
from dlplatform.runtime import CLUSTER_FILE, ClusterRecord

GROWING = ("audit_log", "tokens")  # a restore adds its own audit entries and an admin token


def populate(backend: Backend) -> dict[str, Any]:
    """Two dataset commits (Parquet parts in the artifact root), a run with params and metrics,
    a model version whose weights are an artifact."""
    store = backend.store
    data.create_dataset(backend, SYSTEM, "digits", description="backed up")
    data.push(backend, SYSTEM, "digits", pa.table({"x": list(range(50)), "y": ["a"] * 50}))
    head = data.push(backend, SYSTEM, "digits", pa.table({"x": [7, 8], "y": ["b", "c"]}))
    store.create_run(Run(id="r-1", owner="admin", created_at=utcnow(), name="fit"))
    store.log_params("r-1", {"lr": 0.1, "epochs": 3})
    store.log_metric_batch(["r-1"] * 3, ["loss"] * 3, [0.9, 0.5, 0.2], [0, 1, 2])
    weights = backend.artifacts.put_bytes(b"weights of the model " * 100)
    store.record_artifact(
        ArtifactRecord(sha256=weights.sha256, size_bytes=weights.size_bytes, purpose="model",
                       created_at=utcnow())
    )  # fmt: skip
    mv = store.add_model_version(
        ModelVersion(model="digits-mlp", version=0, run_id="r-1", artifact_sha256=weights.sha256,
                     signature_json="{}", dataset_commit=head.id, created_at=utcnow()),
        owner="admin",
    )  # fmt: skip
    return {"commit": head.id, "weights": weights.sha256, "version": mv.version}


def rows(store: MetadataStore) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in EXPORTED_TABLES:
        found = store.export_table(table).to_pylist()
        out[table] = sorted((tuple(sorted(r.items())) for r in found), key=repr)
    return out


def assert_same_rows(before: dict[str, list[Any]], restored_path: Path) -> None:
    store = MetadataStore(restored_path)
    try:
        after = rows(store)
    finally:
        store.close()
    for table in EXPORTED_TABLES:
        if table in GROWING:
            assert set(before[table]) <= set(after[table]), table
        else:
            assert after[table] == before[table], table
    assert before["commits"] and before["metrics"] and before["model_versions"]


def new_home(tmp_path: Path, name: str = "new", **overrides: Any) -> Settings:
    return load_settings(home=tmp_path / name, **overrides)


def objects(settings: Settings) -> set[str]:
    return {ref.sha256 for ref in ArtifactStore.from_settings(settings).list()}


@pytest.fixture
def populated(backend: Backend, admin_token: str) -> dict[str, Any]:
    return populate(backend)


# --- round trips ------------------------------------------------------------------------------


def test_backup_with_artifacts_restores_every_row_and_artifact(
    backend: Backend, store: MetadataStore, settings: Settings, populated: dict[str, Any],
    tmp_path: Path,
) -> None:  # fmt: skip
    before = rows(store)
    manifest = backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    listed = {entry.sha256 for entry in manifest.artifacts}
    assert listed == objects(settings) and populated["weights"] in listed
    assert manifest.has_artifacts and manifest.artifact_root == str(settings.home / "artifacts")
    for entry in manifest.artifacts:
        copy = tmp_path / "bk" / "artifacts" / entry.path
        assert hashlib.sha256(copy.read_bytes()).hexdigest() == entry.sha256
    assert read_manifest(tmp_path / "bk") == manifest
    assert not list(tmp_path.glob(".bk.partial-*"))

    target = new_home(tmp_path)
    report = backups.restore_home(target, tmp_path / "bk")
    assert (report.artifacts, report.copied) == (len(listed), len(listed))
    assert objects(target) == listed
    assert_same_rows(before, target.metadata_path)

    # the restored platform reads its data back, verified, and its admin has a working token
    restored = MetadataStore(target.metadata_path)
    try:
        again = Backend(store=restored, artifacts=ArtifactStore.from_settings(target),
                        settings=target)  # fmt: skip
        table = data.read_sample(again, SYSTEM, f"digits@{populated['commit']}", 1000)
        assert table.num_rows == 52
        assert again.artifacts.get_bytes(populated["weights"]) == b"weights of the model " * 100
        assert report.admin_token_file == str(target.admin_token_path)
        token = target.admin_token_path.read_text().strip()
        assert authenticate(restored, token).name == "admin"
        assert oct(target.admin_token_path.stat().st_mode & 0o777) == "0o600"
        assert restored.list_audit(action="metadata.restore")
    finally:
        restored.close()


def test_backup_without_artifacts_is_verified_against_the_artifact_root(
    store: MetadataStore, settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    before = rows(store)
    manifest = backups.backup_home(settings, tmp_path / "bk", with_artifacts=False)
    assert not manifest.has_artifacts and not (tmp_path / "bk" / "artifacts").exists()
    assert {e.sha256 for e in manifest.artifacts} == objects(settings)

    # a new home over the same artifact root (an S3 bucket, say): nothing to copy, all checked
    shared = new_home(tmp_path, artifact_root=str(settings.home / "artifacts"))
    report = backups.restore_home(shared, tmp_path / "bk")
    assert (report.artifacts, report.copied) == (len(manifest.artifacts), 0)
    assert_same_rows(before, shared.metadata_path)


def test_a_restore_whose_artifact_root_lacks_an_artifact_is_refused(
    store: MetadataStore, settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    manifest = backups.backup_home(settings, tmp_path / "bk", with_artifacts=False)
    target = new_home(tmp_path)  # an empty artifact root of its own
    with pytest.raises(IntegrityError, match="is missing from the artifact root") as caught:
        backups.restore_home(target, tmp_path / "bk")
    assert any(entry.path in str(caught.value) for entry in manifest.artifacts)
    assert not target.home.exists()  # the home it created is gone again


# --- tampering --------------------------------------------------------------------------------


def test_a_tampered_artifact_is_refused_by_name_and_nothing_is_written(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    manifest = backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    victim = next(e for e in manifest.artifacts if e.sha256 == populated["weights"])
    copy = tmp_path / "bk" / "artifacts" / victim.path
    copy.write_bytes(b"not the weights")
    root = tmp_path / "shared-root"  # a root that exists already: only its own objects stay
    ArtifactStore(str(root)).put_bytes(b"an object that was there before")
    target = new_home(tmp_path, artifact_root=str(root))
    target.home.mkdir(mode=0o700)
    with pytest.raises(IntegrityError, match=f"artifact {victim.path} in the backup") as caught:
        backups.restore_home(target, tmp_path / "bk")
    assert "nothing was restored" in str(caught.value)
    assert not target.metadata_path.exists()
    assert [p.name for p in target.home.iterdir()] == []  # no staged database either
    assert objects(target) == {hashlib.sha256(b"an object that was there before").hexdigest()}


def test_a_tampered_database_copy_is_refused(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    with (tmp_path / "bk" / METADATA_FILE).open("r+b") as fh:
        fh.seek(100)
        fh.write(b"\xff" * 16)
    target = new_home(tmp_path)
    with pytest.raises(IntegrityError, match=r"metadata\.duckdb in the backup does not match"):
        backups.restore_home(target, tmp_path / "bk")
    assert not target.home.exists()


def test_a_backup_without_its_manifest_is_not_restored(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    backups.backup_home(settings, tmp_path / "bk", with_artifacts=False)
    (tmp_path / "bk" / MANIFEST_FILE).unlink()
    with pytest.raises(InvalidInput, match="not a complete backup"):
        backups.restore_home(new_home(tmp_path), tmp_path / "bk")


# --- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["not empty", "under a file", "is a file"])
def test_a_backup_only_goes_to_a_new_or_empty_directory(
    store: MetadataStore, settings: Settings, tmp_path: Path, kind: str
) -> None:
    blocker = tmp_path / "occupied"
    blocker.mkdir()
    (blocker / "keep.txt").write_text("mine")
    plain = tmp_path / "plain.txt"
    plain.write_text("a file")
    target = {"not empty": blocker, "under a file": plain / "bk", "is a file": plain}[kind]
    message = {"not empty": "is not empty", "under a file": "is not writable",
               "is a file": "is not a directory"}[kind]  # fmt: skip
    with pytest.raises(InvalidInput, match=message):
        backups.backup_home(settings, target, with_artifacts=True)
    assert [p.name for p in blocker.iterdir()] == ["keep.txt"]
    assert plain.read_text() == "a file"


def test_an_empty_directory_gets_the_backup_in_place(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir(mode=0o755)
    backups.backup_home(settings, tmp_path / "empty", with_artifacts=False)
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == [MANIFEST_FILE, METADATA_FILE]
    assert _modes(tmp_path / "empty") == {".": 0o700, MANIFEST_FILE: 0o600, METADATA_FILE: 0o600}


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]
    }


def test_a_backup_is_private_whatever_the_umask(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    """Token hashes, the audit log and every dataset are in it: no other local user reads it."""
    old = os.umask(0o022)
    try:
        backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    finally:
        os.umask(old)
    modes = _modes(tmp_path / "bk")
    folders = {name for name in modes if (tmp_path / "bk" / name).is_dir()}
    assert len(modes) > 4 and len(folders) > 1
    assert {
        name: mode for name, mode in modes.items() if mode != (0o700 if name in folders else 0o600)
    } == {}


def _running_marker(settings: Settings) -> socket.socket:
    """What ``dlp up`` leaves for a joined cluster: ``cluster.json`` naming a reachable address
    (``runtime.is_running`` checks no more for a cluster it did not start)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    record = ClusterRecord(
        managed=False, address=f"127.0.0.1:{listener.getsockname()[1]}", api_port=8000,
        started_at=utcnow(),
    )  # fmt: skip
    settings.home.mkdir(parents=True, exist_ok=True)
    (settings.home / CLUSTER_FILE).write_text(record.model_dump_json())
    return listener


def test_no_restore_into_a_home_where_a_platform_runs(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    target = new_home(tmp_path)
    with _running_marker(target):
        with pytest.raises(Conflict, match="a platform runs under"):
            backups.restore_home(target, tmp_path / "bk")
        with pytest.raises(Conflict, match="back it up through its gateway"):
            backups.backup_home(target, tmp_path / "bk2", with_artifacts=False)
    assert sorted(p.name for p in target.home.iterdir()) == [CLUSTER_FILE]


def test_no_restore_into_a_home_that_has_a_database(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    backups.backup_home(settings, tmp_path / "bk", with_artifacts=True)
    with pytest.raises(AlreadyExists, match="already has a metadata database"):
        backups.restore_home(settings, tmp_path / "bk")


# --- consistency under concurrent writes ------------------------------------------------------


def test_a_backup_taken_during_writes_holds_every_acknowledged_write(
    backend: Backend, store: MetadataStore, tmp_path: Path
) -> None:
    acknowledged: list[tuple[float, str]] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                name = f"w{n}-{i}"
                store.append_audit("writer", "test.write", name, "ok")
                store.create_run(Run(id=name, owner="writer", created_at=utcnow()))
                acknowledged.append((time.monotonic(), name))
                i += 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        before = {name for at, name in list(acknowledged) if at < started}
        members = backup_members(store, backend.artifacts, with_artifacts=False)
        write_backup(members, tmp_path / "bk")
        time.sleep(0.2)  # writes go on after the snapshot
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and len(before) >= 5
    check_database(tmp_path / "bk" / METADATA_FILE)
    copy = MetadataStore(tmp_path / "bk" / METADATA_FILE)
    try:
        runs = {r["id"] for r in copy.export_table("runs").to_pylist()}
        audited = {e["target"] for e in copy.export_table("audit_log").to_pylist()}
    finally:
        copy.close()
    assert before <= runs and before <= audited
    assert runs < {name for _, name in acknowledged}  # later writes are not in it
    assert runs <= audited  # each run's audit entry came first: no write is half in
    assert not any(Path(f"{store.path}.snapshots").iterdir())  # the snapshot file is gone


# --- the stream -------------------------------------------------------------------------------


class _ThroughTheActor:
    """The metadata actor's client without Ray: each call goes through the actor's own ``call``
    and its reply through pickle, as it crosses from the actor to the gateway."""

    def __init__(self, store: MetadataStore) -> None:
        self._actor = _MetadataActor.__new__(_MetadataActor)
        self._actor._store = store

    def __getattr__(self, method: str) -> Any:
        def forward(*args: Any, **kwargs: Any) -> Any:
            reply = pickle.loads(pickle.dumps(self._actor.call(method, args, kwargs)))
            if reply[0] == "ok":
                return reply[1]
            raise error_for_code(reply[1], reply[2])

        return forward


def test_the_gateway_backs_up_through_the_metadata_actor(
    backend: Backend, store: MetadataStore, populated: dict[str, Any], tmp_path: Path
) -> None:
    before = rows(store)
    remote = Backend(store=_ThroughTheActor(store), artifacts=backend.artifacts,
                     settings=backend.settings)  # type: ignore[arg-type]  # fmt: skip
    stream = backups.backup_stream(remote, SYSTEM, with_artifacts=True)
    manifest = write_backup(from_tar(stream), tmp_path / "bk")
    assert {e.sha256 for e in manifest.artifacts} == objects(backend.settings)
    entries = store.list_audit(action="metadata.backup")
    assert [(e.actor, e.outcome) for e in entries] == [("system", "ok")]
    assert f"{len(manifest.artifacts)} artifacts with copies" in entries[0].detail
    report = backups.restore_home(new_home(tmp_path), tmp_path / "bk")
    assert_same_rows(before, Path(report.metadata_path))


def _stream(backend: Backend) -> bytes:
    members = backup_members(backend.store, backend.artifacts, with_artifacts=True)
    return b"".join(to_tar(members))


def test_a_stream_cut_before_its_manifest_leaves_nothing(
    backend: Backend, populated: dict[str, Any], tmp_path: Path
) -> None:
    whole = _stream(backend)
    cut = whole[: len(whole) - 4096]  # the manifest's bytes and the end marker are gone
    backups_dir = tmp_path / "backups"
    with pytest.raises(IntegrityError, match="ended before its manifest"):
        write_backup(from_tar([cut]), backups_dir / "bk")
    assert list(backups_dir.iterdir()) == []  # neither the backup nor its hidden partial copy
    (backups_dir / "empty").mkdir()
    with pytest.raises(IntegrityError, match="backup stream is broken"):
        write_backup(from_tar([cut[:10_000]]), backups_dir / "empty")
    assert list((backups_dir / "empty").iterdir()) == []


def test_a_stream_with_a_foreign_member_is_refused(tmp_path: Path) -> None:
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("../evil")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(IntegrityError, match=r"unexpected member '\.\./evil'"):
        write_backup(from_tar([raw.getvalue()]), tmp_path / "bk")
    assert not (tmp_path / "bk").exists() and not (tmp_path.parent / "evil").exists()


def test_members_that_do_not_match_their_manifest_are_refused(
    backend: Backend, populated: dict[str, Any], tmp_path: Path
) -> None:
    def tampered() -> Iterator[Member]:
        for member in backup_members(backend.store, backend.artifacts, with_artifacts=True):
            if member.name.startswith("artifacts/"):
                good = b"".join(member.chunks)
                member = Member(member.name, member.size_bytes, iter([b"?" + good[1:]]))
            yield member

    with pytest.raises(IntegrityError, match=r"artifacts/objects/.* does not match its manifest"):
        write_backup(tampered(), tmp_path / "backups" / "bk")
    assert list((tmp_path / "backups").iterdir()) == []


def test_stale_and_finished_snapshots_are_deleted(store: MetadataStore) -> None:
    first = store.begin_snapshot()
    folder = Path(f"{store.path}.snapshots")
    assert store.read_snapshot(first.id, 0, 16)[:0] == b""
    assert len(store.read_snapshot(first.id, 0, first.size_bytes + 10)) == first.size_bytes
    assert store.read_snapshot(first.id, first.size_bytes, 10) == b""
    old = time.time() - 2 * 24 * 3600
    os.utime(folder / first.id, (old, old))
    second = store.begin_snapshot()
    assert [p.name for p in folder.iterdir()] == [second.id]
    assert oct((folder / second.id).stat().st_mode & 0o777) == "0o600"
    store.end_snapshot(second.id)
    store.end_snapshot(second.id)  # gone already: nothing happens
    assert list(folder.iterdir()) == []
    for bad in ("../metadata.duckdb", "x" * 32, ""):
        with pytest.raises(InvalidInput, match="invalid snapshot id"):
            store.read_snapshot(bad, 0, 10)


# --- a damaged database -----------------------------------------------------------------------


def _damage(path: Path, how: str) -> None:
    if how == "truncated":
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    elif how == "garbage":
        path.write_bytes(os.urandom(64 * 1024))
    else:  # a block overwritten in the middle
        with path.open("r+b") as fh:
            fh.seek(path.stat().st_size // 2)
            fh.write(os.urandom(16 * 1024))


@pytest.mark.parametrize("how", ["truncated", "garbage", "overwritten"])
def test_check_database_names_the_damage_and_leaves_the_file(tmp_path: Path, how: str) -> None:
    path = tmp_path / "metadata.duckdb"
    store = MetadataStore(path)
    store._db.run("CREATE TABLE filler AS SELECT range AS i, repeat('x', 200) AS s "
                  "FROM range(20000)")  # fmt: skip
    store.close()
    check_database(path)  # sound
    _damage(path, how)
    damaged = path.read_bytes()
    with pytest.raises(IntegrityError, match="is damaged") as caught:
        check_database(path)
    message = str(caught.value)
    assert "dlp restore" in message and "\n" not in message
    assert path.read_bytes() == damaged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.duckdb"]


def test_check_database_passes_a_missing_or_open_file(store: MetadataStore, tmp_path: Path) -> None:
    check_database(tmp_path / "nothing.duckdb")
    check_database(store.path)  # this process holds it open


def test_manifest_lists_paths_that_name_their_hash(
    settings: Settings, populated: dict[str, Any], tmp_path: Path
) -> None:
    backups.backup_home(settings, tmp_path / "bk", with_artifacts=False)
    raw = json.loads((tmp_path / "bk" / MANIFEST_FILE).read_text())
    entry = raw["artifacts"][0]
    assert entry["path"] == f"objects/{entry['sha256'][:2]}/{entry['sha256']}"
    raw["artifacts"][0]["path"] = "objects/00/" + "0" * 64
    (tmp_path / "bk" / MANIFEST_FILE).write_text(json.dumps(raw))
    with pytest.raises(IntegrityError, match="does not name its sha256"):
        read_manifest(tmp_path / "bk")


# --- an artifact root on S3 (moto's server on loopback) -----------------------------------------


def test_artifacts_on_s3_stay_in_the_bucket_and_are_verified_there(
    s3_root: str, s3_server: str, tmp_path: Path
) -> None:
    on_s3 = load_settings(home=tmp_path / "h", artifact_root=s3_root, s3_endpoint_url=s3_server)
    store = MetadataStore(on_s3.metadata_path)
    try:
        backend = Backend(store=store, artifacts=ArtifactStore.from_settings(on_s3), settings=on_s3)
        populate(backend)
        before = rows(store)
    finally:
        store.close()
    plain = backups.backup_home(on_s3, tmp_path / "plain", with_artifacts=False)
    assert plain.artifact_root == s3_root and len(plain.artifacts) == len(objects(on_s3))
    copied = backups.backup_home(on_s3, tmp_path / "copied", with_artifacts=True)

    # a new home over the same bucket: every artifact read back and checked, none copied
    same = load_settings(home=tmp_path / "same", artifact_root=s3_root, s3_endpoint_url=s3_server)
    report = backups.restore_home(same, tmp_path / "plain")
    assert (report.artifacts, report.copied) == (len(plain.artifacts), 0)
    assert_same_rows(before, same.metadata_path)

    # the copies go into a local root
    local = new_home(tmp_path, "local")
    assert backups.restore_home(local, tmp_path / "copied").copied == len(copied.artifacts)
    assert objects(local) == objects(on_s3)

    # an object changed in the bucket is named, and nothing is restored
    victim = plain.artifacts[0]
    fs = ArtifactStore.from_settings(on_s3)
    with fs.filesystem.open_output_stream(fs.path_for(victim.sha256)) as out:
        out.write(b"changed in the bucket")
    again = load_settings(home=tmp_path / "again", artifact_root=s3_root, s3_endpoint_url=s3_server)
    with pytest.raises(IntegrityError, match=f"artifact {victim.path} at the artifact root"):
        backups.restore_home(again, tmp_path / "plain")
    assert not again.home.exists()
