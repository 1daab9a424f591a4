"""``WorkflowsClient``: the ``p.workflows`` namespace of the SDK (same service functions as HTTP)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dlplatform.metadata import WorkflowRun, WorkflowTrigger
from dlplatform.metadata.records import WorkflowRegistration, build
from dlplatform.workflows import service
from dlplatform.workflows.spec import (
    Factory,
    WorkflowRegistrationRequest,
    WorkflowRunDetail,
    factory_path,
)

if TYPE_CHECKING:
    from dlplatform.access import Principal
    from dlplatform.context import Backend


class WorkflowsClient:
    """Start, inspect, cancel and resume workflow runs; register schedules and commit triggers;
    register workflow factories (admin).

    >>> run = p.workflows.run("train_and_deploy", {...})
    >>> p.workflows.wait(run.id).run.status
    """

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def run(
        self, factory: Factory, params: dict[str, Any] | None = None, run_id: str | None = None
    ) -> WorkflowRun:
        """Start a run; it is driven by the platform's manager and outlives this client."""
        return service.run_workflow(
            self._backend, self._principal, factory_path(factory), params, run_id
        )

    def get(self, run_id: str) -> WorkflowRun:
        return service.get_workflow_run(self._backend, self._principal, run_id).run

    def status(self, run_id: str) -> WorkflowRunDetail:
        """The run and its step table (status, attempts, timing, error of each step)."""
        return service.get_workflow_run(self._backend, self._principal, run_id)

    def list(self, limit: int = 50, offset: int = 0) -> list[WorkflowRun]:
        return service.list_workflow_runs(
            self._backend, self._principal, limit=limit, offset=offset
        )

    def wait(self, run_id: str, timeout_s: float | None = None) -> WorkflowRunDetail:
        """Block until the run ends (or ``timeout_s`` passes)."""
        return service.wait_for_run(self._backend, self._principal, run_id, timeout_s=timeout_s)

    def resume(self, run_id: str) -> WorkflowRun:
        return service.resume_workflow_run(self._backend, self._principal, run_id)

    def cancel(self, run_id: str) -> WorkflowRun:
        return service.cancel_workflow_run(self._backend, self._principal, run_id)

    def schedule(
        self, factory: Factory, cron: str, params: dict[str, Any] | None = None
    ) -> WorkflowTrigger:
        return service.schedule_workflow(
            self._backend, self._principal, factory_path(factory), cron, params
        )

    def on_commit(
        self, dataset: str, factory: Factory, params: dict[str, Any] | None = None
    ) -> WorkflowTrigger:
        return service.on_commit(
            self._backend, self._principal, dataset, factory_path(factory), params
        )

    def triggers(self) -> list[WorkflowTrigger]:
        return service.list_workflow_triggers(self._backend, self._principal)

    def delete_trigger(self, trigger_id: str) -> None:
        service.delete_workflow_trigger(self._backend, self._principal, trigger_id)

    def register(self, name: str, target: str, description: str = "") -> WorkflowRegistration:
        """Let runs name the ``@workflow`` factory at ``target`` (MODULE:FACTORY) as ``name``
        (admin only; imported by the workflow manager when a run starts)."""
        request = build(
            WorkflowRegistrationRequest, name=name, target=target, description=description
        )
        return service.register_workflow(self._backend, self._principal, request)

    def registered(self) -> list[WorkflowRegistration]:
        """The workflows runs may name (built-ins, admins' registrations, entry points)."""
        return service.list_registered_workflows(self._backend, self._principal)

    def unregister(self, name: str) -> None:
        service.unregister_workflow(self._backend, self._principal, name)

    def load_output(self, run_id: str, step_id: str) -> Any:
        """The persisted output of a finished step, for troubleshooting."""
        return service.load_step_output(self._backend, self._principal, run_id, step_id)
