"""A commit's column statistics and the datasets' garbage collection."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dlplatform import data
from dlplatform.api.deps import Ctx
from dlplatform.data import CommitStats, DatasetGcReport

router = APIRouter(tags=["datasets"])

MAX_GC_AGE_S = 10 * 365 * 24 * 3600.0


@router.get("/datasets/{name}/commits/{commit}/stats")
def describe(name: str, commit: str, ctx: Ctx) -> CommitStats:
    """Per-column statistics of the commit (``head`` names the current head): counts, nulls,
    min/max/mean, approximate distinct values and the most frequent strings. Computed on first
    use and stored with the commit (``dataset.view``)."""
    ref = name if commit == "head" else f"{name}@{commit}"
    return data.describe(ctx.backend, ctx.principal, ref)


@router.post("/datasets/gc")
def gc(
    ctx: Ctx, min_age_s: Annotated[float, Query(ge=0, le=MAX_GC_AGE_S)] = 3600
) -> DatasetGcReport:
    """Purge deleted datasets that nothing in lineage points at, then delete unreferenced
    artifacts older than ``min_age_s`` (``dataset.write`` on all datasets; audited)."""
    return data.gc(ctx.backend, ctx.principal, min_age_s=min_age_s)
