"""Workflow runs (start, list, inspect, resume, cancel), trigger registrations and the registry
of workflows that runs may name."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from dlplatform import workflows
from dlplatform.api.deps import Ctx
from dlplatform.metadata import WorkflowRun, WorkflowTrigger
from dlplatform.metadata.records import NAME_PATTERN, WorkflowRegistration
from dlplatform.workflows import (
    TriggerRequest,
    WorkflowRegistrationRequest,
    WorkflowRunDetail,
    WorkflowRunRequest,
)
from dlplatform.workflows.service import MAX_RUNS_PAGE

router = APIRouter(tags=["workflows"])

RunIdPath = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
NamePath = Annotated[str, Path(max_length=63, pattern=NAME_PATTERN)]


@router.post("/workflows/runs", status_code=201)
def run_workflow(request: WorkflowRunRequest, ctx: Ctx) -> WorkflowRun:
    """Start a run of the registered ``workflow`` with ``params``; it runs in the background
    (422 for a name that is not registered; a factory that does not load gives a FAILED run)."""
    return workflows.run_workflow(
        ctx.backend, ctx.principal, request.workflow, dict(request.params), request.run_id
    )


@router.get("/workflows/runs")
def list_workflow_runs(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_RUNS_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[WorkflowRun]:
    """Runs, newest first."""
    return workflows.list_workflow_runs(ctx.backend, ctx.principal, limit=limit, offset=offset)


@router.get("/workflows/runs/{run_id}")
def get_workflow_run(run_id: RunIdPath, ctx: Ctx) -> WorkflowRunDetail:
    """A run and its step table."""
    return workflows.get_workflow_run(ctx.backend, ctx.principal, run_id)


@router.post("/workflows/runs/{run_id}/resume")
def resume_workflow_run(run_id: RunIdPath, ctx: Ctx) -> WorkflowRun:
    """Re-run the steps that did not succeed (its owner or an admin; 404 unknown run, 409
    succeeded or running)."""
    return workflows.resume_workflow_run(ctx.backend, ctx.principal, run_id)


@router.post("/workflows/runs/{run_id}/cancel")
def cancel_workflow_run(run_id: RunIdPath, ctx: Ctx) -> WorkflowRun:
    """Cancel a run (its owner or an admin; 404 unknown run, 409 already ended)."""
    return workflows.cancel_workflow_run(ctx.backend, ctx.principal, run_id)


@router.post("/workflows/triggers", status_code=201)
def register_trigger(request: TriggerRequest, ctx: Ctx) -> WorkflowTrigger:
    """Register a cron schedule (``cron``) or a commit trigger (``dataset``)."""
    return workflows.register_trigger(ctx.backend, ctx.principal, request)


@router.get("/workflows/triggers")
def list_workflow_triggers(ctx: Ctx) -> list[WorkflowTrigger]:
    return workflows.list_workflow_triggers(ctx.backend, ctx.principal)


@router.delete("/workflows/triggers/{trigger_id}", status_code=204)
def delete_workflow_trigger(trigger_id: RunIdPath, ctx: Ctx) -> None:
    """Remove a trigger (its owner or an admin)."""
    workflows.delete_workflow_trigger(ctx.backend, ctx.principal, trigger_id)


@router.post("/workflows/registry", status_code=201)
def register_workflow(request: WorkflowRegistrationRequest, ctx: Ctx) -> WorkflowRegistration:
    """Register a ``@workflow`` factory (MODULE:FACTORY) under a name (admin only). Nothing is
    imported here: the workflow manager imports it when a run starts."""
    return workflows.register_workflow(ctx.backend, ctx.principal, request)


@router.get("/workflows/registry")
def list_registered_workflows(ctx: Ctx) -> list[WorkflowRegistration]:
    """The workflows runs may name: built-ins, admins' registrations, packages' entry points."""
    return workflows.list_registered_workflows(ctx.backend, ctx.principal)


@router.delete("/workflows/registry/{name}", status_code=204)
def unregister_workflow(name: NamePath, ctx: Ctx) -> None:
    """Remove an admin's registration (admin only; 409 for built-ins and entry points)."""
    workflows.unregister_workflow(ctx.backend, ctx.principal, name)
