"""The Ray task that runs one step: call it, persist its output, link produced entities.

The manager records step transitions in batches (one metadata call per scheduling round). Only a
step with retries records its own start, so that each attempt Ray makes is counted. A step whose
task finished but whose success the manager did not record before dying runs again on resume
(steps are at-least-once, like Ray's own retries); its earlier output stays content-addressed.
A step that starts work elsewhere (a training job) finds that work again in such a re-run by
``StepContext.idempotency_key``, the same in every execution of the step in its run.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import ray

from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, InvalidInput
from dlplatform.metadata import LineageEdge
from dlplatform.metadata.records import check_idempotency_key
from dlplatform.workflows._persist import entities_in, load_output, persist_output
from dlplatform.workflows.dag import fill
from dlplatform.workflows.steps import Step


@dataclass(frozen=True)
class StepContext:
    """What a running step may know about itself (``dlplatform.workflows.current()``)."""

    settings: Settings
    run_id: str
    step_id: str
    owner: str
    _backend: list[Backend] = field(default_factory=list, repr=False, compare=False)

    @property
    def workflow_run(self) -> str:
        """The lineage entity of the run, ``workflow_run:<id>``."""
        return f"workflow_run:{self.run_id}"

    def idempotency_key(self, *parts: str | int) -> str:
        """A key naming work this step starts elsewhere (e.g. a training job,
        ``train.submit(..., idempotency_key=...)``): the same in every execution of this step
        in this run (after a manager crash, a resume or a retry), another in any other step or
        run; ``parts`` tell pieces of work of one step apart. Too long for a key (128
        characters), it is hashed."""
        text = ":".join(["wf", self.run_id, self.step_id, *(str(p) for p in parts)])
        try:
            return check_idempotency_key(text)
        except InvalidInput:
            return f"wf:{hashlib.sha256(text.encode()).hexdigest()}"

    def backend(self) -> Backend:
        """Stores of the platform, reached through the metadata actor (never the DuckDB file)."""
        if not self._backend:
            self._backend.append(replace(_platform_backend(self.settings), settings=self.settings))
        return self._backend[0]


_CURRENT: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar(
    "dlp_workflow_step", default=None
)
_CACHE: dict[tuple[str, str], Backend] = {}
_CACHE_LOCK = threading.Lock()


def current() -> StepContext | None:
    """The context of the workflow step running in this task, or None outside of a step."""
    return _CURRENT.get()


def _platform_backend(settings: Settings, *, fresh: bool = False) -> Backend:
    # Workers are reused across tasks: keep one backend (metadata client, artifacts) per platform.
    key = (settings.namespace, str(settings.home))
    with _CACHE_LOCK:
        if fresh or key not in _CACHE:
            _CACHE[key] = Backend.connect(settings)
        return _CACHE[key]


@dataclass(frozen=True)
class StepJob:
    """Everything the task needs besides the upstream values (which Ray passes as arguments)."""

    settings: Settings
    run_id: str
    step_id: str
    owner: str
    step: Step[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    upstream_ids: tuple[str, ...]  # step ids of the values passed positionally to the task
    persisted: Mapping[str, str]  # step id -> output_ref of upstream outputs loaded from storage
    count_attempts: bool  # the step has retries: record each attempt's start from the task
    # DLP_URL and DLP_TOKEN of the step's code: the gateway and a token of the run's owner that
    # ends with the run (DLP_TOKEN empty for a run of the platform's own): dlplatform.connect()
    # in a step acts as the owner, never with the admin token file it could otherwise find.
    client_env: Mapping[str, str] = field(default_factory=dict)


def _start(settings: Settings, run_id: str, step_id: str) -> None:
    try:
        _platform_backend(settings).store.start_workflow_step(run_id, step_id)
    except BackendUnavailable:  # the metadata actor was replaced: reconnect once
        _platform_backend(settings, fresh=True).store.start_workflow_step(run_id, step_id)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` while the step's code runs, then as before. A task worker runs
    one task at a time and is reused across runs, so a per-task runtime_env (a new worker per
    token) is not needed."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def _run_step(job: StepJob, *upstream: Any) -> tuple[Any, str]:
    """Run one step; returns (output, output_ref JSON)."""
    if job.count_attempts:
        _start(job.settings, job.run_id, job.step_id)
    backend = _platform_backend(job.settings)
    store, artifacts = backend.store, backend.artifacts
    values = dict(zip(job.upstream_ids, upstream, strict=True))
    for sid, ref in job.persisted.items():
        values[sid] = load_output(artifacts, ref)
    token = _CURRENT.set(StepContext(job.settings, job.run_id, job.step_id, job.owner))
    try:
        with _environment(job.client_env):
            result = job.step.fn(*fill(job.args, values), **fill(job.kwargs, values))
    finally:
        _CURRENT.reset(token)
    output_ref = json.dumps(persist_output(artifacts, result))
    entities = entities_in(result)
    if entities:
        src = f"workflow_run:{job.run_id}"
        store.add_edges([LineageEdge(src=src, dst=e, relation="produced") for e in entities])
    return result, output_ref


# Wrapped after definition so that cloudpickle finds ``_run_step`` by reference in this module
# (a decorated function would be pickled by value, with its module globals).
run_step = ray.remote(num_returns=2)(_run_step)
