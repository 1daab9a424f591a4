"""Alerts: list them (paginated, total in ``X-Total-Count``) and resolve one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from dlplatform import alerts
from dlplatform.api.deps import Ctx
from dlplatform.metadata import Alert

router = APIRouter(tags=["alerts"])


@router.get("/alerts")
def list_alerts(
    ctx: Ctx,
    response: Response,
    include_resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=alerts.MAX_ALERTS_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[Alert]:
    """Open alerts (or all with ``include_resolved``), newest first."""
    page, total = alerts.list_alerts(
        ctx.backend, ctx.principal, include_resolved=include_resolved, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return page


@router.post("/alerts/{alert_id}/resolve")
def resolve_alert(alert_id: Annotated[int, Path(ge=1, le=2**62)], ctx: Ctx) -> Alert:
    return alerts.resolve_alert(ctx.backend, ctx.principal, alert_id)
