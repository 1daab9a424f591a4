"""The workflow manager: one detached, named actor per platform that drives runs and triggers.

Runs outlive the client that started them because this actor drives them: each run has a thread
that submits a step as a Ray task once its upstream steps finished, watches timeouts with
``ray.wait`` and cancels tasks with ``ray.cancel(force=True)``. Several runs progress at once (one
thread each; the actor is threaded). A background thread ticks the trigger scheduler.

State lives in the metadata store (runs, steps, triggers) and the artifact store (outputs), never
only here. A manager that starts (Ray restarting it after a crash or a node loss, or ``dlp up`` on
an existing home) continues every run the previous one left QUEUED or RUNNING by itself: it
rebuilds each DAG from the registered workflow and its parameters and re-runs only the steps that
did not succeed (``resume(run_id)`` does the same on request).

This is where workflow factories are imported: the manager resolves a run's workflow name in the
registry (``registry.py``) and imports its target. A target that does not load (its import fails,
even with ``SystemExit``, or it is no ``@workflow``) fails the run with that reason.

Replies are ``("ok", value)`` or ``("err", code, message)`` so that callers get the typed error
(``call`` below raises it).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import ray

from dlplatform._actors import ActorClient, answer, get_or_create, kill_named_actor
from dlplatform.access import SYSTEM, issue_run_token, revoke_run_tokens
from dlplatform.config import Settings
from dlplatform.errors import Conflict, DLPlatformError
from dlplatform.metadata import LineageEdge, RunStatus, WorkflowRun, WorkflowStep, WorkflowTrigger
from dlplatform.metadata.actor import connect_store
from dlplatform.metadata.records import WorkflowRegistration, check_id, utcnow
from dlplatform.workflows import registry
from dlplatform.workflows._task import StepJob, run_step
from dlplatform.workflows.dag import (
    Dag,
    FactoryUnavailable,
    Ref,
    build_dag,
    check_params,
    load_factory,
)
from dlplatform.workflows.triggers import TriggerScheduler

MANAGER_NAME = "dlp-workflows"
TRIGGER_POLL_S = 1.0
_WAIT_S = 0.5
_MAX_ERROR_CHARS = 4000
_TRACEBACK_LINES = 25

log = logging.getLogger("dlplatform.workflows")
T = TypeVar("T")


def new_run_id() -> str:
    return f"wf-{uuid.uuid4().hex[:12]}"


def summarize_error(exc: BaseException) -> str:
    """The last lines of the (remote) traceback, bounded in size: what a person needs first."""
    if isinstance(exc, ray.exceptions.RayError):
        text = str(exc)  # a RayTaskError's text holds the remote traceback
    else:
        text = "".join(traceback.format_exception(exc))
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    summary = "\n".join(lines[-_TRACEBACK_LINES:])
    return summary[-_MAX_ERROR_CHARS:]


def _data_deps(value: Any, out: dict[str, None]) -> None:
    if isinstance(value, Ref):
        out[value.step_id] = None
    elif isinstance(value, list | tuple):
        for v in value:
            _data_deps(v, out)
    elif isinstance(value, dict):
        for v in value.values():
            _data_deps(v, out)


@dataclass
class _Driver:
    """The state of one run being driven."""

    run: WorkflowRun
    dag: Dag
    succeeded: dict[str, str]  # step id -> output_ref of steps already done (persisted)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    client_env: dict[str, str] = field(default_factory=dict)  # see StepJob.client_env


class WorkflowManager:
    """Body of the manager actor (``ray.remote`` below); see the module docstring."""

    def __init__(
        self, settings: Settings, poll_s: float = TRIGGER_POLL_S, *, recover: bool = True
    ) -> None:
        self._settings = settings
        self._store = connect_store(settings)
        self._runs: dict[str, _Driver] = {}
        self._lock = threading.Lock()
        self._resume_lock = threading.Lock()  # one resume at a time: never two drivers a run
        self._started_at = utcnow()  # runs created before this are a previous manager's
        self._scheduler = TriggerScheduler(self._store, self._start_for_trigger)  # type: ignore[arg-type]
        self._stop = threading.Event()
        self._poll_s = poll_s
        if poll_s > 0:
            threading.Thread(target=self._trigger_loop, name="dlp-triggers", daemon=True).start()
        if recover:
            threading.Thread(target=self._recover, name="dlp-wf-recover", daemon=True).start()

    # --- replies --------------------------------------------------------------------------

    @staticmethod
    def _reply(fn: Callable[[], T]) -> tuple[Any, ...]:
        return answer(fn, what="workflow manager")

    def ping(self) -> str:
        return "ok"

    def active_runs(self) -> list[str]:
        with self._lock:
            return [rid for rid, d in self._runs.items() if d.thread and d.thread.is_alive()]

    # --- public actor methods -------------------------------------------------------------

    def start(
        self,
        workflow: str,
        params: dict[str, Any],
        run_id: str | None,
        owner: str,
        sources: list[str] | None = None,
    ) -> tuple[Any, ...]:
        return self._reply(lambda: self._start(workflow, params, run_id, owner, sources or []))

    def resume(self, run_id: str) -> tuple[Any, ...]:
        return self._reply(lambda: self._resume(run_id))

    def cancel(self, run_id: str, wait_s: float = 30.0) -> tuple[Any, ...]:
        return self._reply(lambda: self._cancel(run_id, wait_s))

    def check(self, workflow: str, params: dict[str, Any] | None) -> tuple[Any, ...]:
        """Check that a registered workflow loads (and, given params, build its whole DAG)
        without running it."""

        def run() -> None:
            registration = self._resolve(workflow)
            factory = self._load(registration)
            if params is not None:
                self._build(registration.name, factory, check_params(params))

        return self._reply(run)

    def tick(self, now: datetime) -> tuple[Any, ...]:
        """Run the trigger scheduler once at time ``now`` (the loop does this every second)."""
        return self._reply(lambda: self._scheduler.tick(now))

    def shutdown(self) -> None:
        self._stop.set()

    # --- runs -----------------------------------------------------------------------------

    def _resolve(self, workflow: str) -> WorkflowRegistration:
        """The registration of the workflow a run names. Raises InvalidInput: not registered."""
        return registry.resolve(self._store, workflow)  # type: ignore[arg-type]

    def _load(self, registration: WorkflowRegistration) -> Callable[..., Any]:
        """Import the registered factory (the one place a factory is imported).

        Raises:
            FactoryUnavailable: its target does not load; the message names the workflow.
        """
        try:
            return load_factory(registration.target)
        except FactoryUnavailable as exc:
            log.warning("workflow %s does not load: %s", registration.name, exc.message)
            detail = exc.message.removeprefix(f"workflow {registration.target}: ")
            raise FactoryUnavailable(
                f"workflow {registration.name} ({registration.target}) could not be loaded: "
                f"{detail}"
            ) from exc

    def _build(self, name: str, factory: Callable[..., Any], params: dict[str, Any]) -> Dag:
        return build_dag(factory, params, what=name, settings=self._settings)

    def _start(
        self,
        workflow: str,
        params: dict[str, Any],
        run_id: str | None,
        owner: str,
        sources: list[str],
    ) -> WorkflowRun:
        run_id = check_id(run_id) if run_id else new_run_id()
        params = check_params(params)
        registration = self._resolve(workflow)
        name = registration.name
        try:
            factory = self._load(registration)
        except FactoryUnavailable as exc:  # the run exists, FAILED, and says why
            now = utcnow()
            failed = WorkflowRun(
                id=run_id, workflow=name, params_json=json.dumps(params), status=RunStatus.FAILED,
                owner=owner, created_at=now, ended_at=now, error=exc.message,
            )  # fmt: skip
            return self._store.create_workflow_run(failed)  # type: ignore[no-any-return]
        dag = self._build(name, factory, params)  # InvalidInput before anything runs
        run = WorkflowRun(
            id=run_id,
            workflow=name,
            params_json=json.dumps(params),
            owner=owner,
            created_at=utcnow(),
        )
        self._store.create_workflow_run(run)  # AlreadyExists for a taken id
        self._store.put_workflow_steps(
            [
                WorkflowStep(run_id=run_id, step_id=sid, name=s.step.name)
                for sid, s in dag.steps.items()
            ]
        )
        if sources:
            self._store.add_edges(
                [
                    LineageEdge(src=s, dst=f"workflow_run:{run_id}", relation="triggered")
                    for s in sources
                ]
            )
        return self._launch(_Driver(run=run, dag=dag, succeeded={}))

    def _recover(self) -> None:
        """Continue the runs a previous manager left unfinished (see the module docstring)."""
        try:
            orphans = self._store.list_workflow_runs(
                limit=100_000, statuses=[RunStatus.QUEUED, RunStatus.RUNNING]
            )
        except Exception:
            log.exception("could not list the workflow runs to recover")
            return
        for run in reversed(orphans):  # oldest first
            if run.created_at >= self._started_at:
                continue  # started by this manager: it drives it already
            try:
                self._resume(run.id)
                log.warning("continued workflow run %s after a manager restart", run.id)
            except Conflict:
                pass  # resumed already (by a client, or it is running here)
            except DLPlatformError as exc:  # e.g. its factory no longer imports: say so
                log.error("workflow run %s could not be continued: %s", run.id, exc.message)
                self._store.update_workflow_run(
                    run.id, status=RunStatus.FAILED, ended_at=utcnow(),
                    error=f"could not be continued after a manager restart: {exc.message}",
                )  # fmt: skip
            except Exception:
                log.exception("workflow run %s could not be continued", run.id)

    def _resume(self, run_id: str) -> WorkflowRun:
        with self._resume_lock:
            return self._resume_locked(run_id)

    def _resume_locked(self, run_id: str) -> WorkflowRun:
        run = self._store.get_workflow_run(run_id)  # NotFound
        with self._lock:
            driver = self._runs.get(run_id)
            if driver is not None and driver.thread is not None and driver.thread.is_alive():
                raise Conflict(f"workflow run {run_id} is running")
        if run.status is RunStatus.SUCCEEDED:
            raise Conflict(f"workflow run {run_id} already succeeded")
        registration = self._resolve(run.workflow)
        try:
            factory = self._load(registration)
        except FactoryUnavailable as exc:  # record why, then tell the caller
            self._store.update_workflow_run(
                run_id, status=RunStatus.FAILED, ended_at=utcnow(), error=exc.message
            )
            raise
        dag = self._build(registration.name, factory, json.loads(run.params_json))
        recorded = {s.step_id: s for s in self._store.list_workflow_steps(run_id)}
        succeeded = {
            sid: s.output_ref
            for sid, s in recorded.items()
            if s.status is RunStatus.SUCCEEDED and s.output_ref and sid in dag.steps
        }
        reset = [
            WorkflowStep(
                run_id=run_id,
                step_id=sid,
                name=s.step.name,
                attempts=recorded[sid].attempts if sid in recorded else 0,
            )
            for sid, s in dag.steps.items()
            if sid not in succeeded
        ]
        self._store.put_workflow_steps(reset)
        run = self._store.update_workflow_run(
            run_id, status=RunStatus.QUEUED, ended_at=None, error=None
        )
        log.info("resuming %s: %d of %d steps to run", run_id, len(reset), len(dag.steps))
        return self._launch(_Driver(run=run, dag=dag, succeeded=succeeded))

    def _cancel(self, run_id: str, wait_s: float) -> WorkflowRun:
        run = self._store.get_workflow_run(run_id)
        with self._lock:
            driver = self._runs.get(run_id)
        alive = driver is not None and driver.thread is not None and driver.thread.is_alive()
        if run.status.is_final and not alive:
            raise Conflict(f"workflow run {run_id} already ended ({run.status.value})")
        if alive:
            assert driver is not None and driver.thread is not None
            driver.cancel_requested.set()
            driver.thread.join(timeout=wait_s)
            return self._store.get_workflow_run(run_id)
        # Orphaned (its manager died): nothing runs it any more, record the cancel.
        revoke_run_tokens(self._store, run_id, "workflow run cancelled")  # type: ignore[arg-type]
        for s in self._store.list_workflow_steps(run_id):
            if s.status is RunStatus.RUNNING:
                self._store.finish_workflow_step(
                    run_id, s.step_id, RunStatus.CANCELLED, error="cancelled"
                )
        return self._store.update_workflow_run(
            run_id, status=RunStatus.CANCELLED, ended_at=utcnow(), error="cancelled"
        )

    def _launch(self, driver: _Driver) -> WorkflowRun:
        run = self._store.update_workflow_run(
            driver.run.id, status=RunStatus.RUNNING, started_at=driver.run.started_at or utcnow()
        )
        driver.run = run
        driver.client_env = self._client_env(run)
        thread = threading.Thread(
            target=self._drive, args=(driver,), name=f"wf-{run.id}", daemon=True
        )
        driver.thread = thread
        with self._lock:
            self._runs[run.id] = driver
        thread.start()
        return run

    def _client_env(self, run: WorkflowRun) -> dict[str, str]:
        """``DLP_URL`` and a run token of the owner for the steps' code (``DLP_TOKEN`` empty for a
        run of the platform's own: its code gets no credentials, rather than the admin's)."""
        token = ""
        if run.owner != SYSTEM.name:
            store: Any = self._store  # the actor's client, with the store's methods
            try:
                token, _ = issue_run_token(store, run.owner, run.id, self._settings.run_token_ttl_s)
            except DLPlatformError as exc:  # e.g. the owner was removed: the steps run unarmed
                log.warning("workflow run %s: no token for its steps: %s", run.id, exc.message)
        return {"DLP_URL": self._settings.internal_gateway_url, "DLP_TOKEN": token}

    def _drive(self, driver: _Driver) -> None:
        run_id = driver.run.id
        try:
            status, error = self._execute(driver)
        except Exception as exc:  # the engine itself failed (e.g. the metadata actor went away)
            log.exception("workflow run %s: the driver failed", run_id)
            status, error = RunStatus.FAILED, f"workflow engine error: {type(exc).__name__}: {exc}"
        try:
            self._store.update_workflow_run(run_id, status=status, ended_at=utcnow(), error=error)
            revoke_run_tokens(self._store, run_id, f"workflow run {status.value.lower()}")  # type: ignore[arg-type]
        except Exception:
            log.exception("workflow run %s: cannot record its end (%s)", run_id, status.value)
        with self._lock:
            self._runs.pop(run_id, None)

    def _execute(self, driver: _Driver) -> tuple[RunStatus, str | None]:
        dag, run = driver.dag, driver.run
        done: dict[str, str] = dict(driver.succeeded)
        values: dict[str, ray.ObjectRef] = {}  # type: ignore[type-arg]
        waiting = {sid: set(s.deps) - set(done) for sid, s in dag.steps.items() if sid not in done}
        pending: dict[ray.ObjectRef, tuple[str, ray.ObjectRef, float]] = {}  # type: ignore[type-arg]
        failure: str | None = None
        store = self._store

        started: list[tuple[str, bool]] = []  # recorded with one store call per round
        finished: list[tuple[str, RunStatus, str | None, str | None]] = []

        def flush() -> None:
            if started or finished:
                store.advance_workflow_steps(run.id, started=list(started), finished=list(finished))
                started.clear()
                finished.clear()

        def submit(sid: str) -> None:
            s = dag.steps[sid]
            data: dict[str, None] = {}
            _data_deps((s.args, s.kwargs), data)
            live = tuple(d for d in data if d in values)
            opts = s.step.step_options.ray_options()
            job = StepJob(
                settings=self._settings,
                run_id=run.id,
                step_id=sid,
                owner=run.owner,
                step=s.step,
                args=s.args,
                kwargs=s.kwargs,
                upstream_ids=live,
                persisted={d: done[d] for d in data if d not in values},
                count_attempts=opts["max_retries"] > 0,
                client_env=driver.client_env,
            )
            value_ref, meta_ref = run_step.options(**opts, name=f"{run.id}:{sid}").remote(
                job, *(values[d] for d in live)
            )
            pending[meta_ref] = (sid, value_ref, time.monotonic())

        def fail(sid: str, error: str, short: str) -> None:
            nonlocal failure
            finished.append((sid, RunStatus.FAILED, None, error))
            if failure is None:
                failure = f"step {sid} {short}"

        while True:
            if driver.cancel_requested.is_set():
                for sid, value_ref, _ in pending.values():
                    ray.cancel(value_ref, force=True)
                    finished.append((sid, RunStatus.CANCELLED, None, "cancelled"))
                flush()
                return RunStatus.CANCELLED, "cancelled"
            ready: list[str] = []
            if failure is None:
                ready = [sid for sid, deps in waiting.items() if not deps]
                for sid in ready:
                    del waiting[sid]
                    started.append((sid, dag.steps[sid].step.step_options.retries == 0))
            flush()
            for sid in ready:
                submit(sid)
            if not pending:
                break
            refs = list(pending)
            timeouts = [
                started_at + t - time.monotonic()
                for sid, _, started_at in pending.values()
                if (t := dag.steps[sid].step.step_options.timeout_s) is not None
            ]
            wait_s = max(0.0, min([_WAIT_S, *timeouts]))
            ready_refs, _ = ray.wait(refs, num_returns=1, timeout=wait_s)
            if ready_refs:
                ready_refs, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
            for meta_ref in ready_refs:
                sid, value_ref, _ = pending.pop(meta_ref)
                try:
                    output_ref = ray.get(meta_ref)
                except Exception as exc:  # RayTaskError (the step raised), crashes, cancels
                    if driver.cancel_requested.is_set():
                        continue
                    summary = summarize_error(exc)
                    fail(sid, summary, f"failed: {summary.splitlines()[-1] if summary else exc}")
                    continue
                done[sid] = output_ref
                finished.append((sid, RunStatus.SUCCEEDED, output_ref, None))
                values[sid] = value_ref
                for deps in waiting.values():
                    deps.discard(sid)
            now = time.monotonic()
            for meta_ref, (sid, value_ref, started_at) in list(pending.items()):
                limit = dag.steps[sid].step.step_options.timeout_s
                if limit is not None and now - started_at > limit:
                    ray.cancel(value_ref, force=True)
                    pending.pop(meta_ref)
                    fail(sid, f"timed out after {limit:g} s", f"timed out after {limit:g} s")
        flush()
        if failure is not None:
            return RunStatus.FAILED, failure
        return RunStatus.SUCCEEDED, None

    # --- triggers -------------------------------------------------------------------------

    def _start_for_trigger(
        self, trigger: WorkflowTrigger, params: dict[str, Any], sources: list[str], run_id: str
    ) -> str:
        run = self._start(trigger.workflow, params, run_id, trigger.owner, sources)
        return run.id

    def _trigger_loop(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self._scheduler.tick(utcnow())
            except Exception:
                log.exception("workflow trigger tick failed")


# Restarted by Ray after a crash: triggers keep firing and the runs it drove continue.
ManagerActor = ray.remote(num_cpus=0, max_concurrency=64, max_restarts=-1)(WorkflowManager)


class ManagerClient(ActorClient):
    """Typed calls to the workflow manager; each raises the typed error it replied with."""

    what = "the workflow manager"

    def start(
        self, workflow: str, params: dict[str, Any], run_id: str | None, owner: str, *, retry: bool
    ) -> WorkflowRun:
        """Start a run of ``owner``. ``retry``: it may be sent again if the manager dies under it
        (a start with the caller's run id: a repeat is answered ``AlreadyExists``, which the
        service resolves)."""
        send = lambda: self._handle.start.remote(workflow, params, run_id, owner)  # noqa: E731
        return self._ask(send, retry=retry)  # type: ignore[no-any-return]

    def resume(self, run_id: str) -> WorkflowRun:
        return self._ask(lambda: self._handle.resume.remote(run_id), retry=False)  # type: ignore[no-any-return]

    def cancel(self, run_id: str, wait_s: float = 30.0) -> WorkflowRun:
        return self._ask(lambda: self._handle.cancel.remote(run_id, wait_s), retry=False)  # type: ignore[no-any-return]

    def check(self, workflow: str, params: dict[str, Any] | None) -> None:
        """Check that a registered workflow loads (and, given params, builds) without running it."""
        self._ask(lambda: self._handle.check.remote(workflow, params))

    def tick(self, now: datetime) -> list[str]:
        """Run the trigger scheduler once at time ``now``; the ids of the runs it started."""
        return list(self._ask(lambda: self._handle.tick.remote(now), retry=False))

    def active_runs(self) -> list[str]:
        return list(self._get(self._handle.active_runs.remote))


def get_manager(settings: Settings, *, create: bool = True, timeout_s: float = 60) -> ManagerClient:
    """The platform's workflow manager, started (detached) when missing. A manager that is
    restarting is waited for, as the call after this one would: reads and checks see a delay,
    not a 503.

    Raises:
        BackendUnavailable: Ray is not initialised, or the manager is missing and ``create`` is
            False, or it does not start in time.
    """
    handle = get_or_create(ManagerActor, MANAGER_NAME, settings.namespace, (settings,),
                           what=ManagerClient.what, create=create, on_head=False,
                           timeout_s=timeout_s)  # fmt: skip
    return ManagerClient(handle)


def stop_manager(settings: Settings) -> bool:
    """Kill the manager actor (its state is in the stores). Returns whether one ran."""
    return kill_named_actor(MANAGER_NAME, settings.namespace)
