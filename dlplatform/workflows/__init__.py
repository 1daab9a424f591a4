"""Box F: durable workflows on Ray Core tasks, with triggers and schedules.

Object model: a *step* (``@step``) is a function with run options; ``step.bind(...)`` builds a
*node*; a *workflow* is a factory function, registered by import path ``module:factory``, that
returns the output node(s) of a DAG; a *run* executes it with parameters under an id. Each finished
step's output is persisted (artifact store) and its state recorded (metadata), so ``resume`` re-runs
only what did not finish. Triggers start runs on a cron schedule or on each new dataset commit.
"""

from dlplatform.workflows._task import StepContext, current
from dlplatform.workflows.dag import Dag, build_workflow
from dlplatform.workflows.manager import get_manager, stop_manager
from dlplatform.workflows.sdk import WorkflowsClient
from dlplatform.workflows.service import (
    TriggerRequest,
    WorkflowRunDetail,
    WorkflowRunRequest,
    cancel_workflow_run,
    delete_workflow_trigger,
    ensure_manager,
    get_workflow_run,
    list_workflow_runs,
    list_workflow_triggers,
    load_step_output,
    on_commit,
    register_trigger,
    resume_workflow_run,
    run_workflow,
    schedule_workflow,
    wait_for_run,
)
from dlplatform.workflows.steps import Step, StepNode, StepOptions, step, workflow
from dlplatform.workflows.triggers import CronExpr

__all__ = [
    "CronExpr",
    "Dag",
    "Step",
    "StepContext",
    "StepNode",
    "StepOptions",
    "TriggerRequest",
    "WorkflowRunDetail",
    "WorkflowRunRequest",
    "WorkflowsClient",
    "build_workflow",
    "cancel_workflow_run",
    "current",
    "delete_workflow_trigger",
    "ensure_manager",
    "get_manager",
    "get_workflow_run",
    "list_workflow_runs",
    "list_workflow_triggers",
    "load_step_output",
    "on_commit",
    "register_trigger",
    "resume_workflow_run",
    "run_workflow",
    "schedule_workflow",
    "step",
    "stop_manager",
    "wait_for_run",
    "workflow",
]
