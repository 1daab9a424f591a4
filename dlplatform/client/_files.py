"""Downloads of stored files (run and model-version artifacts), checked end to end.

Each file is streamed to a temporary file beside its destination while its sha256 is computed,
and renamed into place only when the bytes match the hash the caller expected (from the
listing) and the one the gateway sent (``X-DLP-SHA256``): a damaged or cut-off download raises
``IntegrityError`` and leaves nothing behind. Paths the gateway names are checked before any
local path is built from them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import httpx

from dlplatform._atomic import atomic_write
from dlplatform.client._http import HttpClient
from dlplatform.errors import AlreadyExists, IntegrityError, InvalidInput
from dlplatform.metadata.records import ArtifactFile

SHA256_HEADER = "X-DLP-SHA256"
_CHUNK_BYTES = 1 << 20
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def safe_parts(path: str) -> tuple[str, ...]:
    """The segments of a relative file path the gateway named, if each is a plain name
    (``A-Z a-z 0-9 _ . -``, not ``.`` or ``..``).

    Raises:
        InvalidInput: an absolute path, ``..``, a backslash, an empty segment.
    """
    parts = tuple(path.split("/"))
    if len(path) > 512 or not all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise InvalidInput(f"refusing the file path {path[:80]!r}: not a plain relative path")
    return parts


def download(http: HttpClient, url_path: str, file: ArtifactFile, dest: Path) -> Path:
    """Stream ``url_path`` (the bytes of ``file``) to ``dest``, verified, via a temporary file.

    Raises:
        IntegrityError: the bytes do not match ``file.sha256`` or the gateway's header, or the
            download was cut off (the gateway found the stored file damaged, or the connection
            broke).
    """
    with atomic_write(dest) as out, http.stream("GET", url_path, timeout_s=600.0) as response:
        sent_sha = response.headers.get(SHA256_HEADER, "")
        digest, size = hashlib.sha256(), 0
        try:
            for chunk in response.iter_bytes(_CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        except httpx.TransportError as exc:
            raise IntegrityError(
                f"{file.path}: the download was cut off after {size} of {file.size_bytes} "
                f"bytes ({exc or type(exc).__name__}); nothing was kept"
            ) from None
        actual = digest.hexdigest()
        if actual != file.sha256 or sent_sha not in ("", file.sha256) or size != file.size_bytes:
            raise IntegrityError(
                f"{file.path} is damaged or incomplete: expected sha256 {file.sha256} "
                f"({file.size_bytes} bytes), got {actual} ({size} bytes); nothing was kept"
            )
    return dest


def download_all(
    http: HttpClient,
    url_of: Callable[[ArtifactFile], str],
    files: list[ArtifactFile],
    directory: Path,
    *,
    force: bool = False,
) -> list[Path]:
    """Download ``files`` into ``directory`` under their paths, all or nothing: they are written
    to a temporary sibling directory, each verified, then moved in.

    Raises:
        AlreadyExists: ``directory`` is a file, or a non-empty directory and not ``force``.
        InvalidInput: a listed path is not a plain relative path.
        IntegrityError: a file is damaged (nothing is written to ``directory``).
    """
    directory = directory.expanduser()
    if directory.exists() and not directory.is_dir():
        raise AlreadyExists(f"{directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise AlreadyExists(f"{directory} is not empty (--force / force=True writes into it)")
    targets = [(f, safe_parts(f.path)) for f in files]
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        for file, parts in targets:
            download(http, url_of(file), file, tmp.joinpath(*parts))
        if not directory.exists():
            tmp.rename(directory)
            return [directory.joinpath(*parts) for _, parts in targets]
        written = []
        for _, parts in targets:
            final = directory.joinpath(*parts)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp.joinpath(*parts), final)
            written.append(final)
        return written
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
