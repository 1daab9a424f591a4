"""Notebook clients: ``p.training`` (``TrainingClient``) and ``p.models`` (``ModelsClient``).

::

    job = p.training.submit(dataset="digits", model="mlp", label="target", workers=2)
    run = job.wait()                       # the finished Run record
    job.metrics()                          # one dict per epoch
    p.models.promote("digits-mlp", 1, "production")
    module, signature = p.models.load("digits-mlp", "production")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.metadata import AliasEvent, MetricPoint, ModelSummary, ModelVersion, Run
from dlplatform.metadata.records import build
from dlplatform.train import registry, reproduce, service
from dlplatform.train.spec import (
    ModelSignature,
    Reproduction,
    TrainingJob,
    TrainingJobSpec,
    epoch_table,
)


class JobHandle:
    """A submitted training job."""

    def __init__(self, backend: Backend, principal: Principal, job_id: str) -> None:
        self._backend = backend
        self._principal = principal
        self.id = job_id

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def status(self) -> TrainingJob:
        return service.get_job(self._backend, self._principal, self.id)

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        on_update: Callable[[TrainingJob, list[MetricPoint]], None] | None = None,
    ) -> Run:
        """Block until the job is final and return its run (status, error, result)."""
        return service.wait_job(
            self._backend, self._principal, self.id, timeout_s=timeout_s, on_update=on_update
        ).run

    def metrics(self) -> list[dict[str, float]]:
        """One row per epoch: loss, val_loss, val_accuracy, throughput, restarts, ..."""
        return epoch_table(service.get_metrics(self._backend, self._principal, self.id))

    def metric_points(self, key: str | None = None) -> list[MetricPoint]:
        return service.get_metrics(self._backend, self._principal, self.id, key)

    def logs(self) -> str:
        return service.get_logs(self._backend, self._principal, self.id)

    def cancel(self) -> TrainingJob:
        return service.cancel_job(self._backend, self._principal, self.id)

    @property
    def model_version(self) -> str | None:
        """``name@N`` once the job SUCCEEDED and registered a version."""
        return self.status().model_version

    def reproduce(self, *, allow_code_change: bool = False) -> JobHandle:
        """Queue an exact re-run of this ended job (``reproduce.reproduce_run``)."""
        job = reproduce.reproduce_run(self._backend, self._principal, self.id,
                                      allow_code_change=allow_code_change)  # fmt: skip
        return JobHandle(self._backend, self._principal, job.id)

    def reproduction(self) -> Reproduction:
        """How this re-run's per-epoch metrics compare with the run it reproduces."""
        return reproduce.compare_reproduction(self._backend, self._principal, self.id)


class TrainingClient:
    """``p.training``: submit and follow training jobs."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def submit(self, spec: TrainingJobSpec | None = None, /, **fields: Any) -> JobHandle:
        """Queue a job from a spec or from its fields (``dataset=``, ``model=``, ``label=``, ...)."""
        if spec is None:
            spec = build(TrainingJobSpec, **fields)
        elif fields:
            raise InvalidInput("pass either a TrainingJobSpec or its fields, not both")
        job = service.submit(self._backend, self._principal, spec)
        return JobHandle(self._backend, self._principal, job.id)

    def get(self, job_id: str) -> JobHandle:
        service.get_job(self._backend, self._principal, job_id)
        return JobHandle(self._backend, self._principal, job_id)

    def list(self, *, status: list[str] | None = None, limit: int = 100) -> list[TrainingJob]:
        return service.list_jobs(self._backend, self._principal, status=status, limit=limit)


class ModelsClient:
    """``p.models``: the model registry."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def list(self) -> list[ModelSummary]:
        return registry.list_models(self._backend, self._principal)

    def versions(self, name: str) -> list[ModelVersion]:
        return registry.list_versions(self._backend, self._principal, name)

    def get(self, name: str, version_or_alias: str | int | None = None) -> ModelVersion:
        """A version by number or alias; ``"name@3"`` works too; latest when omitted."""
        if version_or_alias is None and "@" in name:
            name, version_or_alias = registry.parse_model_ref(name)
        return registry.get_version(self._backend, self._principal, name, version_or_alias)

    def promote(self, name: str, version: int | str, alias: str) -> AliasEvent:
        return registry.promote(self._backend, self._principal, name, version, alias)

    def history(self, name: str) -> list[AliasEvent]:
        return registry.alias_history(self._backend, self._principal, name)

    def load(
        self, name: str, version_or_alias: str | int | None = None
    ) -> tuple[torch.nn.Module, ModelSignature]:
        """The torch module (eval mode) and its signature, hash-verified, weights only."""
        mv = self.get(name, version_or_alias)
        return registry.load_model(self._backend, mv.model, mv.version)
