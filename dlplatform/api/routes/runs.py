"""Runs of every kind (tracked from any code, training, tuning, trials): start, log, end,
search. Metric points are appended through ``POST /runs/{id}/metrics`` (routes/training.py)."""

from __future__ import annotations

import contextlib
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from dlplatform.api.deps import Ctx
from dlplatform.api.downloads import FILE_RESPONSES, file_response
from dlplatform.api.uploads import stage_body
from dlplatform.metadata import MetricPoint, ModelVersion
from dlplatform.metadata.records import ArtifactFile, RunArtifact
from dlplatform.train import tracking
from dlplatform.train.spec import MAX_METRICS_PAGE
from dlplatform.train.tracking import (
    MAX_COMPARE,
    MAX_RUNS_PAGE,
    ModelLog,
    ParamsUpdate,
    RunComparison,
    RunEnd,
    RunView,
    TagsUpdate,
    TrackedRunSpec,
)

router = APIRouter(tags=["runs"])


@router.post("/runs", status_code=201)
def start_run(spec: TrackedRunSpec, ctx: Ctx) -> RunView:
    """Start a run tracked from your own code (RUNNING), with params, tags and a dataset."""
    return tracking.start_run(ctx.backend, ctx.principal, spec)


@router.get("/runs")
def search_runs(
    ctx: Ctx,
    response: Response,
    filter: Annotated[
        str | None,
        Query(max_length=4000, description='e.g. params.lr < 0.01 and tags.team = "vision"'),
    ] = None,
    order_by: Annotated[
        str | None, Query(max_length=1000, description="e.g. metrics.val_accuracy DESC")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[RunView]:
    """Runs of every kind matching ``filter``, sorted by ``order_by`` (newest first), one page;
    the total is in ``X-Total-Count``. A malformed filter is a 422 naming the token and its
    position."""
    runs, total = tracking.search_runs(
        ctx.backend, ctx.principal, filter, order_by, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return runs


@router.get("/runs/compare")
def compare_runs(
    ctx: Ctx,
    ids: Annotated[
        list[str],
        Query(
            description="Run ids: repeated (?ids=a&ids=b) or joined by commas (?ids=a,b); at "
            f"most {MAX_COMPARE}."
        ),
    ],
) -> RunComparison:
    """Runs side by side: each run's params and final metrics, the rows (``params.KEY``,
    ``metrics.KEY``) and those whose values differ. An unknown run is a 404 naming it."""
    return tracking.compare_runs(ctx.backend, ctx.principal, ids)


@router.get("/runs/{run_id}")
def get_run(run_id: str, ctx: Ctx) -> RunView:
    """A run of any kind with its params, final metrics, tags and artifacts."""
    return tracking.get_run(ctx.backend, ctx.principal, run_id)


@router.get("/runs/{run_id}/metrics")
def get_metrics(
    run_id: str,
    ctx: Ctx,
    response: Response,
    key: Annotated[str | None, Query(max_length=128)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_METRICS_PAGE)] = MAX_METRICS_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[MetricPoint]:
    """The run's metric points by key, step and time, one page; the total is in
    ``X-Total-Count``. NaN and infinite values come as the strings "NaN", "Infinity"."""
    points, total = tracking.get_metrics_page(
        ctx.backend, ctx.principal, run_id, key, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return points


@router.post("/runs/{run_id}/params")
def log_params(run_id: str, update: ParamsUpdate, ctx: Ctx) -> RunView:
    return tracking.log_params(ctx.backend, ctx.principal, run_id, update)


@router.post("/runs/{run_id}/tags")
def set_tags(run_id: str, update: TagsUpdate, ctx: Ctx) -> RunView:
    return tracking.set_tags(ctx.backend, ctx.principal, run_id, update)


@router.post("/runs/{run_id}/end")
def end_run(run_id: str, end: RunEnd, ctx: Ctx) -> RunView:
    """End a tracked run: SUCCEEDED or FAILED (409 when it ended already)."""
    return tracking.end_run(ctx.backend, ctx.principal, run_id, end)


@router.post(
    "/runs/{run_id}/artifacts",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def log_artifact(
    run_id: str,
    request: Request,
    ctx: Ctx,
    path: Annotated[str, Query(min_length=1, max_length=512, description="e.g. plots/loss.png")],
) -> RunArtifact:
    """Store the raw request body as the run's file ``path`` (relative; no ``..``)."""
    backend, principal = ctx.backend, ctx.principal
    tracking.check_artifact_path(path)  # before the body is read
    await run_in_threadpool(
        tracking.check_run_writer, backend, principal, run_id, "run.log_artifact"
    )
    staged = await stage_body(
        request, backend.settings.home / "uploads", backend.settings.max_upload_bytes
    )
    try:
        return await run_in_threadpool(
            tracking.log_artifact, backend, principal, run_id, path, staged
        )
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()


@router.get("/runs/{run_id}/artifacts")
def list_artifacts(run_id: str, ctx: Ctx) -> list[ArtifactFile]:
    """The files the run logged: ``path``, ``size_bytes``, ``sha256``, ``media_type``."""
    return tracking.list_run_artifacts(ctx.backend, ctx.principal, run_id)


@router.get(
    "/runs/{run_id}/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses=FILE_RESPONSES,
)
def read_artifact(run_id: str, path: str, ctx: Ctx) -> StreamingResponse:
    """One file the run logged, streamed and checked against its sha256 on the way (header
    ``X-DLP-SHA256``); a path that is absolute or has ``..`` is a 422. The read is audited."""
    return file_response(*tracking.open_run_artifact(ctx.backend, ctx.principal, run_id, path))


@router.post("/runs/{run_id}/model", status_code=201)
def log_model(run_id: str, spec: ModelLog, ctx: Ctx) -> ModelVersion:
    """Register the state dict the run logged as an artifact as the next version of a model."""
    return tracking.log_model(ctx.backend, ctx.principal, run_id, spec)
