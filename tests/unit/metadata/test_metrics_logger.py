"""MetricLogger over a real in-process MetadataStore: buffering, background flushes, close, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dlplatform.metadata import MetadataStore, Run
from dlplatform.metadata.metrics_logger import MetricLogger
from dlplatform.metadata.records import utcnow


@pytest.fixture
def st(tmp_path: Path) -> Iterator[MetadataStore]:
    s = MetadataStore(tmp_path / "m.duckdb")
    s.create_run(Run(id="r-1", owner="alice", created_at=utcnow()))
    yield s
    s.close()


def wait_for(check: Callable[[], bool], limit_s: float = 10.0) -> bool:
    """Poll ``check`` until it holds (a generous limit: this is about correctness, not speed)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_points_are_buffered_then_flushed_by_the_background_thread(st: MetadataStore) -> None:
    logger = MetricLogger(st, "r-1", flush_interval_s=0.2)
    try:
        for step in range(50):
            logger.log_metric("loss", 1.0 / (step + 1), step)
        assert wait_for(lambda: len(st.get_metrics("r-1")) == 50)
        for step in range(50, 60):
            logger.log_metric("loss", 0.0, step)
        assert wait_for(lambda: len(st.get_metrics("r-1")) == 60)  # later intervals flush too
    finally:
        logger.close()
    points = st.get_metrics("r-1", "loss")
    assert [p.step for p in points] == list(range(60))
    assert points[0].value == 1.0 and points[0].timestamp > 1e9
    assert logger.errors == []


def test_nothing_reaches_the_store_before_a_flush(st: MetadataStore) -> None:
    logger = MetricLogger(st, "r-1", flush_interval_s=60)
    try:
        logger.log_metric("acc", 0.5, 1)
        time.sleep(0.3)
        assert st.get_metrics("r-1") == []  # buffered, off the caller's path
        assert logger.flush() == 1
        assert logger.flush() == 0
        assert [p.value for p in st.get_metrics("r-1")] == [0.5]
    finally:
        logger.close()


def test_close_flushes_everything(st: MetadataStore) -> None:
    with MetricLogger(st, "r-1", flush_interval_s=60) as logger:
        for step in range(1000):
            logger.log_metrics({"loss": float(step), "acc": step / 1000}, step=step)
        logger.log_metric("other", 1.0, 0, run_id="r-2")
    assert len(st.get_metrics("r-1")) == 2000
    assert len(st.get_metrics("r-2")) == 1
    assert st.latest_metrics("r-1") == {"loss": 999.0, "acc": 0.999}
    logger.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        logger.log_metric("loss", 1.0)


def test_full_buffer_flushes_early(st: MetadataStore) -> None:
    logger = MetricLogger(st, "r-1", flush_interval_s=60, max_buffer=100)
    try:
        for step in range(150):
            logger.log_metric("loss", 1.0, step)
        assert wait_for(lambda: len(st.get_metrics("r-1")) >= 100)
    finally:
        logger.close()
    assert len(st.get_metrics("r-1")) == 150


def test_many_threads_lose_nothing(st: MetadataStore) -> None:
    logger = MetricLogger(st, "r-1", flush_interval_s=0.05, max_buffer=500)

    def work(worker: int) -> None:
        for step in range(2000):
            logger.log_metric(f"w{worker}", float(step), step)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    logger.close()
    assert logger.errors == []
    points = st.get_metrics("r-1")
    assert len(points) == 8000
    for worker in range(4):
        assert [p.step for p in points if p.key == f"w{worker}"] == list(range(2000))


def test_store_error_does_not_crash_the_caller(tmp_path: Path) -> None:
    broken = MetadataStore(tmp_path / "broken.duckdb")
    broken.close()  # every call now fails inside DuckDB
    logger = MetricLogger(broken, "r-1", flush_interval_s=0.05)
    for step in range(10):
        logger.log_metric("loss", 1.0, step)  # the training loop goes on
    assert wait_for(lambda: len(logger.errors) >= 1)
    assert logger.flush() == 0
    logger.log_metric("loss", 1.0, 11)
    logger.close()  # does not raise either
    assert logger.errors
    assert all(isinstance(e, str) and e for e in logger.errors)
    assert "closed" in logger.errors[0].lower() or "connection" in logger.errors[0].lower()
