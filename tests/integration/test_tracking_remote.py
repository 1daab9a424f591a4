"""A run tracked over real HTTP by a separate process that is killed mid-run (issue 21, "Real
parts in the tests"): the points its background thread flushed before the SIGKILL are stored,
as a gap-free prefix of what it logged; at most the last flush interval is lost.

Costs: a second Python process (~1 s to start) logging for ~3 s against the session gateway.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import dlplatform as dlp

pytestmark = pytest.mark.integration

INTERVAL_S = 0.2
SLACK_S = 1.5  # a loaded 2-core machine may delay one flush this much
SCRIPT = f"""
import time
import dlplatform as dlp
run = dlp.connect().runs.start(name="killed-mid-run", flush_interval_s={INTERVAL_S})
print("RUN", run.id, flush=True)
step = 0
while True:
    run.log_metric("loss", 1.0 / (step + 1), step)
    if step % 10 == 0:
        print("STEP", step, time.time(), flush=True)
    step += 1
    time.sleep(0.002)
"""


def test_points_flushed_before_a_sigkill_are_stored(
    gateway_url: str, gateway_admin_token: str
) -> None:
    env = {**os.environ, "DLP_URL": gateway_url, "DLP_TOKEN": gateway_admin_token}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    assert proc.stdout is not None
    logged: list[tuple[int, float]] = []
    run_id = ""
    try:
        first = proc.stdout.readline().split()
        assert first[:1] == ["RUN"], first
        run_id = first[1]
        started = time.time()
        while time.time() - started < 3.0:
            parts = proc.stdout.readline().split()
            assert parts and parts[0] == "STEP", parts
            logged.append((int(parts[1]), float(parts[2])))
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    killed_at = time.time()
    with dlp.connect(gateway_url, gateway_admin_token) as p:
        steps = sorted(point.step for point in p.runs.metrics(run_id, "loss"))
        view = p.runs.get(run_id)
    assert steps == list(range(len(steps))), "the stored points are a prefix, without gaps"
    surely_flushed = [step for step, at in logged if at < killed_at - INTERVAL_S - SLACK_S]
    assert surely_flushed and steps[-1] >= surely_flushed[-1]
    assert view.run.status.value == "RUNNING"  # no exit handler ran: the run stays open
