"""Training jobs: submit, list, inspect, cancel, logs and per-epoch metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dlplatform import train
from dlplatform.api.deps import Ctx
from dlplatform.metadata import MetricPoint
from dlplatform.train.spec import (
    MAX_LOG_CHUNK_BYTES,
    MAX_METRICS_PAGE,
    MAX_WATCH_S,
    JobChange,
    JobLogs,
    MetricBatch,
    MetricsLogged,
    Reproduction,
    TrainingJob,
    TrainingJobSpec,
)

router = APIRouter(tags=["training"])


@router.post("/training/jobs", status_code=201)
def submit_job(
    spec: TrainingJobSpec,
    ctx: Ctx,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> TrainingJob:
    """Validate, pin the dataset version and queue a training job.

    A retry with the ``Idempotency-Key`` of an earlier submit by the caller queues nothing and
    answers that job as it is now (the SDK sends a fresh key with every submit, so a submit
    retried after a lost connection or a gateway restart makes one job, not two).
    """
    return train.submit(ctx.backend, ctx.principal, spec, idempotency_key=idempotency_key)


@router.get("/training/jobs")
def list_jobs(
    ctx: Ctx,
    response: Response,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[TrainingJob]:
    """Newest first, one page (``limit``/``offset``); the total is in ``X-Total-Count``."""
    jobs = train.list_jobs(ctx.backend, ctx.principal, status=status, limit=limit, offset=offset)
    response.headers["X-Total-Count"] = str(
        train.count_jobs(ctx.backend, ctx.principal, status=status)
    )
    return jobs


@router.get("/training/jobs/{job_id}")
def get_job(job_id: str, ctx: Ctx) -> TrainingJob:
    return train.get_job(ctx.backend, ctx.principal, job_id)


@router.post("/training/jobs/{job_id}/cancel")
def cancel_job(job_id: str, ctx: Ctx) -> TrainingJob:
    """Cancel a queued or running job (409 when it already finished)."""
    return train.cancel_job(ctx.backend, ctx.principal, job_id)


class ReproduceRequest(BaseModel, extra="forbid"):
    allow_code_change: bool = Field(
        default=False,
        description="Run it even if the installed code differs from the run's (recorded).",
    )


@router.post("/training/jobs/{job_id}/reproduce", status_code=201)
def reproduce_job(job_id: str, ctx: Ctx, body: ReproduceRequest | None = None) -> TrainingJob:
    """Queue an exact re-run of an ended job: its pinned spec on the same dataset commit, seed
    and code (409 when the installed code differs, unless ``allow_code_change``; 404 when its
    dataset commit is gone). Compare them with ``GET .../reproduction`` once it ends."""
    allow = body.allow_code_change if body is not None else False
    return train.reproduce_run(ctx.backend, ctx.principal, job_id, allow_code_change=allow)


@router.get("/training/jobs/{job_id}/reproduction")
def get_reproduction(job_id: str, ctx: Ctx) -> Reproduction:
    """How a re-run's per-epoch metrics compare with the run it reproduces (identical on CPU,
    within a tolerance on GPU; the first difference named); 404 for a job that is no re-run."""
    return train.compare_reproduction(ctx.backend, ctx.principal, job_id)


@router.get("/training/jobs/{job_id}/reproduced-by")
def get_reproduced_by(job_id: str, ctx: Ctx) -> list[TrainingJob]:
    """The re-runs of a job, oldest first."""
    train.get_job(ctx.backend, ctx.principal, job_id)  # 404 / 403 as for the job itself
    return [train.get_job(ctx.backend, ctx.principal, again)
            for again in train.reproduced_by(ctx.backend, job_id)]  # fmt: skip


@router.get("/training/jobs/{job_id}/logs")
def get_logs(
    job_id: str,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LOG_CHUNK_BYTES)] = MAX_LOG_CHUNK_BYTES,
) -> JobLogs:
    """At most ``limit`` bytes of the driver's output from byte ``offset``; poll again from
    ``next_offset`` until ``final``."""
    return train.read_logs(ctx.backend, ctx.principal, job_id, offset, limit)


@router.get("/training/jobs/{job_id}/watch")
async def watch_job(
    job_id: str,
    ctx: Ctx,
    known: Annotated[int | None, Query(ge=0, le=2**62)] = None,
    timeout_s: Annotated[float, Query(ge=0, le=MAX_WATCH_S)] = MAX_WATCH_S,
) -> JobChange:
    """A long poll: answers as soon as the job changes (a new metric point or status) from the
    ``version`` passed as ``known``, else after ``timeout_s``. Followers (``dlp train submit
    --wait``, ``job.wait()``, the web UI) read the job after each answer instead of polling."""
    waiter = await run_in_threadpool(
        train.watch_job, ctx.backend, ctx.principal, job_id, known, timeout_s
    )
    return JobChange(version=await waiter)


@router.get("/training/jobs/{job_id}/metrics")
def get_metrics(
    job_id: str,
    ctx: Ctx,
    response: Response,
    key: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_METRICS_PAGE)] = MAX_METRICS_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[MetricPoint]:
    """The run's metric points by key, step and time, one page; the total is in
    ``X-Total-Count``."""
    points, total = train.get_metrics_page(
        ctx.backend, ctx.principal, job_id, key, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return points


@router.post("/runs/{run_id}/metrics", status_code=201)
def log_metrics(run_id: str, batch: MetricBatch, ctx: Ctx) -> MetricsLogged:
    """Append metric points (as columns) to a run: its owner (a job's run token) or an admin."""
    return train.log_metrics(ctx.backend, ctx.principal, run_id, batch)
