"""Snapshots of the database file, read in pieces by a process that cannot open the file.

A backup needs the database as of one moment while the platform keeps writing. The process that
owns the file (the metadata actor) copies it under the store's lock (``Database.snapshot``) to
``<database>.snapshots/<id>``, beside the file; the gateway, which may run on another node, reads
the copy in pieces through the actor and deletes it when done. A snapshot its reader abandoned is
deleted by the next ``begin_snapshot`` once a day old.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata._db import Database

MAX_SNAPSHOT_READ_BYTES = 8 * 1024 * 1024
"""The most bytes one ``read_snapshot`` call returns."""
STALE_SNAPSHOT_S = 24 * 3600.0
_ID = re.compile(r"[0-9a-f]{32}")


class Snapshot(BaseModel, frozen=True, extra="forbid"):
    """A copy of the database file that ``read_snapshot`` reads (``begin_snapshot``)."""

    id: str = Field(description="32 lowercase hex digits.")
    size_bytes: int = Field(ge=0, description="Size of the copy.")
    schema_version: int = Field(ge=0, description="The newest migration the copy holds.")


class SnapshotFiles:
    _db: Database

    def _snapshot_dir(self) -> Path:
        db = Path(self._db.path)
        return db.with_name(f"{db.name}.snapshots")

    def _snapshot_path(self, snapshot_id: str) -> Path:
        if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id):
            raise InvalidInput(f"invalid snapshot id {str(snapshot_id)[:40]!r}")
        path = self._snapshot_dir() / snapshot_id
        if not path.is_file():
            raise NotFound(f"snapshot {snapshot_id} does not exist")
        return path

    def begin_snapshot(self) -> Snapshot:
        """Copy the database, as of now, to a snapshot file beside it (``Database.snapshot``).

        Raises:
            InvalidInput: the database is in memory.
        """
        folder = self._snapshot_dir()
        folder.mkdir(mode=0o700, exist_ok=True)
        now = time.time()
        for old in folder.iterdir():
            with contextlib.suppress(OSError):
                if now - old.stat().st_mtime > STALE_SNAPSHOT_S:
                    old.unlink()
        snapshot_id = uuid.uuid4().hex
        path = folder / snapshot_id
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never group-readable
        os.close(fd)
        try:
            self._db.snapshot(path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Snapshot(
            id=snapshot_id,
            size_bytes=path.stat().st_size,
            schema_version=self._db.schema_version(),
        )

    def read_snapshot(self, snapshot_id: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes (at most ``MAX_SNAPSHOT_READ_BYTES``) of a snapshot from
        ``offset``; empty past its end.

        Raises:
            InvalidInput: a malformed id, or a negative offset or length.
            NotFound: no such snapshot.
        """
        if offset < 0 or length < 0:
            raise InvalidInput("offset and length must not be negative")
        with self._snapshot_path(snapshot_id).open("rb") as fh:
            fh.seek(offset)
            return fh.read(min(length, MAX_SNAPSHOT_READ_BYTES))

    def end_snapshot(self, snapshot_id: str) -> None:
        """Delete a snapshot (nothing happens when it is gone already).

        Raises:
            InvalidInput: a malformed id.
        """
        with contextlib.suppress(NotFound):
            self._snapshot_path(snapshot_id).unlink(missing_ok=True)
