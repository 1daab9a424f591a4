"""Workflow service functions: what the SDK, the CLI and the HTTP routes call.

Each function authorizes and audits: ``workflow.run`` to start runs and register triggers;
resuming or cancelling a run and deleting a trigger also need to be its owner or an admin;
``workflow.view`` to read; registering workflow factories is for admins. Reads come straight from
the metadata store; anything that drives runs goes to the workflow manager actor
(``manager.py``), which must be reachable through Ray.

A request names a registered workflow (``registry.py``). Nothing here imports a factory: the
manager does, where the run executes.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import AlreadyExists, Conflict, InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import RunStatus, WorkflowRun, WorkflowTrigger
from dlplatform.metadata.records import WorkflowRegistration, check_id, check_page, utcnow
from dlplatform.workflows import manager, registry
from dlplatform.workflows._persist import load_output
from dlplatform.workflows.dag import check_params
from dlplatform.workflows.spec import TriggerRequest, WorkflowRegistrationRequest, WorkflowRunDetail
from dlplatform.workflows.triggers import CronExpr

if TYPE_CHECKING:
    from dlplatform.config import Settings
    from dlplatform.context import Backend
    from dlplatform.metadata import MetadataStore

MAX_RUNS_PAGE = 500


def _run_target(run_id: str) -> str:
    return f"workflow_run:{run_id}"


def _checked_id(run_id: str) -> str:
    try:
        return check_id(run_id)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _owner_or_admin(
    store: MetadataStore, principal: Principal, owner: str, action: str, target: str
) -> None:
    """Only the owner of a run or trigger, or an admin, may change it (``workflow.run`` is
    checked first); a refusal is audited."""
    if principal.name != owner and not principal.is_admin:
        reason = f"{target} belongs to {owner}"
        store.append_audit(principal.name, action, target, "denied", reason)
        raise PermissionDenied(f"{principal.name} may not {action} {target}: {reason}")


def _admin_only(store: MetadataStore, principal: Principal, action: str, target: str) -> None:
    """Registering code to run on the cluster is an admin's decision; a refusal is audited."""
    if not principal.is_admin:
        reason = f"role {principal.role.value} is not admin"
        store.append_audit(principal.name, action, target, "denied", reason)
        raise PermissionDenied(f"{principal.name} may not {action} {target}: {reason}")


def _manager(backend: Backend) -> manager.ManagerClient:
    """The workflow manager that drives ``backend``'s runs (see ``Backend.on_cluster``)."""
    backend.require_cluster("running workflows")
    return manager.get_manager(backend.settings)


def ensure_manager(settings: Settings) -> None:
    """Start the workflow manager if it is not running (platform start-up calls this, so that
    triggers fire and missed schedules run once)."""
    manager.get_manager(settings)


def run_workflow(
    backend: Backend,
    principal: Principal,
    workflow: str,
    params: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> WorkflowRun:
    """Start a run of the registered workflow ``workflow`` (a name, e.g. ``train_and_deploy``)
    with ``params``.

    The manager imports the factory, builds and validates the DAG before anything runs, then
    drives the run, which outlives the caller. A factory that does not load gives a FAILED run
    whose error says why.

    Raises:
        InvalidInput: a malformed or unregistered name (nothing is imported to find out), params
            the factory does not accept, a cycle.
        AlreadyExists: ``run_id`` is taken by another run (a start of the same workflow with the
            same params by the same caller is a repeat: that run is returned as it is).
        PermissionDenied: the caller lacks ``workflow.run``.
        BackendUnavailable: Ray or the manager cannot be reached.
    """
    workflow = registry.check_reference(workflow)
    clean = check_params(params)
    if run_id is not None:
        run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_RUN, f"workflow:{workflow}")
    name = registry.resolve(store, workflow).name  # unknown: InvalidInput, no trip to the manager
    try:  # with the caller's run id a start may be sent again (the manager died under it)
        run = _manager(backend).start(name, clean, run_id, principal.name,
                                      retry=run_id is not None)  # fmt: skip
    except AlreadyExists:
        run = store.get_workflow_run(run_id)  # type: ignore[arg-type]  # only with a run id
        same = (run.owner, run.workflow, json.loads(run.params_json)) == (
            principal.name, name, clean
        )  # fmt: skip
        if not same:
            raise
        audit(store, principal, "workflow.run", _run_target(run.id), f"{name} replayed")
        return run
    audit(store, principal, "workflow.run", _run_target(run.id), name)
    return run


def list_workflow_runs(
    backend: Backend, principal: Principal, *, limit: int = 50, offset: int = 0
) -> list[WorkflowRun]:
    """Runs, newest first."""
    check_page(limit, offset, MAX_RUNS_PAGE)
    authorize(backend.store, principal, Permission.WORKFLOW_VIEW, "workflow_runs")
    return backend.store.list_workflow_runs(limit=limit, offset=offset)


def get_workflow_run(backend: Backend, principal: Principal, run_id: str) -> WorkflowRunDetail:
    """A run with its step table. Raises NotFound."""
    run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_VIEW, _run_target(run_id))
    run = store.get_workflow_run(run_id)
    return WorkflowRunDetail(run=run, steps=store.list_workflow_steps(run_id))


def resume_workflow_run(backend: Backend, principal: Principal, run_id: str) -> WorkflowRun:
    """Re-run the steps of a run that did not succeed (after a failure, a cancel or a crash).

    Raises:
        NotFound: no such run.
        PermissionDenied: the caller is neither the run's owner nor an admin.
        Conflict: the run succeeded already, or is being driven right now.
    """
    run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_RUN, _run_target(run_id))
    run = store.get_workflow_run(run_id)
    _owner_or_admin(store, principal, run.owner, "workflow.resume", _run_target(run_id))
    if run.status is RunStatus.SUCCEEDED:
        raise Conflict(f"workflow run {run_id} already succeeded")
    resumed = _manager(backend).resume(run_id)
    audit(store, principal, "workflow.resume", _run_target(run_id), run.workflow)
    return resumed


def cancel_workflow_run(backend: Backend, principal: Principal, run_id: str) -> WorkflowRun:
    """Cancel a run: its running tasks are killed, nothing more is submitted.

    Raises:
        NotFound: no such run.
        PermissionDenied: the caller is neither the run's owner nor an admin.
        Conflict: the run already ended.
    """
    run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_RUN, _run_target(run_id))
    run = store.get_workflow_run(run_id)
    _owner_or_admin(store, principal, run.owner, "workflow.cancel", _run_target(run_id))
    if run.status.is_final:
        raise Conflict(f"workflow run {run_id} already ended ({run.status.value})")
    cancelled = _manager(backend).cancel(run_id, 30.0)
    audit(store, principal, "workflow.cancel", _run_target(run_id), run.workflow)
    return cancelled


def wait_for_run(
    backend: Backend,
    principal: Principal,
    run_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.5,
    on_progress: Callable[[WorkflowRunDetail], None] | None = None,
) -> WorkflowRunDetail:
    """Poll a run until it ends (or ``timeout_s`` passes); returns its last state."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        detail = get_workflow_run(backend, principal, run_id)
        if on_progress is not None:
            on_progress(detail)
        if detail.run.status.is_final or (deadline is not None and time.monotonic() > deadline):
            return detail
        time.sleep(poll_s)


def load_step_output(backend: Backend, principal: Principal, run_id: str, step_id: str) -> Any:
    """The persisted output of a finished step (verified against its recorded sha256).

    Raises:
        NotFound: no such run or step.
        Conflict: the step has not succeeded (it has no output).
    """
    run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_VIEW, _run_target(run_id))
    step = store.get_workflow_step(run_id, step_id)
    if step.status is not RunStatus.SUCCEEDED or not step.output_ref:
        raise Conflict(f"step {step_id} of {run_id} has no output (status {step.status.value})")
    value = load_output(backend.artifacts, step.output_ref)
    audit(store, principal, "workflow.read_output", _run_target(run_id), step_id)
    return value


def read_step_output(
    backend: Backend, principal: Principal, run_id: str, step_id: str
) -> tuple[dict[str, Any], bytes]:
    """The stored bytes of a finished step's output and its ``output_ref`` (format, sha256,
    type), for clients across HTTP, which decode them themselves (``parquet``, ``json``,
    ``record``). The bytes are verified against the recorded sha256 before they leave.

    Raises:
        NotFound: no such run or step.
        Conflict: the step has not succeeded, or its output is a pickle (loading one runs code:
            it is read only on the cluster, with ``load_step_output``).
    """
    run_id = _checked_id(run_id)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_VIEW, _run_target(run_id))
    step = store.get_workflow_step(run_id, step_id)
    if step.status is not RunStatus.SUCCEEDED or not step.output_ref:
        raise Conflict(f"step {step_id} of {run_id} has no output (status {step.status.value})")
    ref = json.loads(step.output_ref) if isinstance(step.output_ref, str) else step.output_ref
    if ref.get("format") == "pickle":
        raise Conflict(
            f"step {step_id} of {run_id} returned a pickled {ref.get('type', 'object')}; pickles "
            "are not sent over HTTP (loading one runs code): read it on the cluster"
        )
    data = backend.artifacts.get_bytes(str(ref["sha256"]))  # verified against the sha256
    audit(store, principal, "workflow.read_output", _run_target(run_id), step_id)
    return ref, data


# --- triggers ---------------------------------------------------------------------------------


def _new_trigger_id() -> str:
    return f"trg-{uuid.uuid4().hex[:10]}"


def schedule_workflow(
    backend: Backend,
    principal: Principal,
    workflow: str,
    cron: str,
    params: dict[str, Any] | None = None,
) -> WorkflowTrigger:
    """Run the registered workflow ``workflow`` on a 5-field cron schedule (UTC). The
    registration persists.

    Raises:
        InvalidInput: a bad cron expression, an unregistered workflow, bad params (the manager
            builds the DAG once to check).
    """
    workflow = registry.check_reference(workflow)
    expr = CronExpr.parse(cron)
    clean = check_params(params)
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_RUN, f"workflow:{workflow}")
    workflow = registry.resolve(store, workflow).name
    _manager(backend).check(workflow, clean)
    trigger = store.create_workflow_trigger(
        WorkflowTrigger(
            id=_new_trigger_id(),
            kind="cron",
            workflow=workflow,
            params_json=json.dumps(clean),
            cron=expr.text,
            owner=principal.name,
            created_at=utcnow(),
        )
    )
    audit(
        store, principal, "workflow.schedule", f"workflow:{workflow}", f"{trigger.id} {expr.text}"
    )
    return trigger


def on_commit(
    backend: Backend,
    principal: Principal,
    dataset: str,
    workflow: str,
    params: dict[str, Any] | None = None,
) -> WorkflowTrigger:
    """Start ``workflow`` with ``dataset=<name>, commit=<id>`` (plus ``params``) on each new commit.

    Commits made before the registration do not start runs.

    Raises:
        NotFound: no such dataset.
        InvalidInput: an unregistered workflow, bad params, or params named ``dataset``/``commit``.
    """
    workflow = registry.check_reference(workflow)
    clean = check_params(params)
    if {"dataset", "commit"} & set(clean):
        raise InvalidInput("params 'dataset' and 'commit' are set by the commit trigger")
    store = backend.store
    authorize(store, principal, Permission.WORKFLOW_RUN, f"workflow:{workflow}")
    ds = store.get_dataset(dataset)
    authorize(store, principal, Permission.DATASET_READ, f"dataset:{ds.name}", groups=ds.groups)
    workflow = registry.resolve(store, workflow).name
    _manager(backend).check(workflow, None)
    trigger = store.create_workflow_trigger(
        WorkflowTrigger(
            id=_new_trigger_id(),
            kind="commit",
            workflow=workflow,
            params_json=json.dumps(clean),
            dataset=ds.name,
            owner=principal.name,
            created_at=utcnow(),
            last_commit=ds.head,
        )
    )
    audit(store, principal, "workflow.on_commit", f"dataset:{ds.name}", f"{trigger.id} {workflow}")
    return trigger


def register_trigger(
    backend: Backend, principal: Principal, request: TriggerRequest
) -> WorkflowTrigger:
    """``schedule_workflow`` or ``on_commit``, from one request (exactly one of cron, dataset)."""
    if (request.cron is None) == (request.dataset is None):
        raise InvalidInput("give exactly one of 'cron' and 'dataset'")
    if request.cron is not None:
        return schedule_workflow(backend, principal, request.workflow, request.cron, request.params)
    assert request.dataset is not None
    return on_commit(backend, principal, request.dataset, request.workflow, request.params)


def list_workflow_triggers(backend: Backend, principal: Principal) -> list[WorkflowTrigger]:
    authorize(backend.store, principal, Permission.WORKFLOW_VIEW, "workflow_triggers")
    return backend.store.list_workflow_triggers()


def delete_workflow_trigger(backend: Backend, principal: Principal, trigger_id: str) -> None:
    """Remove a trigger registration (its owner, or an admin).

    Raises:
        NotFound: no such trigger.
        PermissionDenied: the caller is neither the trigger's owner nor an admin.
    """
    trigger_id = _checked_id(trigger_id)
    store = backend.store
    target = f"workflow_trigger:{trigger_id}"
    authorize(store, principal, Permission.WORKFLOW_RUN, target)
    trigger = store.get_workflow_trigger(trigger_id)
    _owner_or_admin(store, principal, trigger.owner, "workflow.delete_trigger", target)
    store.delete_workflow_trigger(trigger_id)
    audit(store, principal, "workflow.delete_trigger", target, trigger.workflow)


# --- the registry of workflows that can run ---------------------------------------------------


def _origin(registration: WorkflowRegistration) -> str:
    if registration.source == "builtin":
        return "built in"
    if registration.source == "entry_point":
        return "declared by an installed package"
    return f"registered by {registration.registered_by}"


def register_workflow(
    backend: Backend, principal: Principal, request: WorkflowRegistrationRequest
) -> WorkflowRegistration:
    """Let runs name the factory at ``request.target`` as ``request.name`` (admin only).

    Only the form of the target is checked: the gateway imports nothing. The workflow manager
    imports it when a run starts; a target that does not load fails that run with the reason.

    Raises:
        PermissionDenied: the caller is not an admin.
        AlreadyExists: the name is taken (by a built-in, a registration or an entry point).
    """
    store = backend.store
    name = registry.check_registration_name(request.name)
    target = f"workflow:{name}"
    _admin_only(store, principal, "workflow.register", target)
    taken = registry.find(store, name)
    if taken is not None:
        raise AlreadyExists(f"workflow {name!r} exists already ({_origin(taken)})")
    registration = store.create_workflow_registration(
        WorkflowRegistration(
            name=name,
            target=request.target,
            source="admin",
            description=request.description,
            registered_by=principal.name,
            registered_at=utcnow(),
        )
    )
    audit(store, principal, "workflow.register", target, request.target)
    return registration


def list_registered_workflows(backend: Backend, principal: Principal) -> list[WorkflowRegistration]:
    """The workflows runs may name: built-ins, admins' registrations, packages' entry points."""
    authorize(backend.store, principal, Permission.WORKFLOW_VIEW, "workflow_registry")
    return registry.list_registrations(backend.store)


def unregister_workflow(backend: Backend, principal: Principal, name: str) -> None:
    """Remove an admin's registration (admin only). Existing runs keep their records; resuming
    them, and triggers naming it, fail until it is registered again.

    Raises:
        PermissionDenied: the caller is not an admin.
        NotFound: no registration of that name.
        Conflict: a built-in or an entry point (they come with the installed code).
    """
    store = backend.store
    name = registry.check_registration_name(name)
    target = f"workflow:{name}"
    _admin_only(store, principal, "workflow.unregister", target)
    found = registry.find(store, name)
    if found is None:
        raise NotFound(f"workflow {name!r} is not registered")
    if found.source != "admin":
        raise Conflict(f"workflow {name!r} is {_origin(found)}; it cannot be unregistered")
    store.delete_workflow_registration(name)
    audit(store, principal, "workflow.unregister", target, found.target)
