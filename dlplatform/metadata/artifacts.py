"""Content-addressed artifact storage on any ``pyarrow.fs`` filesystem (local, S3, GCS).

Layout under the root (the only paths this module ever builds)::

    <root>/objects/<aa>/<sha256>     an immutable object, named by the sha256 of its bytes
    <root>/staging/<uuid4 hex>       a file being written; promoted to objects/ once hashed

Every object is hashed while it is written and verified when it is read: a reader raises
``IntegrityError`` at end of file when the bytes do not match their name. A directory is stored
as its files plus a manifest object (sorted JSON ``{relative_path: {sha256, size_bytes}}``);
its ``ArtifactRef`` has ``kind="dir"`` and names the manifest.

Shas are validated before any path is built, so no path ever comes from unchecked input.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlparse

import pyarrow.fs as pafs
from pydantic import BaseModel, Field, ValidationError, field_validator

from dlplatform._atomic import atomic_write
from dlplatform.config import Settings
from dlplatform.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound

__all__ = ["ArtifactRef", "ArtifactStore", "GcReport", "filesystem_for"]

CHUNK_BYTES = 1024 * 1024
_SHA_RE = re.compile(r"[0-9a-f]{64}")
_STAGING_NAME_RE = re.compile(r"[0-9a-f]{32}")
# A referenced object larger than this is never read as a possible manifest during gc.
_MAX_MANIFEST_BYTES = 64 * 1024 * 1024


def _check_sha(value: str) -> str:
    if not isinstance(value, str) or not _SHA_RE.fullmatch(value):
        raise InvalidInput(
            f"invalid artifact sha256 {value!r}: expected 64 lowercase hex characters"
        )
    return value


class ArtifactRef(BaseModel, frozen=True, extra="forbid"):
    """A stored object: its sha256, its size and whether it is a file or a directory manifest."""

    sha256: str = Field(description="sha256 of the object's bytes, 64 lowercase hex characters.")
    size_bytes: int = Field(ge=0, description="Size of the object in bytes.")
    kind: Literal["file", "dir"] = Field(
        default="file",
        description='"dir": the object is a JSON manifest {relative_path: {sha256, size_bytes}}.',
    )

    @field_validator("sha256")
    @classmethod
    def _sha_is_hex(cls, value: str) -> str:
        if not _SHA_RE.fullmatch(value):
            raise ValueError(f"sha256 {value!r} is not 64 lowercase hex characters")
        return value


class GcReport(BaseModel, frozen=True, extra="forbid"):
    """What ``ArtifactStore.gc`` did."""

    deleted: int = Field(ge=0, description="Objects and stale staging files deleted.")
    freed_bytes: int = Field(ge=0, description="Bytes freed by the deletions.")
    kept: int = Field(ge=0, description="Objects kept (referenced, or younger than min_age_s).")


class _ManifestEntry(BaseModel, frozen=True, extra="forbid"):
    sha256: str
    size_bytes: int = Field(ge=0)

    @field_validator("sha256")
    @classmethod
    def _sha_is_hex(cls, value: str) -> str:
        if not _SHA_RE.fullmatch(value):
            raise ValueError(f"sha256 {value!r} is not 64 lowercase hex characters")
        return value


def _sha_of(ref_or_sha: ArtifactRef | str) -> str:
    if isinstance(ref_or_sha, ArtifactRef):
        return ref_or_sha.sha256
    return _check_sha(ref_or_sha)


def _check_relative_path(rel: str) -> PurePosixPath:
    """A manifest path: relative, "/"-separated, no "", ".", ".." segments, no backslash or NUL."""
    parts = rel.split("/")
    if (
        not rel
        or rel.startswith("/")
        or "\\" in rel
        or "\x00" in rel
        or any(part in {"", ".", ".."} for part in parts)
    ):
        raise IntegrityError(f"manifest entry {rel!r} is not a safe relative path")
    return PurePosixPath(*parts)


def _parse_manifest(sha: str, data: bytes) -> dict[str, _ManifestEntry]:
    try:
        raw = json.loads(data)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        entries = {str(rel): _ManifestEntry.model_validate(entry) for rel, entry in raw.items()}
    except (ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        raise IntegrityError(f"artifact {sha} is not a directory manifest: {exc}") from exc
    for rel in entries:
        _check_relative_path(rel)
    return entries


def filesystem_for(uri: str, *, s3_endpoint_url: str | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem holding ``uri`` and the path of ``uri`` on it.

    Args:
        uri: A plain path, ``file://``, ``s3://``, ``gs://`` or any URI
            ``pyarrow.fs.FileSystem.from_uri`` accepts (with its query options).
        s3_endpoint_url: Endpoint of an S3-compatible store (``http://host:port``) for
            ``s3://`` URIs; it takes the place of any endpoint in the URI's query.

    Raises:
        InvalidInput: a malformed endpoint, or a URI pyarrow cannot open.
    """
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    parsed = urlparse(uri)
    if parsed.scheme == "s3" and s3_endpoint_url:
        endpoint = urlparse(s3_endpoint_url)
        if endpoint.scheme not in {"http", "https"} or not endpoint.netloc:
            raise InvalidInput(f"s3 endpoint {s3_endpoint_url!r} is not an http(s) URL")
        fs = pafs.S3FileSystem(
            endpoint_override=endpoint.netloc,
            scheme=endpoint.scheme,
            allow_bucket_creation=True,
        )
        return fs, f"{parsed.netloc}{parsed.path}"
    if parsed.scheme == "s3" and "allow_bucket_creation" not in parsed.query:
        # pyarrow's S3 URI options: let create_dir create a missing bucket.
        sep = "&" if parsed.query else "?"
        uri = f"{uri}{sep}allow_bucket_creation=true"
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"cannot open {uri!r}: {exc}") from exc
    return fs, str(path)


def _uri_form(root_uri: str, root: str, s3_endpoint_url: str | None) -> tuple[str, str]:
    """(base, query) of the objects' URIs: ``<base>/objects/<aa>/<sha><query>``.

    Local roots become percent-encoded ``file://`` URIs. For ``s3://`` an endpoint travels as
    pyarrow's ``endpoint_override``/``scheme`` options, so the URI alone opens the object.
    """
    if "://" not in root_uri or root_uri.startswith("file://"):
        return f"file://{quote(root)}", ""
    parsed = urlparse(root_uri)
    if parsed.scheme == "s3" and s3_endpoint_url:
        endpoint = urlparse(s3_endpoint_url)
        options = {"endpoint_override": endpoint.netloc, "scheme": endpoint.scheme}
        return f"s3://{root}", f"?{urlencode(options)}"
    options = [(k, v) for k, v in parse_qsl(parsed.query) if k != "allow_bucket_creation"]
    base = f"{parsed.scheme}://{parsed.netloc}{parsed.path}".rstrip("/")
    return base, f"?{urlencode(options)}" if options else ""


class _VerifyingReader(io.RawIOBase):
    """Reads an object and checks its sha256 (and size) once the end is reached."""

    def __init__(self, stream: pafs.NativeFile, sha: str, size_bytes: int | None) -> None:
        super().__init__()
        self._stream = stream
        self._sha = sha
        self._expected_size = size_bytes
        self._hash = hashlib.sha256()
        self._size = 0
        self._verified = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        data = self._stream.read(len(view))
        if data:
            view[: len(data)] = data
            self._hash.update(data)
            self._size += len(data)
            return len(data)
        if len(view) > 0:
            self._check()
        return 0

    def _check(self) -> None:
        if self._verified:
            return
        actual = self._hash.hexdigest()
        if actual != self._sha:
            raise IntegrityError(
                f"artifact {self._sha} is corrupt: expected sha256 {self._sha}, got {actual}"
            )
        if self._expected_size is not None and self._size != self._expected_size:
            raise IntegrityError(
                f"artifact {self._sha} is corrupt: expected {self._expected_size} bytes, "
                f"got {self._size}"
            )
        self._verified = True

    def close(self) -> None:
        if not self.closed:
            self._stream.close()
        super().close()


def _held_back(reader: BinaryIO, current: bytes, ahead: bytes) -> Iterator[bytes]:
    """``current``, ``ahead`` and the rest of ``reader``, each chunk given after the next was
    read (the verifying reader checks the hash when it reaches the end)."""
    with reader:
        while current:
            yield current
            current, ahead = ahead, (reader.read(CHUNK_BYTES) if ahead else b"")


def _is_old(info: pafs.FileInfo, min_age_s: float, now_ns: int) -> bool:
    if min_age_s <= 0:
        return True
    mtime_ns: int | None = info.mtime_ns
    if mtime_ns is None:  # unknown age: keep it
        return False
    return (now_ns - mtime_ns) > min_age_s * 1e9


class ArtifactStore:
    """Content-addressed, verified-on-read object storage under one root URI.

    Args:
        root_uri: A plain path, ``file://``, ``s3://bucket/prefix``, ``gs://...`` or any URI
            ``pyarrow.fs.FileSystem.from_uri`` accepts. The root (and S3 bucket) is created
            when missing.
        s3_endpoint_url: Endpoint of an S3-compatible store (``http://host:port``) for
            ``s3://`` roots; credentials come from the usual AWS env vars and files.
    """

    def __init__(self, root_uri: str, *, s3_endpoint_url: str | None = None) -> None:
        self._root_uri = root_uri
        self._fs, root = filesystem_for(root_uri, s3_endpoint_url=s3_endpoint_url)
        self._root = root.rstrip("/") if root != "/" else ""
        self._base_uri, self._uri_query = _uri_form(root_uri, self._root, s3_endpoint_url)
        self._fs.create_dir(f"{self._root}/objects", recursive=True)
        self._fs.create_dir(f"{self._root}/staging", recursive=True)

    @classmethod
    def from_settings(cls, settings: Settings) -> ArtifactStore:
        """The store at ``settings.artifact_root_uri``."""
        return cls(settings.artifact_root_uri, s3_endpoint_url=settings.s3_endpoint_url)

    @property
    def root_uri(self) -> str:
        """The root URI this store was opened with."""
        return self._root_uri

    @property
    def base_uri(self) -> str:
        """The root as a URI that ``uri_for`` extends (``file://`` for a local root)."""
        return self._base_uri

    def uri_for(self, sha: str) -> str:
        """The URI of object ``sha`` that ``pyarrow.fs.FileSystem.from_uri`` (and so
        ``pyarrow.parquet.read_table`` or Ray Data) opens; an S3 endpoint is in its query.

        Raises:
            InvalidInput: ``sha`` is not 64 lowercase hex characters.
        """
        _check_sha(sha)
        return f"{self._base_uri}/objects/{sha[:2]}/{sha}{self._uri_query}"

    @property
    def filesystem(self) -> pafs.FileSystem:
        """The pyarrow filesystem holding the objects (for readers that take fs + path)."""
        return self._fs

    def path_for(self, sha: str) -> str:
        """The filesystem path of object ``sha`` (whether or not it exists).

        Raises:
            InvalidInput: ``sha`` is not 64 lowercase hex characters.
        """
        return f"{self._root}/{self.relative_path(sha)}"

    @staticmethod
    def relative_path(sha: str) -> str:
        """The path of object ``sha`` under the root: ``objects/<aa>/<sha>``.

        Raises:
            InvalidInput: ``sha`` is not 64 lowercase hex characters.
        """
        _check_sha(sha)
        return f"objects/{sha[:2]}/{sha}"

    # -- writing -------------------------------------------------------------------------------

    def staging_path(self) -> tuple[pafs.FileSystem, str]:
        """A fresh staging path that a writer may write one file to, then ``promote``."""
        return self._fs, f"{self._root}/staging/{uuid.uuid4().hex}"

    def promote(self, fs_path: str) -> ArtifactRef:
        """Hash a file written to a ``staging_path``, move it into objects/ and return its ref.

        Raises:
            InvalidInput: ``fs_path`` is not a path returned by ``staging_path``.
            NotFound: nothing was written there.
        """
        prefix = f"{self._root}/staging/"
        name = fs_path[len(prefix) :] if fs_path.startswith(prefix) else ""
        if not _STAGING_NAME_RE.fullmatch(name):
            raise InvalidInput(f"{fs_path!r} is not a staging path of this artifact store")
        if self._fs.get_file_info(fs_path).type != pafs.FileType.File:
            raise NotFound(f"staging file {fs_path} does not exist")
        digest = hashlib.sha256()
        size = 0
        with self._fs.open_input_stream(fs_path) as stream:
            while chunk := stream.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        return self._commit(fs_path, digest.hexdigest(), size)

    def put_stream(self, chunks: Iterable[bytes]) -> ArtifactRef:
        """Store the concatenation of ``chunks``, hashing while writing."""
        _, staged = self.staging_path()
        digest = hashlib.sha256()
        size = 0
        try:
            with self._fs.open_output_stream(staged) as out:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            return self._commit(staged, digest.hexdigest(), size)
        except BaseException:
            self._delete_quietly(staged)
            raise

    def put_bytes(self, data: bytes) -> ArtifactRef:
        """Store ``data``."""
        return self.put_stream([data])

    def put_file(self, path: str | Path) -> ArtifactRef:
        """Store a local file, streamed in 1 MiB chunks.

        Raises:
            NotFound: ``path`` is not a file.
        """
        path = Path(path)
        if not path.is_file():
            raise NotFound(f"file {path} does not exist")
        with path.open("rb") as src:
            return self.put_stream(iter(lambda: src.read(CHUNK_BYTES), b""))

    def put_dir(self, path: str | Path) -> ArtifactRef:
        """Store every file under a local directory, then its manifest; returns a ``dir`` ref.

        Symlinks to files inside the directory are stored as copies of their target.

        Raises:
            NotFound: ``path`` is not a directory.
            InvalidInput: a name holds a backslash, or a symlink leaves the directory or
                points to a directory.
        """
        root = Path(path)
        if not root.is_dir():
            raise NotFound(f"directory {root} does not exist")
        manifest: dict[str, dict[str, str | int]] = {}
        for rel, file in self._walk(root):
            ref = self.put_file(file)
            manifest[rel] = {"sha256": ref.sha256, "size_bytes": ref.size_bytes}
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        ref = self.put_bytes(data)
        return ArtifactRef(sha256=ref.sha256, size_bytes=ref.size_bytes, kind="dir")

    @staticmethod
    def _walk(root: Path) -> Iterator[tuple[str, Path]]:
        resolved_root = root.resolve()
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            here = Path(dirpath)
            for name in [*dirnames, *filenames]:
                if "\\" in name:
                    raise InvalidInput(f"{here / name} has a backslash in its name")
            for name in list(dirnames):
                if (here / name).is_symlink():
                    raise InvalidInput(f"{here / name} is a symlink to a directory")
            for name in sorted(filenames):
                file = here / name
                if file.is_symlink():
                    target = file.resolve()
                    if not target.is_file() or not target.is_relative_to(resolved_root):
                        raise InvalidInput(f"symlink {file} points outside {root}")
                elif not file.is_file():
                    continue  # sockets, fifos
                yield file.relative_to(root).as_posix(), file

    def _commit(self, staged: str, sha: str, size: int) -> ArtifactRef:
        target = self.path_for(sha)
        if self._fs.get_file_info(target).type == pafs.FileType.File:
            self._delete_quietly(staged)  # dedup: the same bytes are already stored
        else:
            # Local: an atomic rename. S3: copy + delete; a concurrent writer of the same sha
            # writes the same bytes, so the race is harmless. Object stores need no parent
            # directory, so it is only created when the move says it is missing.
            try:
                self._fs.move(staged, target)
            except FileNotFoundError:
                self._fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
                self._fs.move(staged, target)
        return ArtifactRef(sha256=sha, size_bytes=size)

    def _delete_quietly(self, fs_path: str) -> None:
        with contextlib.suppress(OSError):
            self._fs.delete_file(fs_path)

    # -- reading -------------------------------------------------------------------------------

    def _info(self, sha: str) -> pafs.FileInfo:
        info = self._fs.get_file_info(self.path_for(sha))
        if info.type != pafs.FileType.File:
            raise NotFound(f"artifact {sha} does not exist")
        return info

    def open(self, ref_or_sha: ArtifactRef | str) -> BinaryIO:
        """A reader of the object that raises ``IntegrityError`` at end of file on a mismatch.

        Only a reader read to its end has been verified.

        Raises:
            InvalidInput: the sha is malformed.
            NotFound: no such object.
        """
        sha = _sha_of(ref_or_sha)
        self._info(sha)
        size = ref_or_sha.size_bytes if isinstance(ref_or_sha, ArtifactRef) else None
        stream = self._fs.open_input_stream(self.path_for(sha))
        return io.BufferedReader(_VerifyingReader(stream, sha, size), buffer_size=CHUNK_BYTES)

    def get_bytes(self, ref_or_sha: ArtifactRef | str) -> bytes:
        """The object's verified bytes."""
        with self.open(ref_or_sha) as reader:
            return reader.read()

    def get_file(self, ref_or_sha: ArtifactRef | str, dest: str | Path) -> Path:
        """Copy the object to the local file ``dest``, verified.

        The copy goes to a temporary file that is renamed to ``dest`` only once verified, so a
        corrupt object leaves nothing at ``dest``.
        """
        dest = Path(dest)
        with self.open(ref_or_sha) as reader, atomic_write(dest) as out:
            shutil.copyfileobj(reader, out, CHUNK_BYTES)
        return dest

    def iter_verified(self, ref_or_sha: ArtifactRef | str) -> Iterator[bytes]:
        """The object's bytes in chunks of up to 1 MiB, each chunk given only once the next one
        was read: the last chunk comes after the whole object matched its sha256 (and size), so
        a damaged object raises ``IntegrityError`` before its end is given, never after.

        The object is opened, and its first two chunks read, before this returns: a missing
        object, or a damaged one of one chunk, raises here rather than in the iteration.

        Raises:
            InvalidInput: the sha is malformed.
            NotFound: no such object.
            IntegrityError: the object (read so far) does not match its sha256.
        """
        reader = self.open(ref_or_sha)
        try:
            first = reader.read(CHUNK_BYTES)
            second = reader.read(CHUNK_BYTES) if first else b""
        except BaseException:
            reader.close()
            raise
        return _held_back(reader, first, second)

    def read_manifest(self, ref_or_sha: ArtifactRef | str) -> dict[str, ArtifactRef]:
        """The files a directory manifest lists, ``{relative_path: ref}``, the manifest verified
        against its sha and every path checked (relative, no "..", no backslash).

        Raises:
            IntegrityError: the manifest is damaged or not a manifest.
            NotFound: no such object.
        """
        return {
            rel: ArtifactRef(sha256=e.sha256, size_bytes=e.size_bytes)
            for rel, e in self._read_manifest(ref_or_sha).items()
        }

    def _read_manifest(self, ref_or_sha: ArtifactRef | str) -> dict[str, _ManifestEntry]:
        return _parse_manifest(_sha_of(ref_or_sha), self.get_bytes(ref_or_sha))

    def get_dir(self, ref_or_sha: ArtifactRef | str, dest: str | Path) -> Path:
        """Materialise a directory manifest at ``dest``, verifying every file.

        The files are written to a temporary sibling directory that is renamed to ``dest`` once
        all are verified, so a failure leaves nothing at ``dest``.

        Raises:
            IntegrityError: the manifest or a file is corrupt, or an entry is not a safe
                relative path (absolute, "..", backslash).
            AlreadyExists: ``dest`` exists and is not an empty directory.
        """
        dest = Path(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise AlreadyExists(f"{dest} exists and is not an empty directory")
        entries = self._read_manifest(ref_or_sha)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            for rel, entry in entries.items():
                ref = ArtifactRef(sha256=entry.sha256, size_bytes=entry.size_bytes)
                self.get_file(ref, tmp.joinpath(*_check_relative_path(rel).parts))
            if dest.exists():
                dest.rmdir()
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return dest

    def verify(self, ref_or_sha: ArtifactRef | str) -> None:
        """Check the object's bytes against its sha (for a ``dir`` ref, every listed file too).

        Raises:
            IntegrityError: ``artifact <sha> is corrupt: expected ..., got ...``.
            NotFound: the object (or a listed file) does not exist.
        """
        if isinstance(ref_or_sha, ArtifactRef) and ref_or_sha.kind == "dir":
            for entry in self._read_manifest(ref_or_sha).values():
                self.verify(ArtifactRef(sha256=entry.sha256, size_bytes=entry.size_bytes))
            return
        with self.open(ref_or_sha) as reader:
            while reader.read(CHUNK_BYTES):
                pass

    def exists(self, sha: str) -> bool:
        """Whether object ``sha`` is stored."""
        info: pafs.FileInfo = self._fs.get_file_info(self.path_for(sha))
        return bool(info.type == pafs.FileType.File)

    def _object_infos(self) -> builtins.list[pafs.FileInfo]:
        selector = pafs.FileSelector(f"{self._root}/objects", recursive=True, allow_not_found=True)
        infos = []
        for info in self._fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            parent, _, name = info.path.rpartition("/")
            if _SHA_RE.fullmatch(name) and parent.endswith(f"/{name[:2]}"):
                infos.append(info)
        return infos

    def list(self) -> builtins.list[ArtifactRef]:
        """Every stored object, sorted by sha, as ``kind="file"`` refs."""
        refs = [
            ArtifactRef(sha256=info.base_name, size_bytes=info.size)
            for info in self._object_infos()
        ]
        return sorted(refs, key=lambda ref: ref.sha256)

    def delete(self, sha: str) -> None:
        """Delete object ``sha``.

        Raises:
            NotFound: no such object.
        """
        self._info(sha)
        self._fs.delete_file(self.path_for(sha))

    # -- garbage collection --------------------------------------------------------------------

    def _manifest_files(self, sha: str, size: int) -> set[str]:
        """The shas a referenced object lists if it is a directory manifest, else nothing.

        A plain file that happens to parse as a manifest only keeps more objects alive.
        """
        if size > _MAX_MANIFEST_BYTES:
            return set()
        # Read unverified on purpose: a manifest is only used here to keep more objects.
        try:
            with self._fs.open_input_stream(self.path_for(sha)) as stream:
                if stream.read(1) != b"{":
                    return set()
                data = b"{" + stream.read()
            return {entry.sha256 for entry in _parse_manifest(sha, data).values()}
        except (IntegrityError, FileNotFoundError):
            return set()

    def gc(self, referenced: Iterable[str], *, min_age_s: float = 3600) -> GcReport:
        """Delete unreferenced objects and stale staging files older than ``min_age_s``.

        The files listed by a referenced directory manifest count as referenced. Objects and
        staging files younger than ``min_age_s`` are kept, so a write whose metadata is not yet
        committed survives; ``min_age_s=0`` ignores age.

        Raises:
            InvalidInput: a referenced sha is malformed.
        """
        keep = {_check_sha(sha) for sha in referenced}
        objects = self._object_infos()
        sizes = {info.base_name: info.size for info in objects}
        for sha in builtins.list(keep):
            if sha in sizes:
                keep |= self._manifest_files(sha, sizes[sha])
        now_ns = time.time_ns()
        deleted = freed = kept = 0
        for info in objects:
            if info.base_name in keep or not _is_old(info, min_age_s, now_ns):
                kept += 1
                continue
            with contextlib.suppress(FileNotFoundError):
                self._fs.delete_file(info.path)
                deleted += 1
                freed += info.size
        staging = pafs.FileSelector(f"{self._root}/staging", allow_not_found=True)
        for info in self._fs.get_file_info(staging):
            if info.type == pafs.FileType.File and _is_old(info, max(min_age_s, 0), now_ns):
                with contextlib.suppress(FileNotFoundError):
                    self._fs.delete_file(info.path)
                    deleted += 1
                    freed += info.size
        return GcReport(deleted=deleted, freed_bytes=freed, kept=kept)
