"""Resource accounting (``GET /usage``) and quotas (admins set them)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from dlplatform import usage
from dlplatform.api.deps import Ctx
from dlplatform.metadata.records import Quota

router = APIRouter(tags=["usage"])

Scope = Annotated[Literal["user", "group"], Path()]
_NAME = Path(min_length=1, max_length=200)


@router.get("/usage")
def usage_report(
    ctx: Ctx,
    by: Literal["user", "run", "deployment", "dataset"] = "user",
    since: Annotated[str | None, Query(max_length=64)] = None,
    until: Annotated[str | None, Query(max_length=64)] = None,
    bucket: Annotated[str | None, Query(max_length=32)] = None,
) -> usage.UsageReport:
    """CPU-seconds, GPU-seconds, wall time and peak memory per user, run, deployment or dataset
    over ``[since, until)`` (``since``: ``7d``, ``12h`` or an ISO time; required), with a time
    series per ``bucket`` (``1h``; default: about 100 buckets). Admins see everyone's usage."""
    return usage.usage_report(
        ctx.backend, ctx.principal, by=by, since=since, until=until, bucket=bucket
    )


@router.get("/quotas")
def list_quotas(ctx: Ctx) -> list[Quota]:
    """Every per-user and per-group quota the training scheduler enforces."""
    return usage.list_quotas(ctx.backend, ctx.principal)


@router.put("/quotas/{scope}/{name}")
def set_quota(scope: Scope, name: Annotated[str, _NAME], spec: usage.QuotaSpec, ctx: Ctx) -> Quota:
    """Set the limits of a user or group (admin)."""
    return usage.set_quota(ctx.backend, ctx.principal, scope, name, spec)


@router.delete("/quotas/{scope}/{name}")
def delete_quota(scope: Scope, name: Annotated[str, _NAME], ctx: Ctx) -> Quota:
    """Lift the limits of a user or group (admin)."""
    return usage.delete_quota(ctx.backend, ctx.principal, scope, name)
