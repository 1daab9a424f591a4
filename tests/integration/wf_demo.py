"""Workflows used by the workflow integration tests (imported by the manager actor by path
``tests.integration.wf_demo:<factory>``; Ray workers have the driver's working directory, the
repository root, on their path)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pyarrow as pa

from dlplatform.metadata import Run
from dlplatform.workflows import StepNode, current, step, workflow
from dlplatform.workflows.pipelines import train_model


def _count(folder: str, name: str) -> int:
    """Append one line to ``<folder>/<name>.count`` and return how many lines it has."""
    path = Path(folder) / f"{name}.count"
    with path.open("a") as fh:
        fh.write("x\n")
    return len(path.read_text().splitlines())


@step(num_cpus=0.25)
def source(n: int) -> int:
    return n


@step(num_cpus=0.25)
def square(x: int, k: int) -> int:
    return x * k * k


@step(num_cpus=0.25)
def total(xs: list[int]) -> dict[str, int]:
    return {"total": sum(xs), "parts": len(xs)}


@workflow
def fan(n: int = 4) -> StepNode:
    """source → n x square (fan-out) → total (fan-in)."""
    s = source.bind(n)
    return total.bind([square.bind(s, k) for k in range(n)])


@step(num_cpus=0.25)
def first(folder: str) -> dict[str, int]:
    _count(folder, "first")
    return {"a": 1}


@step(num_cpus=0.25)
def blocker(folder: str, prev: dict[str, int]) -> pa.Table:
    _count(folder, "blocker")
    (Path(folder) / "blocker.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 120
    while not (Path(folder) / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go file")
        time.sleep(0.1)
    return pa.table({"a": [prev["a"]] * 3})


@step(num_cpus=0.25)
def last(folder: str, table: pa.Table) -> Run:
    _count(folder, "last")
    ctx = current()
    assert ctx is not None
    from dlplatform.metadata.records import utcnow

    return Run(id=f"r-{ctx.run_id}", owner=ctx.owner, created_at=utcnow(), name=str(table.num_rows))


@workflow
def durable(folder: str) -> StepNode:
    """first → blocker (waits for <folder>/go) → last."""
    return last.bind(folder, blocker.bind(folder, first.bind(folder)))


@step(num_cpus=0.25)
def explode(x: int) -> int:
    raise ValueError(f"boom: bad value {x}")


@workflow
def failing() -> StepNode:
    """source → explode (raises) → square (never runs)."""
    return square.bind(explode.bind(source.bind(42)), 2)


@workflow
def cyclic() -> StepNode:
    p = source.bind(1)
    q = square.bind(p, 1)
    p.after(q)
    return q


not_a_factory = 42


@step(retries=3, retry_exceptions=(ConnectionError,), num_cpus=0.25)
def flaky(folder: str) -> int:
    n = _count(folder, "flaky")
    if n < 3:
        raise ConnectionError(f"attempt {n} fails")
    return n


@workflow
def flaky_wf(folder: str) -> StepNode:
    return flaky.bind(folder)


@step(timeout_s=1.0, num_cpus=0.25)
def sleepy() -> int:
    time.sleep(120)
    return 1


@workflow
def sleepy_wf() -> StepNode:
    return sleepy.bind()


@step(num_cpus=0.25)
def blocked_forever(folder: str) -> int:
    _count(folder, "forever")
    time.sleep(600)
    return 1


@workflow
def forever_wf(folder: str) -> StepNode:
    return blocked_forever.bind(folder)


@step(num_cpus=0.25)
def echo(**kwargs: str) -> dict[str, str]:
    return dict(kwargs)


@workflow
def commit_wf(dataset: str, commit: str, tag: str = "") -> StepNode:
    return echo.bind(dataset=dataset, commit=commit, tag=tag)


@workflow
def cron_wf(tag: str = "") -> StepNode:
    return echo.bind(tag=tag)


@step(num_cpus=0.25)
def who_am_i() -> dict[str, str]:
    """What the step's own code sees: the gateway URL and whose token it holds."""
    from dlplatform.access import authenticate

    ctx = current()
    assert ctx is not None
    token = os.environ.get("DLP_TOKEN", "")
    principal = authenticate(ctx.backend().store, token) if token else None
    return {
        "url": os.environ.get("DLP_URL", ""),
        "user": principal.name if principal else "",
        "role": principal.role.value if principal else "",
    }


@workflow
def identity() -> StepNode:
    return who_am_i.bind()


@workflow
def train_only(dataset: str, commit: str, label: str) -> StepNode:
    """The built-in pipeline's train step alone: a small model, one epoch, one worker."""
    return train_model.bind(dataset, commit, label, {"model": "mlp", "epochs": 1, "workers": 1})
