"""Files streamed to the caller: the artifacts of runs and of model versions.

The bytes come from ``ArtifactStore.iter_verified``, which gives each chunk only after reading
the next, and the last only once the whole file matched its sha256: a damaged stored file ends
the response before its end (the declared ``Content-Length`` is never reached, so every HTTP
client sees a cut body), never as wrong bytes that look complete. The caller checks the bytes
against the ``X-DLP-SHA256`` header too (the SDK does).

A stored file may hold anything a user logged (HTML, SVG, scripts): it is sent as an
attachment, with ``nosniff`` and a sandboxing CSP, so a browser never runs it on the gateway's
origin, whatever its media type.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from dlplatform.metadata.records import ArtifactFile

SHA256_HEADER = "X-DLP-SHA256"

FILE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
        "description": f"The file's bytes; Content-Type guessed from its name, its sha256 in "
        f"{SHA256_HEADER}. A stored file found damaged cuts the body short.",
    }
}


def file_response(file: ArtifactFile, chunks: Iterator[bytes]) -> StreamingResponse:
    """The streamed response for ``file``, whose bytes ``chunks`` gives, verified."""
    name = file.path.rsplit("/", 1)[-1]
    headers = {
        SHA256_HEADER: file.sha256,
        "Content-Length": str(file.size_bytes),
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-cache",
    }
    return StreamingResponse(chunks, media_type=file.media_type, headers=headers)
