"""Lineage walks from any entity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from dlplatform.api.deps import Ctx
from dlplatform.lineage import MAX_LINEAGE_PAGE, Direction, query_lineage_page
from dlplatform.metadata import LineageNode
from dlplatform.metadata.records import EntityKind
from dlplatform.metadata.store import MAX_LINEAGE_DEPTH

router = APIRouter(tags=["lineage"])


@router.get("/lineage/{kind}/{entity_id}")
def lineage(
    kind: EntityKind,
    entity_id: str,
    ctx: Ctx,
    response: Response,
    direction: Direction = "up",
    depth: Annotated[int | None, Query(ge=1, le=MAX_LINEAGE_DEPTH)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LINEAGE_PAGE)] = MAX_LINEAGE_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[LineageNode]:
    """What the entity came from (``direction=up``) or what came from it (``down``), nearest
    first, one page; the total is in ``X-Total-Count`` (a walk stops after 10,000 nodes)."""
    nodes, total = query_lineage_page(
        ctx.backend,
        ctx.principal,
        f"{kind}:{entity_id}",
        direction=direction,
        depth=depth,
        limit=limit,
        offset=offset,
    )
    response.headers["X-Total-Count"] = str(total)
    return nodes
