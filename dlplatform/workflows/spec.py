"""The workflow service's contracts: what crosses HTTP (requests and the run detail).

Light on purpose (pydantic and the records only): the SDK's HTTP client imports them without Ray.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, JsonValue, field_validator

from dlplatform.errors import InvalidInput
from dlplatform.metadata import WorkflowRun, WorkflowStep
from dlplatform.metadata.records import Identifier, Name
from dlplatform.workflows.dag import check_path


class WorkflowRunRequest(BaseModel, frozen=True, extra="forbid"):
    """Start a workflow run."""

    workflow: str = Field(description="Import path MODULE:FACTORY of the workflow factory.")
    params: dict[str, JsonValue] = Field(
        default={}, description="Keyword arguments of the factory."
    )
    run_id: Identifier | None = Field(default=None, description="Run id; generated when absent.")

    @field_validator("workflow")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return check_path(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class TriggerRequest(BaseModel, frozen=True, extra="forbid"):
    """Register a trigger: ``cron`` (a 5-field expression) or ``dataset`` (on each new commit)."""

    workflow: str = Field(description="Import path MODULE:FACTORY of the workflow factory.")
    cron: str | None = Field(default=None, description="5-field cron expression, in UTC.")
    dataset: Name | None = Field(default=None, description="Dataset whose new commits start runs.")
    params: dict[str, JsonValue] = Field(
        default={}, description="Keyword arguments of the factory."
    )

    @field_validator("workflow")
    @classmethod
    def _path(cls, value: str) -> str:
        try:
            return check_path(value)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None


class WorkflowRunDetail(BaseModel, frozen=True, extra="forbid"):
    """A run and the state of each of its steps."""

    run: WorkflowRun
    steps: list[WorkflowStep]


Factory = str | Callable[..., Any]


def factory_path(factory: Factory) -> str:
    """``module:factory`` of a factory given as a path or as the function itself."""
    if isinstance(factory, str):
        return factory
    module = getattr(factory, "__module__", None)
    name = getattr(factory, "__qualname__", "")
    if not module or module == "__main__" or "." in name or "<" in name:
        raise InvalidInput(
            f"workflow factory {name or factory!r} is not importable by path; define it at module "
            "level in an importable module and pass 'module:factory'"
        )
    return f"{module}:{name}"
