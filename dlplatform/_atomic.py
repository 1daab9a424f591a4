"""Files that appear whole or not at all: written to a temporary sibling, renamed when done."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(dest: Path) -> Iterator[BinaryIO]:
    """A file to write ``dest``'s bytes to: a temporary file beside it (``.NAME.*.tmp``),
    renamed to ``dest`` when the block ends, removed when the block raises (a failed check of
    the bytes included), so no reader ever sees a partial ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        os.replace(tmp_name, dest)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
