"""Request metrics of a replica: Prometheus series through ``ray.util.metrics``, plus local stats.

Series (exported by every Ray node's metrics agent; Prometheus scrapes
``http://<node>:<metrics_export_port>/metrics``, the port Ray prints at start and lists in
``ray.nodes()[i]["MetricsExportPort"]``; Ray prefixes custom metrics with ``ray_``):

- ``dlp_serve_requests_total{deployment, model, version}``: answered requests (counter)
- ``dlp_serve_errors_total{deployment, model, version, code}``: requests answered with an error
- ``dlp_serve_latency_ms{deployment, model, version}``: time in the replica (histogram). Above
  ``LATENCY_SAMPLES_PER_PUBLISH`` requests a second per replica and series it records a uniform
  random sample of them: its ``_count`` then undercounts (``dlp_serve_requests_total`` is the
  exact count), its quantiles stay unbiased.

Serve's own per-request latency histograms of the platform's replicas
(``serve_deployment_processing_latency_ms`` and the ingress one) get the same cap
(``_ray_internals.cap_serve_latency_samples``, a patch of Serve); its request counters stay exact.

The request path only appends to in-memory lists; the replica's background loop hands them to
Ray's metrics once a second, so a request does not pay for metric recording. Each observation
costs Ray about 10 µs on the replica's event loop; thousands at once stalled every request
waiting behind them, hence the sample.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict, deque
from typing import Any

LATENCY_BOUNDARIES_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]
LATENCY_SAMPLES_PER_PUBLISH = 200


class RequestMetrics:
    """Per-replica counters and a latency window; pushed to Prometheus by ``publish``."""

    def __init__(self, deployment: str, window: int = 10_000) -> None:
        self.deployment = deployment
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.errors: dict[tuple[str, int, str], int] = defaultdict(int)
        self._pending_latency: list[tuple[str, int, float]] = []
        self._pending_requests: dict[tuple[str, int], int] = defaultdict(int)
        self._pending_errors: dict[tuple[str, int, str], int] = defaultdict(int)
        self._window: deque[float] = deque(maxlen=window)
        self._series: tuple[Any, Any, Any] | None = None
        self.started = time.time()

    def ok(self, model: str, version: int, latency_ms: float) -> None:
        key = (model, version)
        self.requests[key] += 1
        self._pending_requests[key] += 1
        self._pending_latency.append((model, version, latency_ms))
        self._window.append(latency_ms)

    def error(self, model: str, version: int, code: str) -> None:
        key = (model, version, code)
        self.errors[key] += 1
        self._pending_errors[key] += 1

    def _make_series(self) -> tuple[Any, Any, Any]:
        from ray.util import metrics  # on first publish, in a replica: the module loads no Ray

        keys = ("deployment", "model", "version")
        return (
            metrics.Counter("dlp_serve_requests", "Answered inference requests.", keys),
            metrics.Counter(
                "dlp_serve_errors",
                "Inference requests answered with an error.",
                (*keys, "code"),
            ),
            metrics.Histogram(
                "dlp_serve_latency_ms",
                "Time in the replica per request (ms).",
                LATENCY_BOUNDARIES_MS,
                keys,
            ),
        )

    def publish(self) -> None:
        """Hand what accumulated since the last call to Ray's metrics system."""
        if self._series is None:
            self._series = self._make_series()
        requests, errors, latency = self._series
        pending, self._pending_requests = self._pending_requests, defaultdict(int)
        for (model, version), n in pending.items():
            requests.inc(
                n, {"deployment": self.deployment, "model": model, "version": str(version)}
            )
        failed, self._pending_errors = self._pending_errors, defaultdict(int)
        for (model, version, code), n in failed.items():
            errors.inc(
                n,
                {
                    "deployment": self.deployment,
                    "model": model,
                    "version": str(version),
                    "code": code,
                },
            )
        observed, self._pending_latency = self._pending_latency, []
        by_series: dict[tuple[str, int], list[float]] = defaultdict(list)
        for model, version, ms in observed:
            by_series[(model, version)].append(ms)
        for (model, version), values in by_series.items():
            if len(values) > LATENCY_SAMPLES_PER_PUBLISH:
                values = random.sample(values, LATENCY_SAMPLES_PER_PUBLISH)
            tags = {"deployment": self.deployment, "model": model, "version": str(version)}
            for ms in values:
                latency.observe(ms, tags)

    def stats(self) -> dict[str, float]:
        """Totals and latency percentiles of this replica (for ``dlp serve list``)."""
        window = sorted(self._window)

        def pct(q: float) -> float:
            return round(window[min(len(window) - 1, int(q * len(window)))], 3) if window else 0.0

        return {
            "requests": float(sum(self.requests.values())),
            "errors": float(sum(self.errors.values())),
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            **{f"requests_v{v}": float(n) for (_, v), n in sorted(self.requests.items())},
        }
