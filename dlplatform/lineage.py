"""Lineage queries for every entry point: upstream/downstream walks from any entity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from dlplatform.access import Permission, Principal, authorize, is_member
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata import LineageNode
from dlplatform.metadata.records import check_entity, check_page
from dlplatform.metadata.store import MAX_LINEAGE_NODES

if TYPE_CHECKING:
    from dlplatform.context import Backend
    from dlplatform.metadata import MetadataStore

Direction = Literal["up", "down"]
MAX_LINEAGE_PAGE = 1000
"""The most nodes one page of ``query_lineage_page`` holds."""
_EDGE_CHUNK = 1000  # commits whose edges one store call looks up


def query_lineage(
    backend: Backend,
    principal: Principal,
    entity: str,
    *,
    direction: Direction = "up",
    depth: int | None = None,
) -> list[LineageNode]:
    """What ``entity`` (``"kind:id"``) came from (``up``) or what came from it (``down``).

    The walk stops after ``MAX_LINEAGE_NODES`` nodes, so no query reads an unbounded graph.

    Datasets restricted to groups the caller is in none of, and their commits, are hidden (see
    ``_Hidden``): starting from one is answered as for a missing entity, and the walk leaves
    them out, with whatever it reached only through them.

    Raises:
        InvalidInput: a malformed entity, direction or depth.
        PermissionDenied: the caller lacks ``lineage.view``.
        NotFound: no such entity: no record of it and no lineage edge naming it; or one hidden
            from the caller.
    """
    try:
        check_entity(entity)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    if direction not in ("up", "down"):
        raise InvalidInput(f"direction must be up or down, got {str(direction)[:20]!r}")
    authorize(backend.store, principal, Permission.LINEAGE_VIEW, entity)
    store = backend.store
    hidden = None if principal.is_admin else _Hidden(store, principal)
    if hidden is not None and hidden.hides([entity]):
        raise NotFound(f"{entity} does not exist")  # the very answer for a missing entity
    walk = store.upstream if direction == "up" else store.downstream
    nodes = walk(entity, depth, max_nodes=MAX_LINEAGE_NODES)
    if not nodes and not _exists(store, entity):  # checked only when the walk found nothing
        raise NotFound(f"{entity} does not exist")
    if hidden is None:
        return nodes
    secret = hidden.hides([n.entity for n in nodes])
    kept, shown = {entity}, []
    for node in nodes:  # nearest first: a node's ``via`` comes before it
        if node.entity not in secret and node.via in kept:
            kept.add(node.entity)
            shown.append(node)
    return shown


class _Hidden:
    """Which datasets and commits a non-admin may not see in lineage.

    Hidden: a dataset restricted to groups the caller is in none of (``access.is_member``, the
    rule the dataset service applies); a dataset only lineage edges still name (purged: its
    groups are gone, so only admins see it); a commit of a hidden dataset (its ``version`` edge
    names the dataset). A node the walk reached through a hidden one is left out as well, as
    its ``via`` would name the hidden one (even when another, visible path leads to it).
    """

    def __init__(self, store: MetadataStore, principal: Principal) -> None:
        self._store = store
        datasets = store.list_datasets(include_deleted=True)
        self._known = {ds.name for ds in datasets}
        self._restricted = {ds.name for ds in datasets if not is_member(principal, ds.groups)}

    def _dataset_hidden(self, name: str) -> bool:
        return name in self._restricted or name not in self._known

    def hides(self, entities: list[str]) -> set[str]:
        """The hidden ones among ``entities``."""
        out = {e for e in entities if e.startswith("dataset:") and self._dataset_hidden(e[8:])}
        commits = sorted({e for e in entities if e.startswith("commit:")})
        wanted = set(commits)
        for start in range(0, len(commits), _EDGE_CHUNK):
            for edge in self._store.edges_of(commits[start : start + _EDGE_CHUNK]):
                if (
                    edge.relation == "version"
                    and edge.dst in wanted
                    and edge.src.startswith("dataset:")
                    and self._dataset_hidden(edge.src[8:])
                ):
                    out.add(edge.dst)
        return out


def query_lineage_page(
    backend: Backend,
    principal: Principal,
    entity: str,
    *,
    direction: Direction = "up",
    depth: int | None = None,
    limit: int = MAX_LINEAGE_PAGE,
    offset: int = 0,
) -> tuple[list[LineageNode], int]:
    """One page of ``query_lineage``'s nodes (nearest first), and how many there are.

    Raises:
        InvalidInput: ``limit`` outside 1..MAX_LINEAGE_PAGE or a negative ``offset``; and as
            ``query_lineage``.
    """
    check_page(limit, offset, MAX_LINEAGE_PAGE)
    nodes = query_lineage(backend, principal, entity, direction=direction, depth=depth)
    return nodes[offset : offset + limit], len(nodes)


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
