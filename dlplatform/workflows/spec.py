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
from dlplatform.workflows.registry import check_reference

_WORKFLOW = (
    "Name of a registered workflow, e.g. train_and_deploy (GET /workflows/registry lists them)."
)


def _as_value_error(check: Callable[[str], str], value: str) -> str:
    try:
        return check(value)
    except InvalidInput as exc:
        raise ValueError(exc.message) from None


class WorkflowRunRequest(BaseModel, frozen=True, extra="forbid"):
    """Start a workflow run."""

    workflow: str = Field(description=_WORKFLOW)
    params: dict[str, JsonValue] = Field(
        default={}, description="Keyword arguments of the factory."
    )
    run_id: Identifier | None = Field(default=None, description="Run id; generated when absent.")

    @field_validator("workflow")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _as_value_error(check_reference, value)


class WorkflowRegistrationRequest(BaseModel, frozen=True, extra="forbid"):
    """Register a workflow factory under a name (admin only)."""

    name: Name = Field(description="The name runs will use, e.g. churn_retrain.")
    target: str = Field(
        description="Import path MODULE:FACTORY of a @workflow factory installed on the cluster; "
        "imported by the workflow manager when a run starts, never by the gateway."
    )
    description: str = Field(default="", max_length=500, description="What the workflow does.")

    @field_validator("target")
    @classmethod
    def _path(cls, value: str) -> str:
        return _as_value_error(check_path, value)


class TriggerRequest(BaseModel, frozen=True, extra="forbid"):
    """Register a trigger: ``cron`` (a 5-field expression) or ``dataset`` (on each new commit)."""

    workflow: str = Field(description=_WORKFLOW)
    cron: str | None = Field(default=None, description="5-field cron expression, in UTC.")
    dataset: Name | None = Field(default=None, description="Dataset whose new commits start runs.")
    params: dict[str, JsonValue] = Field(
        default={}, description="Keyword arguments of the factory."
    )

    @field_validator("workflow")
    @classmethod
    def _reference(cls, value: str) -> str:
        return _as_value_error(check_reference, value)


class WorkflowRunDetail(BaseModel, frozen=True, extra="forbid"):
    """A run and the state of each of its steps."""

    run: WorkflowRun
    steps: list[WorkflowStep]


Factory = str | Callable[..., Any]


def factory_path(factory: Factory) -> str:
    """What a run names: a registered name or path as given, or the ``module:factory`` path of
    a factory function (it runs only if that path is a registered target)."""
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
