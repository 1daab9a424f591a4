"""Retention of logged prediction inputs (``Settings.prediction_input_retention_days``).

A replica logs the inputs of a sampled share of its requests (``serve._predlog``): people's data,
kept for drift monitoring and feedback, not forever. ``purge_expired_inputs`` blanks the inputs
of predictions older than the retention period (the request id, version, outputs and latency stay,
so feedback, lineage and accuracy still work). The metadata actor, the one process that always
runs and owns the DuckDB file, runs a ``RetentionSweeper``: once when it starts, then every
``SWEEP_S``. Any other code holding a store may call ``purge_expired_inputs`` too; it is
idempotent.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from dlplatform.metadata.records import utcnow

SWEEP_S = 3600.0
"""How often the metadata actor applies the retention rule."""

log = logging.getLogger(__name__)


def purge_expired_inputs(store: Any, retention_days: float, now: datetime | None = None) -> int:
    """Blank the logged inputs of predictions older than ``retention_days`` (0: keep forever).

    ``store`` is a ``MetadataStore`` or its actor's client. Returns how many were blanked.
    """
    if retention_days <= 0:
        return 0
    before = (now or utcnow()) - timedelta(days=retention_days)
    return int(store.purge_prediction_inputs(before))


class RetentionSweeper:
    """A daemon thread applying ``purge_expired_inputs`` now and then every ``every_s``."""

    def __init__(self, store: Any, retention_days: float, every_s: float = SWEEP_S) -> None:
        self._store = store
        self._days = retention_days
        self._every_s = every_s
        self._stop = threading.Event()
        self.purged = 0

    def start(self) -> RetentionSweeper:
        """Start sweeping (nothing to do when retention is off)."""
        if self._days > 0:
            threading.Thread(target=self._loop, name="dlp-retention", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.purged += purge_expired_inputs(self._store, self._days)
            except Exception:  # keep sweeping: the next round may work (e.g. a locked file)
                log.exception("blanking expired prediction inputs failed")
            self._stop.wait(self._every_s)
