"""Notebook client ``p.tuning`` (``TuningClient``): hyperparameter searches on Ray Tune.

::

    job = p.tuning.submit(training={"dataset": "digits", "label": "target", "workers": 1},
                          space={"lr": "loguniform(1e-4,1e-1)", "hidden": "choice(64,128)"},
                          samples=8)
    final = job.wait()              # the TuningJob: trials sorted by the metric, model_version
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput
from dlplatform.train import tune
from dlplatform.train.tune import TuningJob, TuningJobSpec


class TuningHandle:
    """A submitted tuning job."""

    def __init__(self, backend: Backend, principal: Principal, job_id: str) -> None:
        self._backend = backend
        self._principal = principal
        self.id = job_id

    def __repr__(self) -> str:
        return f"<TuningHandle {self.id}>"

    def status(self) -> TuningJob:
        return tune.get_job(self._backend, self._principal, self.id)

    def trials(self) -> list[tune.TrialSummary]:
        """The trial table, best first by the search metric."""
        return self.status().trials

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        on_update: Callable[[TuningJob], None] | None = None,
    ) -> TuningJob:
        return tune.wait_job(
            self._backend, self._principal, self.id, timeout_s=timeout_s, on_update=on_update
        )

    def cancel(self) -> TuningJob:
        return tune.cancel_job(self._backend, self._principal, self.id)


class TuningClient:
    """``p.tuning``: submit and follow hyperparameter searches."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def submit(self, spec: TuningJobSpec | None = None, /, **fields: Any) -> TuningHandle:
        """Queue a search from a spec or its fields (``training=``, ``space=``, ``samples=``...)."""
        if spec is None:
            spec = tune.build_spec(**fields)
        elif fields:
            raise InvalidInput("pass either a TuningJobSpec or its fields, not both")
        job = tune.submit(self._backend, self._principal, spec)
        return TuningHandle(self._backend, self._principal, job.id)

    def get(self, job_id: str) -> TuningHandle:
        tune.get_job(self._backend, self._principal, job_id)
        return TuningHandle(self._backend, self._principal, job_id)

    def list(self, *, status: list[str] | None = None, limit: int = 100) -> list[TuningJob]:
        return tune.list_jobs(self._backend, self._principal, status=status, limit=limit)
