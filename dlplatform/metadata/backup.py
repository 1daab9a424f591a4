"""Backups of the metadata and artifacts, their restore, and the check of a database file.

A backup is a directory::

    metadata.duckdb                   the database as of one moment (``begin_snapshot``)
    artifacts/objects/<aa>/<sha256>   only with artifacts: copies, in the artifact root's layout
    manifest.json                     written last: the database's and every artifact's size
                                      and sha256 (``BackupManifest``)

A backup without ``manifest.json`` is incomplete and ``restore_backup`` refuses it. The same
members travel over HTTP as one tar stream, in the same order (``to_tar``, ``from_tar``): the
gateway never holds a whole backup, and the receiving side writes exactly what a local backup
writes (``write_backup``). Artifacts are content-addressed, so an object's name is its sha256,
the hash the metadata records for it (commit parts, model versions); a copy is verified as it is
read, and ``restore_backup`` verifies every listed artifact before it writes anything.

``check_database`` tells a damaged database file (truncated, overwritten) from a sound one
without writing to it; ``dlp up`` runs it before it starts anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Literal
from urllib.parse import urlparse

import duckdb
from pydantic import BaseModel, Field, ValidationError, model_validator

from dlplatform.errors import (
    AlreadyExists,
    BackendUnavailable,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from dlplatform.metadata._db import newest_schema_version
from dlplatform.metadata.artifacts import CHUNK_BYTES, ArtifactRef, ArtifactStore
from dlplatform.metadata.records import utcnow
from dlplatform.metadata.store import MetadataStore

METADATA_FILE = "metadata.duckdb"
MANIFEST_FILE = "manifest.json"
ARTIFACTS_DIR = "artifacts"
TAR_MEDIA_TYPE = "application/x-tar"
_SNAPSHOT_CHUNK = 8 * 1024 * 1024
_OBJECT = re.compile(r"objects/([0-9a-f]{2})/([0-9a-f]{64})")
_ARTIFACT_MEMBER = re.compile(rf"{ARTIFACTS_DIR}/{_OBJECT.pattern}")


class BackupFile(BaseModel, frozen=True, extra="forbid"):
    """One file a backup accounts for."""

    path: str = Field(
        description=f"`{METADATA_FILE}`, or an artifact's path under the artifact root "
        "(`objects/<aa>/<sha256>`)."
    )
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class BackupManifest(BaseModel, frozen=True, extra="forbid"):
    """``manifest.json``: what a complete backup holds."""

    format: Literal[1] = 1
    created_at: datetime
    schema_version: int = Field(ge=0, description="The newest migration the database holds.")
    artifact_root: str = Field(description="The artifact root backed up (without its query).")
    has_artifacts: bool = Field(description=f"Copies of the artifacts are under {ARTIFACTS_DIR}/.")
    metadata: BackupFile
    artifacts: list[BackupFile] = Field(description="Every object of the artifact root.")

    @model_validator(mode="after")
    def _paths_are_names(self) -> BackupManifest:
        if self.metadata.path != METADATA_FILE:
            raise ValueError(f"metadata.path must be {METADATA_FILE!r}")
        for entry in self.artifacts:
            found = _OBJECT.fullmatch(entry.path)
            if not found or found[2] != entry.sha256 or found[1] != entry.sha256[:2]:
                raise ValueError(f"artifact path {entry.path[:100]!r} does not name its sha256")
        return self


class RestoreReport(BaseModel, frozen=True, extra="forbid"):
    """What ``restore_backup`` did."""

    metadata_path: str
    schema_version: int
    artifact_root: str
    artifacts: int = Field(ge=0, description="Artifacts the manifest lists, all verified.")
    copied: int = Field(ge=0, description="Of them, copied from the backup to the root.")
    admin_token_file: str | None = None


@dataclass(frozen=True)
class Member:
    """One file of a backup on its way: its name in the backup, its size and its bytes.

    Read ``chunks`` to the end before asking for the next member.
    """

    name: str
    size_bytes: int
    chunks: Iterator[bytes]


# --- the database file ------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:300]


def check_database(path: str | Path) -> None:
    """Refuse a damaged database file before anything opens it for writing.

    Opens the file read-only (a write-ahead log is replayed in memory, nothing is written),
    checks that the file is as long as its header says, and reads every column of every table,
    so that DuckDB checks each block's checksum (a second per gigabyte or so). A missing file
    passes (a new home), and so does a file that another connection holds: it opened there.

    Raises:
        IntegrityError: the file is damaged; the message points at ``dlp restore``.
        BackendUnavailable: the file cannot be read (permissions).
    """
    path = Path(path)
    if not path.exists():
        return
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        reason = _first_line(exc)
        if "Could not set lock" in reason or isinstance(exc, duckdb.ConnectionException):
            return  # held by the metadata actor or this process: it is open, so it opened
        if "Permission denied" in reason:
            raise BackendUnavailable(f"cannot read the metadata database: {reason}") from None
        raise IntegrityError(_damaged(path, reason)) from None
    try:
        rows = con.execute(
            "SELECT block_size, total_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchall()
        block_size, blocks = rows[0] if rows else (0, 0)
        size = path.stat().st_size
        if size < block_size * blocks:
            reason = f"{size} bytes, but its header counts {blocks} blocks of {block_size}"
            raise IntegrityError(_damaged(path, reason))
        tables = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() "
            "WHERE database_name = current_database()"
        ).fetchall()
        for schema, table in tables:
            con.execute(f'SELECT bit_xor(hash(COLUMNS(*))) FROM "{schema}"."{table}"').fetchall()
    except duckdb.Error as exc:
        raise IntegrityError(_damaged(path, _first_line(exc))) from None
    finally:
        con.close()


def _damaged(path: Path, reason: str) -> str:
    return (
        f"the metadata database {path} is damaged ({reason}); it was left as it is. Restore the "
        "platform from a backup into a new home: `dlp restore BACKUP_DIR --home NEW_HOME`"
    )


# --- taking a backup --------------------------------------------------------------------------


class _Hashed:
    """An iterator of chunks that hashes and counts them as they pass."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


def _public_uri(uri: str) -> str:
    """``uri`` without query and credentials (pyarrow URIs may carry keys in either)."""
    if "://" not in uri:
        return uri
    parsed = urlparse(uri)
    return f"{parsed.scheme}://{parsed.netloc.rpartition('@')[2]}{parsed.path}"


def backup_members(
    store: MetadataStore, artifacts: ArtifactStore, *, with_artifacts: bool
) -> Iterator[Member]:
    """The members of a backup in order: the database, the artifacts' copies (only
    ``with_artifacts``), the manifest last.

    The database snapshot is taken now, then the artifact root is listed: objects are stored
    before the metadata that names them commits, so every artifact the snapshot names is listed.
    An object deleted after the listing (garbage collection takes only unreferenced ones) is
    left out of a backup with copies. ``store`` may be the metadata actor's client: the
    snapshot is then read through it, in pieces.
    """
    snapshot = store.begin_snapshot()
    try:
        refs = artifacts.list()
    except BaseException:
        store.end_snapshot(snapshot.id)
        raise
    return _members(store, artifacts, snapshot.id, snapshot.size_bytes,
                    snapshot.schema_version, refs, with_artifacts)  # fmt: skip


def _snapshot_chunks(store: MetadataStore, snapshot_id: str, size: int) -> Iterator[bytes]:
    offset = 0
    while offset < size:
        chunk = store.read_snapshot(snapshot_id, offset, _SNAPSHOT_CHUNK)
        if not chunk:
            raise IntegrityError(f"the metadata snapshot ended at {offset} of {size} bytes")
        offset += len(chunk)
        yield chunk


def _object_chunks(reader: BinaryIO) -> Iterator[bytes]:
    with reader:  # verifies the sha256 at the end (IntegrityError)
        while chunk := reader.read(CHUNK_BYTES):
            yield chunk


def _members(
    store: MetadataStore,
    artifacts: ArtifactStore,
    snapshot_id: str,
    size: int,
    schema_version: int,
    refs: list[ArtifactRef],
    with_artifacts: bool,
) -> Iterator[Member]:
    try:
        database = _Hashed(_snapshot_chunks(store, snapshot_id, size))
        yield Member(METADATA_FILE, size, database)
        _check_consumed(METADATA_FILE, database, size)
    finally:
        store.end_snapshot(snapshot_id)
    entries = []
    for ref in refs:
        rel = artifacts.relative_path(ref.sha256)
        if with_artifacts:
            try:
                reader = artifacts.open(ref)
            except NotFound:
                continue
            copy = _Hashed(_object_chunks(reader))
            yield Member(f"{ARTIFACTS_DIR}/{rel}", ref.size_bytes, copy)
            _check_consumed(rel, copy, ref.size_bytes)
        entries.append(BackupFile(path=rel, size_bytes=ref.size_bytes, sha256=ref.sha256))
    manifest = BackupManifest(
        created_at=utcnow(),
        schema_version=schema_version,
        artifact_root=_public_uri(artifacts.root_uri),
        has_artifacts=with_artifacts,
        metadata=BackupFile(
            path=METADATA_FILE, size_bytes=size, sha256=database.digest.hexdigest()
        ),
        artifacts=entries,
    )
    data = manifest.model_dump_json(indent=1).encode()
    yield Member(MANIFEST_FILE, len(data), iter([data]))


def _check_consumed(name: str, chunks: _Hashed, size: int) -> None:
    if chunks.size != size:
        raise IntegrityError(f"{name}: {chunks.size} of {size} bytes were read")


# --- the tar stream ---------------------------------------------------------------------------


def to_tar(members: Iterable[Member]) -> Iterator[bytes]:
    """The members as one uncompressed tar stream (``tar -x`` unpacks it), built as it is sent.

    Raises:
        IntegrityError: a member's bytes are not the size it announced.
    """
    now = int(time.time())
    for member in members:
        info = tarfile.TarInfo(member.name)
        info.size, info.mtime, info.mode = member.size_bytes, now, 0o600
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        sent = 0
        for chunk in member.chunks:
            sent += len(chunk)
            if sent > member.size_bytes:
                break
            yield chunk
        if sent != member.size_bytes:
            raise IntegrityError(f"{member.name} is not {member.size_bytes} bytes long")
        if pad := -sent % tarfile.BLOCKSIZE:
            yield bytes(pad)
    yield bytes(2 * tarfile.BLOCKSIZE)


class _ChunkReader(io.RawIOBase):
    """A file-like reader over an iterator of byte chunks."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._left = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._left:
            try:
                self._left = next(self._chunks)
            except StopIteration:
                return 0
        view = memoryview(buffer).cast("B")
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


def _is_member_name(name: str) -> bool:
    return name in (METADATA_FILE, MANIFEST_FILE) or bool(_ARTIFACT_MEMBER.fullmatch(name))


def from_tar(chunks: Iterable[bytes]) -> Iterator[Member]:
    """The members of a tar stream made by ``to_tar``, as they arrive.

    Raises:
        IntegrityError: a member is not a regular file with a backup's name, or the stream is
            cut off or not a tar stream.
    """
    reader = io.BufferedReader(_ChunkReader(chunks), buffer_size=CHUNK_BYTES)
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for info in archive:
                if not info.isreg() or not _is_member_name(info.name):
                    raise IntegrityError(
                        f"refusing the backup stream: unexpected member {info.name[:100]!r}"
                    )
                extracted = archive.extractfile(info)
                assert extracted is not None  # a regular file
                yield Member(info.name, info.size, _tar_chunks(extracted))
    except tarfile.TarError as exc:
        raise IntegrityError(f"the backup stream is broken: {_first_line(exc)}") from None


def _tar_chunks(member: io.BufferedReader) -> Iterator[bytes]:
    try:
        while chunk := member.read(CHUNK_BYTES):
            yield chunk
    except tarfile.TarError as exc:
        raise IntegrityError(f"the backup stream is broken: {_first_line(exc)}") from None


# --- writing a backup directory ---------------------------------------------------------------


def check_backup_target(directory: str | Path) -> Path:
    """``directory`` as an absolute path, if a backup may be written there: it is a new or an
    empty directory, and writable (or the folder it would be made in is).

    Raises:
        InvalidInput: what is wrong, in one line.
    """
    target = Path(directory).expanduser().absolute()
    if target.exists():
        if not target.is_dir():
            raise InvalidInput(f"{target} exists and is not a directory")
        if any(target.iterdir()):
            raise InvalidInput(f"backup directory {target} is not empty: give a new or empty one")
        if not os.access(target, os.W_OK | os.X_OK):
            raise InvalidInput(f"backup directory {target} is not writable")
        return target
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise InvalidInput(f"cannot create backup directory {target}: {ancestor} is not writable")
    return target


def write_backup(members: Iterable[Member], directory: str | Path) -> BackupManifest:
    """Write a backup's members into ``directory``, checking each against the manifest.

    A new directory is written as a hidden sibling and renamed once complete; into an empty one
    the manifest is written last. On any failure nothing of the backup is left. A backup holds
    token hashes, the audit log and (with artifacts) every dataset, so it is private: the
    directory and its folders 0700, its files 0600 (an empty directory of the caller's is made
    0700 too), whatever the process's umask.

    Raises:
        InvalidInput: ``directory`` is not new or empty, or not writable.
        IntegrityError: a member is unexpected, or does not match the manifest, or the members
            end before the manifest.
    """
    target = check_backup_target(directory)
    fresh = not target.exists()
    if fresh:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.partial-"))
    else:
        work = target
        if target.stat().st_uid == os.getuid():
            target.chmod(0o700)
    try:
        manifest = _write_members(members, work)
        if fresh:
            work.rename(target)
    except BaseException:
        if fresh:
            shutil.rmtree(work, ignore_errors=True)
        else:
            for child in list(work.iterdir()):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        raise
    return manifest


def _write_file(chunks: Iterable[bytes], path: Path) -> tuple[int, str]:
    """Write a new file (0600, in folders made 0700) from ``chunks``; its size and sha256."""
    for folder in reversed(path.parents):  # each one made is 0700, not only the last
        if not folder.is_dir():
            with contextlib.suppress(FileExistsError):
                folder.mkdir(mode=0o700)
    digest = hashlib.sha256()
    size = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def _write_members(members: Iterable[Member], work: Path) -> BackupManifest:
    received: dict[str, tuple[int, str]] = {}
    manifest: BackupManifest | None = None
    for member in members:
        if manifest is not None:
            raise IntegrityError(f"refusing the backup: {member.name[:100]!r} after the manifest")
        if not _is_member_name(member.name) or member.name in received:
            raise IntegrityError(f"refusing the backup: unexpected member {member.name[:100]!r}")
        if member.name == MANIFEST_FILE:
            manifest = _parse_manifest(b"".join(member.chunks), "the backup's manifest")
            continue
        received[member.name] = _write_file(member.chunks, work / member.name)
    if manifest is None:
        raise IntegrityError("the backup ended before its manifest; nothing of it was kept")
    expected = {METADATA_FILE: manifest.metadata}
    if manifest.has_artifacts:
        expected.update({f"{ARTIFACTS_DIR}/{e.path}": e for e in manifest.artifacts})
    for name in sorted(set(received) | set(expected)):
        entry, got = expected.get(name), received.get(name)
        if entry is None or got is None or got != (entry.size_bytes, entry.sha256):
            raise IntegrityError(f"refusing the backup: {name} does not match its manifest")
    _write_file([manifest.model_dump_json(indent=1).encode()], work / MANIFEST_FILE)
    with contextlib.suppress(OSError):  # the directory entries themselves, where supported
        fd = os.open(work, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return manifest


def _parse_manifest(data: bytes, what: str) -> BackupManifest:
    try:
        return BackupManifest.model_validate_json(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        raise IntegrityError(f"{what} is invalid: {where}: {err['msg']}") from None


def read_manifest(directory: str | Path) -> BackupManifest:
    """The manifest of the backup in ``directory``.

    Raises:
        NotFound: no such directory.
        InvalidInput: it holds no manifest (not a backup, or an incomplete one).
        IntegrityError: the manifest is invalid.
    """
    source = Path(directory).expanduser()
    if not source.is_dir():
        raise NotFound(f"backup directory {source} does not exist")
    path = source / MANIFEST_FILE
    if not path.is_file():
        raise InvalidInput(f"{source} is not a complete backup: it has no {MANIFEST_FILE}")
    return _parse_manifest(path.read_bytes(), f"{path}")


# --- restoring a backup -----------------------------------------------------------------------


def _hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _check_copy(path: Path, entry: BackupFile, what: str) -> None:
    try:
        size, sha = _hash_file(path)
    except FileNotFoundError:
        raise IntegrityError(f"{what} is missing from the backup; nothing was restored") from None
    if (size, sha) != (entry.size_bytes, entry.sha256):
        raise IntegrityError(
            f"{what} in the backup does not match its manifest (sha256 {sha}, expected "
            f"{entry.sha256}); nothing was restored"
        )


def _check_at_root(artifacts: ArtifactStore, entry: BackupFile) -> None:
    ref = ArtifactRef(sha256=entry.sha256, size_bytes=entry.size_bytes)
    try:
        artifacts.verify(ref)
    except NotFound:
        raise IntegrityError(
            f"artifact {entry.path} is missing from the artifact root "
            f"{_public_uri(artifacts.root_uri)}; nothing was restored"
        ) from None
    except IntegrityError as exc:
        raise IntegrityError(
            f"artifact {entry.path} at the artifact root does not match the manifest ({exc}); "
            "nothing was restored"
        ) from None


def restore_backup(
    directory: str | Path,
    metadata_path: str | Path,
    artifacts: ArtifactStore,
    *,
    on_open: Callable[[MetadataStore], None] | None = None,
) -> RestoreReport:
    """Rebuild a database file and artifact root from the backup in ``directory``.

    Everything is verified before anything is written: the database copy and every artifact
    the manifest lists (the backup's copies, or without copies the objects at ``artifacts``).
    Then the copies go into ``artifacts``, the database is written beside ``metadata_path``,
    opened (and migrated), handed to ``on_open``, and renamed into place last. On any failure
    the artifacts this call stored are deleted and no database is left.

    Raises:
        NotFound, InvalidInput: no backup in ``directory``, or it is incomplete.
        IntegrityError: a file does not match the manifest; the message names it.
        AlreadyExists: ``metadata_path`` exists.
    """
    source = Path(directory).expanduser().absolute()
    manifest = read_manifest(source)
    newest = newest_schema_version()
    if manifest.schema_version > newest:
        raise InvalidInput(
            f"the backup's schema version {manifest.schema_version} is newer than this "
            f"dlplatform's ({newest}): restore it with the version that made it"
        )
    target = Path(metadata_path)
    if target.exists():
        raise AlreadyExists(f"{target} exists: restore only into a home without a database")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = target.with_name(f".{target.name}.restore-{uuid.uuid4().hex}")
    created: list[str] = []
    try:
        if not (source / METADATA_FILE).is_file():
            raise IntegrityError(
                f"{METADATA_FILE} is missing from the backup; nothing was restored"
            )
        shutil.copyfile(source / METADATA_FILE, staged)
        _check_copy(staged, manifest.metadata, METADATA_FILE)  # what landed on the new disk
        check_database(staged)
        for entry in manifest.artifacts:
            if manifest.has_artifacts and not artifacts.exists(entry.sha256):
                _check_copy(source / ARTIFACTS_DIR / entry.path, entry, f"artifact {entry.path}")
            else:
                _check_at_root(artifacts, entry)
        for entry in manifest.artifacts if manifest.has_artifacts else []:
            if artifacts.exists(entry.sha256):
                continue
            ref = artifacts.put_file(source / ARTIFACTS_DIR / entry.path)
            created.append(ref.sha256)
            if ref.sha256 != entry.sha256:
                raise IntegrityError(f"artifact {entry.path} changed in the backup while it was "
                                     "restored; nothing was restored")  # fmt: skip
        store = MetadataStore(staged)
        try:
            if on_open is not None:
                on_open(store)
        finally:
            store.close()
        if target.exists():
            raise AlreadyExists(f"{target} appeared during the restore; it was left as it is")
        staged.rename(target)
    except BaseException:
        for sha in created:
            with contextlib.suppress(NotFound, OSError):
                artifacts.delete(sha)
        raise
    finally:
        for leftover in (staged, staged.with_name(f"{staged.name}.wal")):
            leftover.unlink(missing_ok=True)
    return RestoreReport(
        metadata_path=str(target),
        schema_version=manifest.schema_version,
        artifact_root=_public_uri(artifacts.root_uri),
        artifacts=len(manifest.artifacts),
        copied=len(created),
    )
