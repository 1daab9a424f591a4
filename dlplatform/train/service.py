"""Training service functions: submit, list, inspect, cancel, logs, metrics, wait.

Every function takes the ``Backend`` and the caller's ``Principal``, authorizes, and audits
mutations. The SDK, the CLI and the HTTP routes call these and nothing else.

Permissions: ``train.submit`` to submit (data-scientist, researcher, admin), plus ``code.run`` for
a user-code model (see ``_usercode``); ``train.view`` to read, with the values of the spec's
``runtime_env.env_vars`` masked for all but the job's owner and admins; cancel needs
``train.submit`` and ownership of the job unless the caller is an admin.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from dlplatform import data
from dlplatform.access import Permission, Principal, audit, authorize, revoke_run_tokens
from dlplatform.context import Backend
from dlplatform.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from dlplatform.metadata import Commit, MetricPoint, Run, RunStatus
from dlplatform.metadata.records import check_idempotency_key, check_page, utcnow
from dlplatform.models import builtin
from dlplatform.train import _startup, tracking
from dlplatform.train._joblog import POOL_NAME_PREFIX
from dlplatform.train._lifecycle import Holding, new_run_id, wait_final
from dlplatform.train._usercode import authorize_code, masked, may_see_env
from dlplatform.train.scheduler import SchedulerClient, check_fits, scheduler_for
from dlplatform.train.spec import (
    MAX_LOG_CHUNK_BYTES,
    MAX_METRICS_PAGE,
    MAX_WATCH_S,
    JobLogs,
    MetricBatch,
    MetricsLogged,
    TrainingJob,
    TrainingJobSpec,
    shown_spec,
)
from dlplatform.train.tracking import check_run_writer
from dlplatform.usage import held_by


def prepare(
    backend: Backend, principal: Principal, spec: TrainingJobSpec
) -> tuple[TrainingJobSpec, Commit]:
    """Validate ``spec`` against its dataset and pin the dataset to a commit.

    Raises:
        NotFound: the dataset or commit does not exist.
        PermissionDenied: the caller may not read the dataset, or may not run the spec's code
            (``code.run``, an admin-only ``runtime_env``).
        InvalidInput: label missing, unsuitable features (named), bad hyperparameters.
    """
    authorize_code(backend, principal, spec, f"code:{spec.model}")
    commit = data.resolve(backend, principal, spec.dataset)
    schema = data.arrow_schema(commit)
    if spec.label not in schema.names:
        raise InvalidInput(
            f"label column {spec.label!r} is not in dataset {spec.dataset_name} "
            f"(columns: {', '.join(schema.names)})"
        )
    if spec.is_builtin:
        features = spec.features or tuple(n for n in schema.names if n != spec.label)
        builtin.check_params(spec.model, spec.params)
        builtin.check_inputs(spec.model, schema, features, spec.label)
    elif spec.features:
        missing = [f for f in spec.features if f not in schema.names]
        if missing:
            raise InvalidInput(f"feature columns not in the dataset: {', '.join(missing)}")
    pinned = spec.model_copy(update={"dataset": f"{spec.dataset_name}@{commit.id}"})
    return pinned, commit


def create_run(
    backend: Backend,
    principal: Principal,
    spec: TrainingJobSpec,
    commit: Commit,
    *,
    status: RunStatus = RunStatus.QUEUED,
    name: str = "",
    idempotency_key: str | None = None,
) -> Run:
    """Record a new training run for a pinned ``spec`` (no scheduling).

    Raises:
        AlreadyExists: ``idempotency_key`` made a run already (nothing was recorded).
    """
    now = utcnow()
    run = Run(
        id=new_run_id(),
        kind="train",
        name=name,
        owner=principal.name,
        status=status,
        priority=spec.priority,
        spec_json=spec.model_dump_json(),
        dataset_commit=commit.id,
        created_at=now,
        started_at=now if status is RunStatus.RUNNING else None,
        tags=spec.tags,
        **Holding.of_spec(spec).fields(),
    )
    backend.store.create_run(run, idempotency_key=idempotency_key)
    audit(backend.store, principal, "train.submit", f"run:{run.id}", spec.dataset)
    return run


def _scheduler(backend: Backend) -> SchedulerClient:
    return scheduler_for(backend)


def submit(
    backend: Backend,
    principal: Principal,
    spec: TrainingJobSpec,
    *,
    idempotency_key: str | None = None,
) -> TrainingJob:
    """Validate, pin and queue a training job; the scheduler starts it when resources allow.

    Args:
        idempotency_key: 1-128 characters of ``A-Z a-z 0-9 _ . : -`` naming this submit, as a
            push's key does: the key is recorded with the run, and a later submit by the same
            caller with the same key submits nothing and returns that job as it is now, in
            whatever status (a workflow step run again after a crash finds its job this way).

    Raises:
        PermissionDenied, NotFound, InvalidInput: see ``prepare``; InvalidInput also when the
            job needs more than the cluster's total capacity, or for a malformed key.
        BackendUnavailable: the cluster cannot be reached.
    """
    key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
    authorize(backend.store, principal, Permission.TRAIN_SUBMIT, f"dataset:{spec.dataset_name}")
    if key is not None and (earlier := _submitted(backend, principal, key, spec)) is not None:
        return earlier
    pinned, commit = prepare(backend, principal, spec)
    scheduler = _scheduler(backend)
    check_fits(Holding.of_spec(pinned), scheduler.capacity())
    try:
        run = create_run(backend, principal, pinned, commit, idempotency_key=key)
    except AlreadyExists:  # a concurrent submit with the same key won: its job stands
        earlier = _submitted(backend, principal, key, spec) if key is not None else None
        if earlier is None:
            raise
        return earlier
    scheduler.wake()
    return _view(backend, principal, run)


def _submitted(
    backend: Backend, principal: Principal, key: str, spec: TrainingJobSpec
) -> TrainingJob | None:
    """The job an earlier submit by the caller with ``key`` made (audited as replayed), else
    None.

    Raises:
        Conflict: that submit asked for a different job (another spec or dataset); a key names
            one submit, so reusing it for another is a mistake, not a retry.
    """
    try:
        run = backend.store.get_run_by_submit_key(principal.name, key)
    except NotFound:
        return None
    earlier = TrainingJobSpec.model_validate_json(run.spec_json)
    same_commit = spec.dataset_commit in (None, earlier.dataset_commit)
    if not same_commit or _unpinned(earlier) != _unpinned(spec):
        raise Conflict(
            f"idempotency key {key!r} was used for job {run.id} with a different spec; "
            "use a new key for a new job"
        )
    audit(backend.store, principal, "train.submit", f"run:{run.id}", f"replayed key={key}")
    return _view(backend, principal, run)


def _unpinned(spec: TrainingJobSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json") | {"dataset": spec.dataset_name}


def _positions(backend: Backend) -> dict[str, int]:
    queued = sorted(
        backend.store.list_runs(kind="train", status=["QUEUED"], limit=10_000),
        key=lambda r: (-r.priority, r.created_at, r.id),
    )
    return {r.id: i + 1 for i, r in enumerate(queued)}


def waiting_reasons(backend: Backend) -> dict[str, str]:
    """Why each queued training or tuning run waits (run id -> reason), as the scheduler last
    decided; {} off the cluster or while the scheduler is down."""
    if not backend.on_cluster:
        return {}
    try:
        return scheduler_for(backend, create=False).reasons()
    except BackendUnavailable:
        return {}


def _view(
    backend: Backend,
    viewer: Principal,
    run: Run,
    positions: dict[str, int] | None = None,
    reasons: dict[str, str] | None = None,
) -> TrainingJob:
    """The job as ``viewer`` sees it: env var values masked unless it owns the job or is an
    admin (in the spec and in the run's ``spec_json`` alike)."""
    position = reason = None
    if run.status is RunStatus.QUEUED:
        positions = _positions(backend) if positions is None else positions
        reasons = waiting_reasons(backend) if reasons is None else reasons
        position = positions.get(run.id)
        reason = reasons.get(run.id, "waiting for the scheduler")
    result = json.loads(run.result_json) if run.result_json else {}
    spec = shown_spec(run.spec_json)
    if not may_see_env(viewer, run):  # the raw spec_json too: it may hold what spec dropped
        spec = masked(spec)
        run = run.model_copy(update={"spec_json": spec.model_dump_json()})
    return TrainingJob(
        run=run,
        spec=spec,
        queue_position=position,
        waiting_reason=reason,
        ray_job_id=None if not run.name or run.name.startswith(POOL_NAME_PREFIX) else run.name,
        model_version=result.get("model_version"),
        startup=_startup.breakdown(_startup.parse(run.startup_json)),
    )


def _get_train_run(backend: Backend, run_id: str) -> Run:
    run = backend.store.get_run(run_id)
    if run.kind != "train":
        raise NotFound(f"training job {run_id!r} does not exist")
    return run


def get_job(backend: Backend, principal: Principal, run_id: str) -> TrainingJob:
    """One training job with its queue position (QUEUED) and model version (SUCCEEDED)."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    run = _get_train_run(backend, run_id)
    job = _view(backend, principal, run)
    if run.started_at is None:
        return job
    return job.model_copy(update={"usage": held_by(backend.store, "run", run.id, run.started_at)})


def list_jobs(
    backend: Backend,
    principal: Principal,
    *,
    status: list[str] | None = None,
    owner: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[TrainingJob]:
    """Training jobs, newest first; ``offset`` skips that many (pages of ``limit``)."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "training-jobs")
    if status:
        bad = [s for s in status if s not in RunStatus.__members__]
        if bad:
            raise InvalidInput(f"unknown status {', '.join(bad)}")
    if offset < 0:
        raise InvalidInput(f"offset must not be negative, got {offset}")
    runs = backend.store.list_runs(
        kind="train", status=status, owner=owner, limit=limit, offset=offset
    )
    positions = _positions(backend)
    reasons = waiting_reasons(backend) if any(r.status is RunStatus.QUEUED for r in runs) else {}
    return [_view(backend, principal, r, positions, reasons) for r in runs]


def count_jobs(
    backend: Backend,
    principal: Principal,
    *,
    status: list[str] | None = None,
    owner: str | None = None,
) -> int:
    """How many training jobs ``list_jobs`` pages through with the same filters."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "training-jobs")
    if status:
        bad = [s for s in status if s not in RunStatus.__members__]
        if bad:
            raise InvalidInput(f"unknown status {', '.join(bad)}")
    return backend.store.count_runs(kind="train", status=status, owner=owner)


def cancel_job(backend: Backend, principal: Principal, run_id: str) -> TrainingJob:
    """Cancel a queued or running job (a running one's Ray job is stopped).

    Raises:
        PermissionDenied: not the owner (and not an admin), or no train.submit.
        Conflict: the job already finished.
    """
    authorize(backend.store, principal, Permission.TRAIN_SUBMIT, f"run:{run_id}")
    run = cancel_run(backend, principal, _get_train_run(backend, run_id), "train")
    return _view(backend, principal, run)


def cancel_run(backend: Backend, principal: Principal, run: Run, kind: str) -> Run:
    """Cancel ``run`` (a training or tuning job) for its owner or an admin; audited as
    ``<kind>.cancel``. Its unfinished trials end with it, and its run token is revoked.

    Raises:
        PermissionDenied: not the owner (and not an admin).
        Conflict: the job already finished.
        BackendUnavailable: the job runs and the cluster cannot be reached.
    """
    action, target = f"{kind}.cancel", f"run:{run.id}"
    if run.owner != principal.name and not principal.is_admin:
        backend.store.append_audit(principal.name, action, target, "denied", "not the owner")
        raise PermissionDenied(f"{principal.name} may not cancel job {run.id} of {run.owner}")
    if run.status.is_final:
        raise Conflict(f"job {run.id} already finished ({run.status.value}); cannot cancel")
    if backend.on_cluster:
        updated = _scheduler(backend).cancel(run.id, principal.name)
    elif run.status is RunStatus.QUEUED:
        updated = backend.store.update_run(
            run.id, status=RunStatus.CANCELLED, ended_at=utcnow(),
            error=f"cancelled by {principal.name}",
        )  # fmt: skip
    else:
        raise BackendUnavailable("cancelling a running job needs the cluster")
    audit(backend.store, principal, action, target)
    revoke_run_tokens(backend.store, run.id, "its job was cancelled", by=principal)
    return updated  # type: ignore[no-any-return]


def get_logs(backend: Backend, principal: Principal, run_id: str) -> str:
    """The job driver's output so far ("" while queued), read a bounded chunk at a time."""
    parts: list[str] = []
    offset = 0
    while True:
        chunk = read_logs(backend, principal, run_id, offset)
        parts.append(chunk.text)
        if chunk.final or chunk.next_offset == offset:
            return "".join(parts)
        offset = chunk.next_offset


def read_logs(
    backend: Backend,
    principal: Principal,
    run_id: str,
    offset: int = 0,
    limit: int = MAX_LOG_CHUNK_BYTES,
) -> JobLogs:
    """At most ``limit`` bytes of the job driver's output from byte ``offset`` on: the
    scheduler seeks there and reads only that range, however long the log has grown.

    Raises:
        InvalidInput: a negative ``offset``, or ``limit`` outside 1..MAX_LOG_CHUNK_BYTES.
    """
    if offset < 0 or not 1 <= limit <= MAX_LOG_CHUNK_BYTES:
        raise InvalidInput(
            f"offset must be >= 0 and limit between 1 and {MAX_LOG_CHUNK_BYTES}, "
            f"got {offset} and {limit}"
        )
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    run = _get_train_run(backend, run_id)
    final = run.status.is_final  # read before the log: a final job's log is complete
    if not run.name:
        return JobLogs(text="", offset=offset, next_offset=offset, final=final)
    chunk = _scheduler(backend).logs(run_id, offset, limit)
    return JobLogs(
        text=chunk.text,
        offset=offset,
        next_offset=chunk.next_offset,
        final=final and chunk.next_offset >= chunk.size,
    )


def get_metrics(
    backend: Backend, principal: Principal, run_id: str, key: str | None = None
) -> list[MetricPoint]:
    """The run's metric history (per epoch: loss, val_loss, val_accuracy, throughput, ...)."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    _get_train_run(backend, run_id)
    return backend.store.get_metrics(run_id, key)


def get_metrics_page(
    backend: Backend,
    principal: Principal,
    run_id: str,
    key: str | None = None,
    *,
    limit: int = MAX_METRICS_PAGE,
    offset: int = 0,
) -> tuple[list[MetricPoint], int]:
    """One page of ``get_metrics`` (by key, step and time) and how many points there are.

    Raises:
        InvalidInput: ``limit`` outside 1..MAX_METRICS_PAGE or a negative ``offset``.
    """
    check_page(limit, offset, MAX_METRICS_PAGE)
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    _get_train_run(backend, run_id)
    return tracking.metrics_page(backend.store, run_id, key, limit, offset)


def log_metrics(
    backend: Backend, principal: Principal, run_id: str, batch: MetricBatch
) -> MetricsLogged:
    """Append metric points to a run (its owner, e.g. the job's run token, or an admin) that
    has not ended (a job's code, or a run tracked from any code: ``tracking``).

    Not audited point by point: this is a training loop's hot path, like the platform's own
    metric logging.

    Raises:
        NotFound: no such run.
        PermissionDenied: the caller neither owns the run nor is an admin.
        Conflict: the run has ended.
    """
    run = check_run_writer(backend, principal, run_id, "metrics.log")
    n = len(batch.keys)
    count = backend.store.log_metric_batch(
        [run.id] * n, batch.keys, batch.values, batch.steps or [0] * n, batch.timestamps
    )
    return MetricsLogged(run_id=run.id, count=int(count))


def watch_job(
    backend: Backend, principal: Principal, run_id: str, known: int | None, timeout_s: float
) -> Awaitable[int]:
    """Check the caller may view the job, then return what to await: the job's change counter
    as soon as it differs from ``known`` (a new metric point, a status change), else after
    ``timeout_s`` (at most ``MAX_WATCH_S``). A follower awaits this between reads instead of
    polling, and sees an epoch the moment it is stored.

    Raises:
        NotFound, PermissionDenied: no such job, or the caller may not view it.
    """
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    _get_train_run(backend, run_id)
    return _watch(backend, run_id, known, min(max(timeout_s, 0.0), MAX_WATCH_S))


async def _watch(backend: Backend, run_id: str, known: int | None, timeout_s: float) -> int:
    store = backend.store
    if not hasattr(store, "watch_run"):  # the store in this process (no metadata actor)
        return int(await asyncio.to_thread(store.wait_run_change, run_id, known, timeout_s))
    try:
        return int(await store.watch_run(run_id, known, timeout_s))
    except Exception as exc:  # the actor restarted meanwhile: the follower reads again
        raise BackendUnavailable(f"the metadata actor restarted: {type(exc).__name__}") from exc


def wait_job(
    backend: Backend,
    principal: Principal,
    run_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = MAX_WATCH_S,
    on_update: Callable[[TrainingJob, list[MetricPoint]], None] | None = None,
) -> TrainingJob:
    """Block until the job is final; ``on_update`` sees the job and its metrics after each
    change (woken by the store, not a polling interval; ``poll_s`` bounds one wait).

    Raises:
        TimeoutError: not final within ``timeout_s``.
    """

    def update(job: TrainingJob) -> None:
        if on_update is not None:
            on_update(job, backend.store.get_metrics(run_id))

    return wait_final(
        backend, run_id, lambda: get_job(backend, principal, run_id), lambda job: job.run,
        timeout_s=timeout_s, poll_s=poll_s, on_update=update,
    )  # fmt: skip
