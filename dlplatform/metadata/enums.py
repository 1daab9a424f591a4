"""The metadata store's enumerations: roles, dataset types, commit modes, run states.

Plain ``Enum``s with no other import, so that the CLI can build its options from them without
loading the records (pydantic models) or anything else. ``records`` re-exports them.
"""

from __future__ import annotations

from enum import Enum


class Role(str, Enum):
    ADMIN = "admin"
    DATA_ENGINEER = "data-engineer"
    DATA_SCIENTIST = "data-scientist"
    RESEARCHER = "researcher"
    APP = "app"
    VIEWER = "viewer"


class DatasetType(str, Enum):
    TABULAR = "tabular"
    IMAGE = "image"
    TEXT = "text"


class CommitMode(str, Enum):
    APPEND = "append"
    OVERWRITE = "overwrite"


class RunStatus(str, Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    STOPPED = "STOPPED"  # stopped early by an HPO scheduler

    @property
    def is_final(self) -> bool:
        return self in {
            RunStatus.SUCCEEDED,
            RunStatus.FAILED,
            RunStatus.CANCELLED,
            RunStatus.STOPPED,
        }
