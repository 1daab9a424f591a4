"""Box F: durable workflows on Ray Core tasks, with triggers and schedules.

Object model: a *step* (``@step``) is a function with run options; ``step.bind(...)`` builds a
*node*; a *workflow* is a factory function (``@workflow``) that returns the output node(s) of a
DAG, registered under a name (built in, by an admin, or by a package's entry point: see
``registry``); a *run* executes a registered workflow with parameters under an id. Each finished
step's output is persisted (artifact store) and its state recorded (metadata), so ``resume`` re-runs
only what did not finish. Triggers start runs on a cron schedule or on each new dataset commit.

It may import ``access``, ``alerts``, ``context``, ``metadata`` and the shared helpers; the
built-in pipelines (``pipelines``) are the one place that also imports ``train``, ``models``
and ``serve``.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.workflows._task import StepContext, current
    from dlplatform.workflows.dag import Dag, FactoryUnavailable, build_workflow, building_settings
    from dlplatform.workflows.manager import get_manager, stop_manager
    from dlplatform.workflows.sdk import WorkflowsClient
    from dlplatform.workflows.service import (
        TriggerRequest,
        WorkflowRegistrationRequest,
        WorkflowRunDetail,
        WorkflowRunRequest,
        cancel_workflow_run,
        delete_workflow_trigger,
        ensure_manager,
        get_workflow_run,
        list_registered_workflows,
        list_workflow_runs,
        list_workflow_triggers,
        load_step_output,
        on_commit,
        read_step_output,
        register_trigger,
        register_workflow,
        resume_workflow_run,
        run_workflow,
        schedule_workflow,
        unregister_workflow,
        wait_for_run,
    )
    from dlplatform.workflows.steps import Step, StepNode, StepOptions, step, workflow
    from dlplatform.workflows.triggers import CronExpr

# Loaded on first use (see dlplatform._lazy): importing a spec must not load Ray or torch.
_EXPORTS = {
    "CronExpr": "dlplatform.workflows.triggers",
    "Dag": "dlplatform.workflows.dag",
    "FactoryUnavailable": "dlplatform.workflows.dag",
    "Step": "dlplatform.workflows.steps",
    "StepContext": "dlplatform.workflows._task",
    "StepNode": "dlplatform.workflows.steps",
    "StepOptions": "dlplatform.workflows.steps",
    "TriggerRequest": "dlplatform.workflows.spec",
    "WorkflowRegistrationRequest": "dlplatform.workflows.spec",
    "WorkflowRunDetail": "dlplatform.workflows.spec",
    "WorkflowRunRequest": "dlplatform.workflows.spec",
    "WorkflowsClient": "dlplatform.workflows.sdk",
    "build_workflow": "dlplatform.workflows.dag",
    "building_settings": "dlplatform.workflows.dag",
    "cancel_workflow_run": "dlplatform.workflows.service",
    "current": "dlplatform.workflows._task",
    "delete_workflow_trigger": "dlplatform.workflows.service",
    "ensure_manager": "dlplatform.workflows.service",
    "get_manager": "dlplatform.workflows.manager",
    "get_workflow_run": "dlplatform.workflows.service",
    "list_registered_workflows": "dlplatform.workflows.service",
    "list_workflow_runs": "dlplatform.workflows.service",
    "list_workflow_triggers": "dlplatform.workflows.service",
    "load_step_output": "dlplatform.workflows.service",
    "on_commit": "dlplatform.workflows.service",
    "read_step_output": "dlplatform.workflows.service",
    "register_trigger": "dlplatform.workflows.service",
    "register_workflow": "dlplatform.workflows.service",
    "resume_workflow_run": "dlplatform.workflows.service",
    "run_workflow": "dlplatform.workflows.service",
    "schedule_workflow": "dlplatform.workflows.service",
    "step": "dlplatform.workflows.steps",
    "stop_manager": "dlplatform.workflows.manager",
    "unregister_workflow": "dlplatform.workflows.service",
    "wait_for_run": "dlplatform.workflows.service",
    "workflow": "dlplatform.workflows.steps",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CronExpr",
    "Dag",
    "FactoryUnavailable",
    "Step",
    "StepContext",
    "StepNode",
    "StepOptions",
    "TriggerRequest",
    "WorkflowRegistrationRequest",
    "WorkflowRunDetail",
    "WorkflowRunRequest",
    "WorkflowsClient",
    "build_workflow",
    "building_settings",
    "cancel_workflow_run",
    "current",
    "delete_workflow_trigger",
    "ensure_manager",
    "get_manager",
    "get_workflow_run",
    "list_registered_workflows",
    "list_workflow_runs",
    "list_workflow_triggers",
    "load_step_output",
    "on_commit",
    "read_step_output",
    "register_trigger",
    "register_workflow",
    "resume_workflow_run",
    "run_workflow",
    "schedule_workflow",
    "step",
    "stop_manager",
    "unregister_workflow",
    "wait_for_run",
    "workflow",
]
