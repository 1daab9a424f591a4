"""The metadata's write generation, published in a small shared-memory file.

The metadata actor is the one writer of the database. It keeps a 16-byte file beside it
(``<database>.generation``: a nonce drawn when the actor starts, then a counter) and moves the
counter on every write, before the write returns. A reader on the same machine (the gateway's
replica) maps the file and reads both numbers in about a microsecond, so it can answer repeated
reads from memory and still see every write acknowledged before its read began: a remembered
result is used only while the file still holds the (nonce, counter) it was fetched under.
A restarted actor draws a new nonce, so nothing remembered from before it is used again.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
from pathlib import Path

_LAYOUT = struct.Struct("<QQ")  # nonce, counter
_COUNTER = struct.Struct("<Q")
SUFFIX = ".generation"


class SharedGeneration:
    """The writer's side: the file, created (0600) or taken over in place, with a new nonce.

    In place, not replaced: a reader that mapped the file before a restart of the writer keeps
    seeing the live numbers.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size)
        finally:
            os.close(fd)
        self.nonce = secrets.randbits(63) + 1
        self._counter = 0
        _LAYOUT.pack_into(self._map, 0, self.nonce, self._counter)

    def bump(self) -> None:
        self._counter += 1
        _COUNTER.pack_into(self._map, 8, self._counter)

    def stamp(self) -> tuple[int, int]:
        return self.nonce, self._counter


class GenerationReader:
    """The reader's side: ``stamp()`` is the file's (nonce, counter), or None while the file
    cannot be read (not on this machine, not created yet)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._map: mmap.mmap | None = None

    def stamp(self) -> tuple[int, int] | None:
        if self._map is None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                return None
            try:
                if os.fstat(fd).st_size < _LAYOUT.size:
                    return None
                self._map = mmap.mmap(fd, _LAYOUT.size, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
        nonce, counter = _LAYOUT.unpack_from(self._map, 0)
        return int(nonce), int(counter)
