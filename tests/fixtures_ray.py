"""One real local Ray cluster for the whole test session (integration tests only)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Set before Ray starts so that workers inherit them (see ../shared/RAY_NOTES.md §8).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")
os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    import ray

    if ray.is_initialized():
        yield
        return
    for attempt in range(4):
        try:
            ray.init(
                address="local",
                num_cpus=4,  # logical CPUs > cores so Train workers and Ray Data both get slots
                include_dashboard=True,  # Train V2's placement-group cleaner needs the State API
                log_to_driver=False,
                logging_level="WARNING",
                namespace="dlp-tests",
                _temp_dir=str(tmp_path_factory.mktemp("ray", numbered=True)),
            )
            break
        except Exception:
            # On a loaded 2-core machine the raylet can miss Ray's fixed 30 s registration
            # window ("timed out during startup"); a second start usually succeeds.
            ray.shutdown()
            if attempt == 3:
                raise
    try:
        yield
    finally:
        ray.shutdown()
