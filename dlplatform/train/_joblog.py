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
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple


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
        from ray.dashboard.modules.job.job_log_storage_client import (  # Ray node only
            JobLogStorageClient,
        )

        return Path(JobLogStorageClient().get_log_file_path(submission_id))
    except (AttributeError, ImportError):  # no Ray node in this process, or Ray moved it
        return None


POOL_NAME_PREFIX = "pool-"
"""The name of a run on the warm pool is this and its id (a Ray Job's is ``dlp-<id>``)."""
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def pool_log_path(home: Path, run_id: str) -> Path:
    """The log of a run on the warm pool: its driver's lines and its workers' output."""
    if not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise ValueError(f"invalid run id {run_id[:80]!r}")
    return home / "logs" / "train" / f"{run_id}.log"


RAY_NOISE = (
    "PYTHON worker processes have been started",  # the raylet's worker-pool warning
    "worker processes have been started on node",
)
"""Lines Ray prints into a driver's output that say nothing about the user's job: they go to the
platform's own log (``<home>/logs/ray-noise.log``), not to the job log a user reads."""


class NoiseFilter:
    """A text stream that passes every line to ``stream`` except Ray's internal noise
    (``RAY_NOISE``), which it appends to ``noise_path`` with the run id. Real errors, the user's
    prints and the workers' output pass unchanged. Whole lines only: a partial line waits for
    its end (or ``flush``)."""

    def __init__(self, stream: Any, noise_path: Path, run_id: str) -> None:
        self._stream = stream
        self._noise_path = noise_path
        self._run_id = run_id
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" not in self._pending:
            return len(text)
        *lines, self._pending = self._pending.split("\n")
        kept = [line for line in lines if not self._is_noise(line)]
        if kept:
            self._stream.write("\n".join(kept) + "\n")
        return len(text)

    def _is_noise(self, line: str) -> bool:
        if not any(marker in line for marker in RAY_NOISE):
            return False
        try:
            self._noise_path.parent.mkdir(parents=True, exist_ok=True)
            with self._noise_path.open("a", encoding="utf-8") as out:
                out.write(f"{self._run_id} {line}\n")
        except OSError:
            pass  # the platform's log is best effort; the line is still kept out of the job's
        return True

    def flush(self) -> None:
        if self._pending and not self._is_noise(self._pending):
            self._stream.write(self._pending)
        self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding, ... of the stream
        return getattr(self._stream, name)


def route_ray_noise(home: Path, run_id: str) -> None:
    """Keep Ray's internal warnings out of this driver's output (see ``NoiseFilter``)."""
    noise = home / "logs" / "ray-noise.log"
    sys.stdout = NoiseFilter(sys.stdout, noise, run_id)  # type: ignore[assignment]
    sys.stderr = NoiseFilter(sys.stderr, noise, run_id)  # type: ignore[assignment]
