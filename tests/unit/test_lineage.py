"""``query_lineage``: an entity that exists but has no lineage answers [], an unknown one NotFound."""

from __future__ import annotations

import pytest

from dlplatform.access import SYSTEM
from dlplatform.context import Backend
from dlplatform.errors import NotFound
from dlplatform.lineage import query_lineage
from dlplatform.metadata import LineageEdge, MetadataStore, ModelVersion
from dlplatform.metadata.records import Run, WorkflowRun, utcnow


@pytest.mark.parametrize(
    "entity",
    [
        "model_version:no-such-model@99",
        "model_version:no-version",
        "commit:c-missing",
        "run:r-missing",
        "dataset:missing",
        "deployment:missing",
        "prediction:missing",
        "workflow_run:missing",
    ],
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_unknown_entity_is_not_found(backend: Backend, entity: str, direction: str) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        query_lineage(backend, SYSTEM, entity, direction=direction)  # type: ignore[arg-type]


def test_known_entities_without_lineage_answer_empty(
    backend: Backend, store: MetadataStore
) -> None:
    now = utcnow()
    store.create_run(Run(id="r-1", owner="admin", created_at=now))
    store.create_workflow_run(WorkflowRun(id="w-1", workflow="m:f", owner="admin", created_at=now))
    mv = store.add_model_version(
        ModelVersion(model="m", version=0, run_id=None, artifact_sha256="ab" * 32,
                     signature_json="{}", created_at=now)
    )  # fmt: skip
    for entity in ("run:r-1", "workflow_run:w-1", f"model_version:m@{mv.version}"):
        assert query_lineage(backend, SYSTEM, entity) == []
        assert query_lineage(backend, SYSTEM, entity, direction="down") == []


def test_an_entity_known_only_by_its_edges_exists(backend: Backend, store: MetadataStore) -> None:
    """Edges outlive records (a purged dataset's commits): the far end of an edge is known."""
    store.add_edges([LineageEdge(src="commit:c-gone", dst="run:r-gone", relation="trained_on")])
    assert query_lineage(backend, SYSTEM, "commit:c-gone") == []
    assert [n.entity for n in query_lineage(backend, SYSTEM, "run:r-gone")] == ["commit:c-gone"]
