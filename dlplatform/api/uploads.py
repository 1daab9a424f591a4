"""Request bodies streamed to a file: dataset pushes and run artifacts."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from fastapi import Request

from dlplatform.errors import TooLarge


async def stage_body(request: Request, directory: Path, limit: int, suffix: str = "") -> Path:
    """Stream the body to a new file under ``directory``, never holding it in memory.

    Raises:
        TooLarge: the body passed ``limit`` bytes (the partial file is removed).
    """
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, prefix="upload-", suffix=suffix)
    path = Path(name)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"upload exceeds the limit of {limit} bytes")
                out.write(chunk)
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path
