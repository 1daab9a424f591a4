"""Box E: the metadata store (DuckDB) and the artifact store (pyarrow.fs).

Every public name is loaded on first use (see ``dlplatform._lazy``): the enums alone for the CLI's
options, the records (pydantic) for the SDK, ``MetadataStore`` (DuckDB, pyarrow) for the services.

It knows no component: it may import only ``config``, ``errors`` and the shared helpers
(``_actors``, ``_atomic``, ``_lazy``); every component imports it.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.metadata.enums import CommitMode, DatasetType, Role, RunStatus
    from dlplatform.metadata.records import (
        NAME_PATTERN,
        Alert,
        AliasEvent,
        ArtifactFile,
        ArtifactRecord,
        AuditEntry,
        Commit,
        CommitPart,
        Dataset,
        Deployment,
        Feedback,
        LineageEdge,
        LineageNode,
        MetricPoint,
        Model,
        ModelSummary,
        ModelVersion,
        Prediction,
        Run,
        TokenInfo,
        User,
        WorkflowRun,
        WorkflowStep,
        WorkflowTrigger,
        check_name,
    )
    from dlplatform.metadata.store import MetadataStore

_EXPORTS = {
    "Alert": "dlplatform.metadata.records",
    "AliasEvent": "dlplatform.metadata.records",
    "ArtifactFile": "dlplatform.metadata.records",
    "ArtifactRecord": "dlplatform.metadata.records",
    "AuditEntry": "dlplatform.metadata.records",
    "Commit": "dlplatform.metadata.records",
    "CommitMode": "dlplatform.metadata.enums",
    "CommitPart": "dlplatform.metadata.records",
    "Dataset": "dlplatform.metadata.records",
    "DatasetType": "dlplatform.metadata.enums",
    "Deployment": "dlplatform.metadata.records",
    "Feedback": "dlplatform.metadata.records",
    "LineageEdge": "dlplatform.metadata.records",
    "LineageNode": "dlplatform.metadata.records",
    "MetricPoint": "dlplatform.metadata.records",
    "Model": "dlplatform.metadata.records",
    "ModelSummary": "dlplatform.metadata.records",
    "ModelVersion": "dlplatform.metadata.records",
    "NAME_PATTERN": "dlplatform.metadata.records",
    "Prediction": "dlplatform.metadata.records",
    "Role": "dlplatform.metadata.enums",
    "Run": "dlplatform.metadata.records",
    "RunStatus": "dlplatform.metadata.enums",
    "TokenInfo": "dlplatform.metadata.records",
    "User": "dlplatform.metadata.records",
    "WorkflowRun": "dlplatform.metadata.records",
    "WorkflowStep": "dlplatform.metadata.records",
    "WorkflowTrigger": "dlplatform.metadata.records",
    "check_name": "dlplatform.metadata.records",
    "MetadataStore": "dlplatform.metadata.store",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "NAME_PATTERN",
    "Alert",
    "AliasEvent",
    "ArtifactFile",
    "ArtifactRecord",
    "AuditEntry",
    "Commit",
    "CommitMode",
    "CommitPart",
    "Dataset",
    "DatasetType",
    "Deployment",
    "Feedback",
    "LineageEdge",
    "LineageNode",
    "MetadataStore",
    "MetricPoint",
    "Model",
    "ModelSummary",
    "ModelVersion",
    "Prediction",
    "Role",
    "Run",
    "RunStatus",
    "TokenInfo",
    "User",
    "WorkflowRun",
    "WorkflowStep",
    "WorkflowTrigger",
    "check_name",
]
