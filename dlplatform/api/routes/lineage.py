"""Lineage walks from any entity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dlplatform.api.deps import Ctx
from dlplatform.lineage import Direction, query_lineage
from dlplatform.metadata import LineageNode
from dlplatform.metadata.records import EntityKind
from dlplatform.metadata.store import MAX_LINEAGE_DEPTH

router = APIRouter(tags=["lineage"])


@router.get("/lineage/{kind}/{entity_id}")
def lineage(
    kind: EntityKind,
    entity_id: str,
    ctx: Ctx,
    direction: Direction = "up",
    depth: Annotated[int | None, Query(ge=1, le=MAX_LINEAGE_DEPTH)] = None,
) -> list[LineageNode]:
    """What the entity came from (``direction=up``) or what came from it (``down``)."""
    return query_lineage(
        ctx.backend, ctx.principal, f"{kind}:{entity_id}", direction=direction, depth=depth
    )
