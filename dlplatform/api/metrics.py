"""Prometheus series of the gateway, through ``ray.util.metrics`` (as ``serve/_metrics.py``).

The gateway runs in a Ray Serve replica, so its series are exported by the node's metrics agent:
Prometheus scrapes ``http://<node>:<metrics_export_port>/metrics`` (Ray prefixes custom series
with ``ray_``):

- ``dlp_gateway_auth_failures_total{outcome}``: requests whose token was refused (``refused``,
  answered 401) and requests of a source blocked for failing too often (``throttled``, 429).

Outside a Ray process (unit tests, the in-process gateway) nothing is exported; the counts stay
in ``AuthFailures.counts``.
"""

from __future__ import annotations

import sys
import threading
from typing import Any


class AuthFailureSeries:
    """``observe`` callback of ``AuthFailures``: one counter increment per refused request.

    The series is made on first use, and only in a process where Ray is initialised (the Serve
    replica); Ray is never imported here for it (2 s on this machine).
    """

    def __init__(self) -> None:
        self._series: Any = None
        self._lock = threading.Lock()

    def __call__(self, outcome: str) -> None:
        series = self._get()
        if series is not None:
            series.inc(1, {"outcome": outcome})

    def _get(self) -> Any:
        if self._series is None:
            ray = sys.modules.get("ray")
            if ray is None or not ray.is_initialized():
                return None
            with self._lock:
                if self._series is None:
                    from ray.util import metrics  # ray: only where Ray already runs

                    self._series = metrics.Counter(
                        "dlp_gateway_auth_failures",
                        "Gateway requests refused for their token (401) or throttled (429).",
                        ("outcome",),
                    )
        return self._series
