"""The in-process ``p.training`` namespace (``TrainingClient``); ``p.models`` is
``dlplatform.models.sdk``.

::

    job = p.training.submit(dataset="digits", model="mlp", label="target", workers=2)
    run = job.wait()                       # the finished Run record
    job.metrics()                          # one dict per epoch
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.metadata import MetricPoint, Run
from dlplatform.metadata.records import build
from dlplatform.train import reproduce, service
from dlplatform.train.spec import (
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
