"""A job driver's log read by byte range: one bounded chunk per call, never the whole file.

``GET /training/jobs/{id}/logs?offset=N`` is polled every second by ``dlp train logs --follow``
and the web UI; reading the whole file per poll made each poll cost the size of the log so far.
The scheduler actor runs on the head node, where Ray Jobs writes each driver's output
(``job-driver-<submission id>.log`` in the session's log folder), so it seeks to the offset and
reads at most the chunk size. A chunk ends on a whole UTF-8 character: a character cut by the
limit is left for the next read, so offsets stay byte positions and the text stays valid.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple


class LogChunk(NamedTuple):
    """``text`` read from ``offset``; continue at ``next_offset``; the log held ``size`` bytes."""

    text: str
    next_offset: int
    size: int


def _whole_characters(data: bytes) -> int:
    """How many leading bytes of ``data`` end on a UTF-8 character boundary."""
    end = len(data)
    start = end
    while start > 0 and end - start < 4:  # back to the lead byte of the last character
        start -= 1
        if data[start] & 0xC0 != 0x80:
            break
    if start == end:
        return end
    lead = data[start]
    width = 1 if lead < 0x80 else 2 if lead >> 5 == 0b110 else 3 if lead >> 4 == 0b1110 else 4
    if lead & 0xC0 == 0x80 or lead >> 3 == 0b11111:  # not a lead byte: invalid UTF-8, keep it
        return end
    return end if start + width <= end else start


def _chunk(data: bytes, offset: int, size: int) -> LogChunk:
    at_end = offset + len(data) >= size
    keep = len(data) if at_end else _whole_characters(data) or len(data)
    text = data[:keep].decode("utf-8", errors="replace")
    return LogChunk(text, offset + keep, size)


def read_log_range(path: str | Path, offset: int, limit: int) -> LogChunk:
    """At most ``limit`` bytes of the file at ``path`` from byte ``offset`` on (seek, then read).

    An ``offset`` at or past the end gives no text and ``next_offset == offset``.
    """
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1, got {offset} and {limit}")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if offset >= size:
            return LogChunk("", offset, size)
        f.seek(offset)
        return _chunk(f.read(limit), offset, size)


def slice_log(data: bytes, offset: int, limit: int) -> LogChunk:
    """The same chunk cut from a log already in memory (a driver that ran on another node)."""
    if offset < 0 or limit < 1:
        raise ValueError(f"offset must be >= 0 and limit >= 1, got {offset} and {limit}")
    if offset >= len(data):
        return LogChunk("", offset, len(data))
    return _chunk(data[offset : offset + limit], offset, len(data))


def driver_log_path(submission_id: str) -> Path | None:
    """Where Ray Jobs writes the driver output of ``submission_id`` on this node (the head), or
    None when this process is not attached to a Ray node."""
    try:
        from ray.dashboard.modules.job.job_log_storage_client import JobLogStorageClient

        return Path(JobLogStorageClient().get_log_file_path(submission_id))
    except (AttributeError, ImportError):  # no Ray node in this process, or Ray moved it
        return None
