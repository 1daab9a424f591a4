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
(``cap_serve_latency_samples``); Serve's request counters stay exact.

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

from dlplatform.serve._raypatch import Target, patch_once

LATENCY_BOUNDARIES_MS = [0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000]
LATENCY_SAMPLES_PER_PUBLISH = 200

SERVE_LATENCY_REPORT = Target(
    module="ray.serve._private.replica",
    path="ReplicaMetricsManager._report_cached_metrics",
    uses=(
        "_report_cached_metrics",
        "_cached_metrics_interval_s",
        "_cached_latencies",
        "_cached_ingress_processing_latencies",
    ),
    why="sampling Serve's per-request latency histograms (cap_serve_latency_samples)",
)


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
        from ray.util import metrics

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


def cap_serve_latency_samples(per_second: int = LATENCY_SAMPLES_PER_PUBLISH) -> None:
    """Give Serve's own per-request latency histograms of this replica process the same sample
    cap as the platform's: at most ``per_second`` observations a second per series.

    Ray 2.60's metrics agent turns every histogram observation of every process back into one
    OpenTelemetry ``record`` call (``record_histogram_aggregated_batch`` loops over each bucket's
    count). A replica records two per request (processing and ingress latency), so at 3,000
    requests a second the node's agent spent a third of a core on them, on a machine whose other
    core the replica needs. Serve's request counters stay exact; only its latency histograms are
    sampled (uniformly, so their quantiles stay unbiased; their ``_count`` undercounts).

    Raises:
        RayPatchError: Ray's internals differ from 2.60's (``SERVE_LATENCY_REPORT``).
    """

    def wrap(original: Any) -> Any:
        def report(self: Any) -> None:
            interval_s = float(getattr(self, "_cached_metrics_interval_s", 0) or 0)
            limit = max(1, round(per_second * interval_s))
            for pending in _latency_buffers(self):
                if len(pending) > limit:
                    kept = random.sample(list(pending), limit)
                    pending.clear()
                    pending.extend(kept)
            original(self)

        return report

    patch_once(SERVE_LATENCY_REPORT, wrap)


def _latency_buffers(manager: Any) -> list[Any]:
    """The manager's pending latency samples: ``{route: deque}`` and, per protocol,
    ``{tags: list}`` (``SERVE_LATENCY_REPORT`` checks that Ray still keeps both)."""
    found: list[Any] = []
    per_route = getattr(manager, "_cached_latencies", None)
    if isinstance(per_route, dict):
        found.extend(per_route.values())
    per_protocol = getattr(manager, "_cached_ingress_processing_latencies", None)
    if isinstance(per_protocol, dict):
        for per_tags in per_protocol.values():
            if isinstance(per_tags, dict):
                found.extend(per_tags.values())
    return [buf for buf in found if isinstance(buf, (list, deque))]
