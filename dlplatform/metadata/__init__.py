"""Box E: the metadata store (DuckDB) and the artifact store (pyarrow.fs).

The records are imported here directly (pydantic only); ``MetadataStore`` is loaded on first use
(see ``dlplatform._lazy``), so HTTP clients that use the records do not load DuckDB or pyarrow.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports
from dlplatform.metadata.records import (
    NAME_PATTERN,
    Alert,
    AliasEvent,
    ArtifactRecord,
    AuditEntry,
    Commit,
    CommitMode,
    CommitPart,
    Dataset,
    DatasetType,
    Deployment,
    Feedback,
    LineageEdge,
    LineageNode,
    MetricPoint,
    Model,
    ModelVersion,
    Prediction,
    Role,
    Run,
    RunStatus,
    TokenInfo,
    User,
    WorkflowRun,
    WorkflowStep,
    WorkflowTrigger,
    check_name,
)

if TYPE_CHECKING:
    from dlplatform.metadata.store import MetadataStore

__getattr__, __dir__ = lazy_exports(__name__, {"MetadataStore": "dlplatform.metadata.store"})

__all__ = [
    "NAME_PATTERN",
    "Alert",
    "AliasEvent",
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
