"""The audit log (admin)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from dlplatform import access
from dlplatform.api.deps import Ctx
from dlplatform.metadata import AuditEntry

router = APIRouter(tags=["audit"])


@router.get("/audit")
def read_audit(
    ctx: Ctx,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=200)] = None,
    outcome: Literal["ok", "denied", "error"] | None = None,
    limit: Annotated[int, Query(ge=1, le=access.MAX_AUDIT_PAGE)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[AuditEntry]:
    """Who did what, when, to what, and the outcome; newest first."""
    return access.read_audit(
        ctx.backend, ctx.principal, actor=actor, action=action, outcome=outcome,
        limit=limit, offset=offset,
    )  # fmt: skip
