"""Model deployments (Ray Serve apps at ``/models/<name>``) and prediction feedback.

Inference itself is served by Ray Serve outside this prefix: ``POST /models/<name>``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from dlplatform import serve
from dlplatform.api.deps import Ctx
from dlplatform.metadata import Deployment, Feedback
from dlplatform.serve import (
    DeploymentInfo,
    DeployRequest,
    FeedbackRequest,
    RolloutRequest,
    RolloutStatus,
    TrafficSpec,
)
from dlplatform.serve.service import MAX_DEPLOYMENTS_PAGE

router = APIRouter(tags=["deployments"])

NamePath = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


@router.post("/deployments", status_code=201)
def deploy(request: DeployRequest, ctx: Ctx) -> DeploymentInfo:
    """Deploy ``NAME``, ``NAME@VERSION`` or ``NAME@ALIAS``; a deployed model rolls out the new
    version without downtime. Returns when the replicas run."""
    return serve.deploy(ctx.backend, ctx.principal, request.model, request.config)


@router.get("/deployments")
def list_deployments(
    ctx: Ctx,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=MAX_DEPLOYMENTS_PAGE)] = MAX_DEPLOYMENTS_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[DeploymentInfo]:
    """Deployments by name with their live status, replicas and request metrics, one page
    (``limit``/``offset``); the total is in ``X-Total-Count``."""
    page, total = serve.list_deployments_page(
        ctx.backend, ctx.principal, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return page


@router.get("/deployments/{name}")
def get_deployment(name: NamePath, ctx: Ctx) -> DeploymentInfo:
    return serve.get_deployment(ctx.backend, ctx.principal, name)


@router.delete("/deployments/{name}")
def undeploy(name: NamePath, ctx: Ctx) -> Deployment:
    """Stop serving the model and forget the deployment."""
    return serve.undeploy(ctx.backend, ctx.principal, name)


@router.post("/deployments/{name}/traffic")
def set_traffic(name: NamePath, spec: TrafficSpec, ctx: Ctx) -> DeploymentInfo:
    """Split requests between versions: ``{"traffic": {"3": 90, "4": 10}}``."""
    return serve.set_traffic(ctx.backend, ctx.principal, name, spec.traffic)


@router.post("/deployments/{name}/rollouts", status_code=201)
def start_rollout(name: NamePath, request: RolloutRequest, ctx: Ctx) -> RolloutStatus:
    """Move traffic to ``version`` in judged steps; promoted or rolled back by the platform
    (409 while another rollout of this deployment runs)."""
    return serve.start_rollout(ctx.backend, ctx.principal, name, request.version, request.spec)


@router.get("/deployments/{name}/rollout")
def rollout_status(name: NamePath, ctx: Ctx) -> RolloutStatus:
    """The newest rollout of the deployment, with every step and decision and its numbers."""
    return serve.rollout_status(ctx.backend, ctx.principal, name)


@router.post("/deployments/{name}/rollout/abort")
def abort_rollout(name: NamePath, ctx: Ctx) -> RolloutStatus:
    """Stop the running rollout by hand: all traffic back on the version it started from at
    once, the rollout ABORTED (409 when the newest rollout has ended)."""
    return serve.abort_rollout(ctx.backend, ctx.principal, name)


@router.post("/feedback", status_code=201)
def feedback(request: FeedbackRequest, ctx: Ctx) -> Feedback:
    """Attach the true label to an earlier prediction, by its ``request_id``."""
    return serve.feedback(ctx.backend, ctx.principal, request)
