"""Lineage queries for every entry point: upstream/downstream walks from any entity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from dlplatform.access import Permission, Principal, authorize
from dlplatform.errors import InvalidInput
from dlplatform.metadata import LineageNode
from dlplatform.metadata.records import check_entity

if TYPE_CHECKING:
    from dlplatform.context import Backend

Direction = Literal["up", "down"]


def query_lineage(
    backend: Backend,
    principal: Principal,
    entity: str,
    *,
    direction: Direction = "up",
    depth: int | None = None,
) -> list[LineageNode]:
    """What ``entity`` (``"kind:id"``) came from (``up``) or what came from it (``down``).

    Raises:
        InvalidInput: a malformed entity, direction or depth.
        PermissionDenied: the caller lacks ``lineage.view``.
    """
    try:
        check_entity(entity)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if direction not in ("up", "down"):
        raise InvalidInput(f"direction must be up or down, got {str(direction)[:20]!r}")
    authorize(backend.store, principal, Permission.LINEAGE_VIEW, entity)
    if direction == "up":
        return backend.store.upstream(entity, depth)
    return backend.store.downstream(entity, depth)
