"""Tuning jobs (hyperparameter search on Ray Tune): submit, list, inspect with the trial table,
cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dlplatform.api.deps import Ctx
from dlplatform.train import tune
from dlplatform.train.tune import TuningJob, TuningJobSpec

router = APIRouter(tags=["tuning"])


@router.post("/tuning/jobs", status_code=201)
def submit_job(spec: TuningJobSpec, ctx: Ctx) -> TuningJob:
    """Validate (space, metric, model), pin the dataset version and queue a tuning job."""
    return tune.submit(ctx.backend, ctx.principal, spec)


@router.get("/tuning/jobs")
def list_jobs(
    ctx: Ctx,
    status: Annotated[list[str] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[TuningJob]:
    """Newest first."""
    return tune.list_jobs(ctx.backend, ctx.principal, status=status, limit=limit)


@router.get("/tuning/jobs/{job_id}")
def get_job(job_id: str, ctx: Ctx) -> TuningJob:
    """One tuning job with its trials, best first by the metric."""
    return tune.get_job(ctx.backend, ctx.principal, job_id)


@router.post("/tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str, ctx: Ctx) -> TuningJob:
    """Cancel a queued or running search: every trial stops (409 when already finished)."""
    return tune.cancel_job(ctx.backend, ctx.principal, job_id)
