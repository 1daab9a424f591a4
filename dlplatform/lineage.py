"""Lineage queries for every entry point: upstream/downstream walks from any entity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from dlplatform.access import Permission, Principal, authorize
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata import LineageNode
from dlplatform.metadata.records import check_entity

if TYPE_CHECKING:
    from dlplatform.context import Backend
    from dlplatform.metadata import MetadataStore

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
        NotFound: no such entity: no record of it and no lineage edge naming it.
    """
    try:
        check_entity(entity)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if direction not in ("up", "down"):
        raise InvalidInput(f"direction must be up or down, got {str(direction)[:20]!r}")
    authorize(backend.store, principal, Permission.LINEAGE_VIEW, entity)
    store = backend.store
    nodes = store.upstream(entity, depth) if direction == "up" else store.downstream(entity, depth)
    if not nodes and not _exists(store, entity):  # checked only when the walk found nothing
        raise NotFound(f"{entity} does not exist")
    return nodes


def _exists(store: MetadataStore, entity: str) -> bool:
    """Whether the store holds ``entity``'s record, or any lineage edge names it (a purged
    dataset's commits, a prediction whose row was not logged still have their edges)."""
    kind, _, ident = entity.partition(":")
    try:
        if kind == "dataset":
            store.get_dataset(ident, include_deleted=True)
        elif kind == "commit":
            store.get_commit(ident)
        elif kind == "run":
            store.get_run(ident)
        elif kind == "model_version":
            model, _, version = ident.rpartition("@")
            if not (model and version.isdigit()):
                raise NotFound(entity)
            store.get_model_version(model, int(version))
        elif kind == "deployment":
            store.get_deployment(ident)
        elif kind == "prediction":
            store.get_prediction(ident)
        elif kind == "workflow_run":
            store.get_workflow_run(ident)
        else:  # check_entity admits only the kinds above
            raise NotFound(entity)
    except NotFound:
        return bool(store.edges_of([entity]))
    return True
