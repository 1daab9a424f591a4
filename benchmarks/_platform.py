"""A platform for the benchmarks that run against ``dlp up`` (``soak.py``, ``failover_bench.py``):
a new one in a temporary home, or the one already running under a given home."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from client_bench import platform_up

REPO = Path(__file__).resolve().parent.parent


def with_checkout_on_pythonpath(*extra: Path) -> None:
    """Put this checkout (and ``extra`` folders) on ``PYTHONPATH``: ``dlp up`` passes its
    environment to the platform's processes, which then import ``dlplatform`` from here even
    where it is not installed (and a benchmark's workflow module from ``extra``)."""
    old = filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))
    parts = [str(REPO), *(str(p) for p in extra), *old]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))


@contextlib.contextmanager
def platform(home: Path | None, prefix: str) -> Iterator[tuple[str, str, Path]]:
    """Yields (base URL, admin token, home): the platform running under ``home`` (left
    running), else a new one under ``/tmp/<prefix>...`` that ``dlp down`` stops at the end."""
    if home is not None:
        record = json.loads((home / "cluster.json").read_text())
        token = (home / "admin.token").read_text().strip()
        yield f"http://{record['api_host']}:{record['api_port']}", token, home
        return
    with (
        # A short path: Ray's socket paths must stay under ~107 bytes.
        tempfile.TemporaryDirectory(prefix=prefix, dir="/tmp") as tmp,
        platform_up(Path(tmp) / "h") as (url, token),
    ):
        yield url, token, Path(tmp) / "h"
