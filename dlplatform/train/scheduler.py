"""The training scheduler: one detached, named actor that admits queued runs as Ray Jobs.

Ray Jobs has no queue, and a flood of submissions overloads a Ray head, so the platform queues
runs itself. The queue *is* the ``runs`` table (status QUEUED, ordered by priority then age):
the actor keeps no state that a restart could lose. Every ``POLL_S`` (and on ``wake``) it

1. reconciles RUNNING train runs with their Ray Jobs: a job that ended while its run is still
   RUNNING (driver killed, node lost, cluster restarted) marks the run FAILED with the reason;
   ``dlp up`` starts the actor, so runs a hard stop left RUNNING fail on the first pass;
2. admits QUEUED runs in priority order while the cluster has room: a run needs the CPUs
   (and GPUs) its record says it holds (``_lifecycle.Holding``), and one CPU stays free for
   Ray Data's read/encode tasks (without it Train and Data deadlock). A run that does not fit
   waits, with the reason shown; strict order, so a big high-priority run is not starved by
   small ones. A run that would take its owner (or the owner's group) over a quota waits with
   the reason and holds up no one else's (``dlplatform.usage``);
3. keeps the usage records: opens a run's interval at admission, ends it when the run ended,
   and samples the peak memory of running runs (``_account``).

An admitted run that the warm pool can take (``pool``: a built-in model without a runtime_env,
on CPUs, a small version, free members) runs there, driven by a thread of this actor, named
``pool-<run id>``. Any other admitted run, training or tuning, becomes a Ray Job ``python -m
dlplatform.train.entrypoint --run-id <id>`` (the one driver of both kinds) with the ``DLP_*``
settings in its ``runtime_env``, submission id ``dlp-<run id>`` (kept as the run's ``name``),
so ``ray job logs``/``stop`` work on it too. The job's code reaches the platform as the run's
owner: ``DLP_URL`` is the gateway and ``DLP_TOKEN`` a run token of the owner, refused once the
run ends (never the platform's or an admin's token; see ``job_runtime_env``).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import ray
from ray.util.state import list_actors

from dlplatform import _ray_internals as ray_internals
from dlplatform._actors import ActorClient, answer, get_or_create, kill_named_actor
from dlplatform.access import SYSTEM, issue_run_token, revoke_run_tokens, run_owner
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import (
    BackendUnavailable,
    Conflict,
    DLPlatformError,
    InvalidInput,
    PermissionDenied,
)
from dlplatform.metadata import Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import _startup
from dlplatform.train._joblog import (
    POOL_NAME_PREFIX,
    LogChunk,
    driver_log_path,
    pool_log_path,
    read_log_range,
    slice_log,
)
from dlplatform.train._lifecycle import Holding, close_children, job_spec
from dlplatform.train.pool import PoolJob, WarmPool, eligible
from dlplatform.train.quota import QuotaGate, gpu_seconds_by_user
from dlplatform.train.spec import TrainingJobSpec
from dlplatform.usage import record_run_start, resident_bytes

SCHEDULER_NAME = "dlp-train-scheduler"
POLL_S = 1.0
DATA_CPUS = 1.0
"""CPUs kept free for Ray Data tasks that feed the workers."""
JOB_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",  # else each report() waits up to 2 s
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
    "RAY_DATA_LOG_LEVEL": "WARNING",
    "RAY_AIR_NEW_OUTPUT": "0",
}
_TERMINAL_JOB = {"SUCCEEDED", "FAILED", "STOPPED"}
SUBMIT_RETRY_S = 180.0
"""How long a run whose Ray job cannot be submitted (Jobs agent not up yet) is retried."""
MEMORY_SAMPLE_S = 5.0
"""How often the resident memory of running runs is sampled (see ``dlplatform.usage``)."""
SCHEDULED_KINDS = ("train", "tune")
"""Run kinds this scheduler queues (a "tune" run is one Ray Job running the Tune driver)."""
ENTRYPOINT = "dlplatform.train.entrypoint"
"""The module a run's Ray job runs (``python -m``): the driver of both kinds."""


def _kinds(store: Any, status: str) -> list[Run]:
    runs = (store.list_runs(kind=k, status=[status], limit=10_000) for k in SCHEDULED_KINDS)
    return [r for group in runs for r in group]


def _held(run: Run, has_gpus: bool) -> tuple[float, float]:
    """The CPUs and GPUs a running run holds; (0, 0) when its record cannot be read (a run
    started by another version of the platform: it is not counted, rather than stopping the
    scheduler at it)."""
    try:
        return Holding.of_run(run).needs(has_gpus)
    except ValueError:
        return 0.0, 0.0


def submission_id(run_id: str) -> str:
    return f"dlp-{run_id}"


def dashboard_url() -> str:
    """The Jobs API URL of the connected cluster (read from the GCS, as the Ray CLI does).

    Raises:
        BackendUnavailable: the cluster runs without a dashboard (no Jobs API).
    """
    url = ray_internals.dashboard_address()
    if not url:
        raise BackendUnavailable(
            "the Ray dashboard (Jobs API) is not running; training needs a cluster started "
            "with the dashboard"
        )
    return url


def job_client() -> Any:
    """A ``JobSubmissionClient`` for the connected cluster (token auth follows RAY_AUTH_MODE)."""
    from ray.job_submission import JobSubmissionClient  # the gateway imports this module too

    try:
        return JobSubmissionClient(dashboard_url())
    except (ConnectionError, RuntimeError) as exc:
        raise BackendUnavailable(f"cannot reach the Ray Jobs API: {exc}") from exc


def job_env(settings: Settings) -> dict[str, str]:
    """The env vars a job driver needs to rebuild the same ``Settings``. Never a token: the
    settings' own (an admin's, or the caller's) must not reach code that runs in a job."""
    env = dict(JOB_ENV)
    env["DLP_HOME"] = str(settings.home)
    env["DLP_NAMESPACE"] = settings.namespace
    # The driver checks code.run again before importing user code: with the same roles.
    env["DLP_CODE_RUN_ROLES"] = json.dumps([role.value for role in settings.code_run_roles])
    if ray.is_initialized():
        # The driver joins exactly this cluster: Ray's own "auto" lookup can pick another
        # cluster's address when several run on one machine.
        env["DLP_RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    elif settings.ray_address:
        env["DLP_RAY_ADDRESS"] = settings.ray_address
    if settings.artifact_root:
        env["DLP_ARTIFACT_ROOT"] = settings.artifact_root
    if settings.s3_endpoint_url:
        env["DLP_S3_ENDPOINT_URL"] = settings.s3_endpoint_url
    return env


def job_runtime_env(
    settings: Settings, spec: TrainingJobSpec, run_token: str | None
) -> dict[str, Any]:
    """The ``runtime_env`` a run's Ray job is submitted with: the spec's own, plus the platform's
    env vars and the run's credentials, ``DLP_URL`` (the gateway as the cluster reaches it) and
    ``DLP_TOKEN`` (the run token, "" when the run has none).

    Built anew for each submission and never stored: the spec's ``runtime_env`` is shown to
    anyone who may view the job. ``DLP_TOKEN`` is always set, so a token in the environment of
    the cluster's own processes never reaches a job.
    """
    runtime_env: dict[str, Any] = dict(spec.runtime_env or {})
    runtime_env["env_vars"] = {
        **(runtime_env.get("env_vars") or {}),
        **job_env(settings),
        "DLP_URL": settings.internal_gateway_url,
        "DLP_TOKEN": run_token or "",
    }
    return runtime_env


def issue_job_token(store: Any, settings: Settings, run: Run) -> str | None:
    """A token for the code of ``run``'s job, acting as the run's owner (see
    ``access.issue_run_token``); None for a run the platform itself owns (``system``), whose job
    reaches the platform through Ray only, as before."""
    if run.owner == SYSTEM.name:
        return None
    secret, _ = issue_run_token(store, run.owner, run.id, settings.run_token_ttl_s)
    return secret


def cluster_capacity() -> dict[str, float]:
    total = ray.cluster_resources()
    return {"CPU": float(total.get("CPU", 0.0)), "GPU": float(total.get("GPU", 0.0))}


def check_fits(holding: Holding, capacity: dict[str, float]) -> None:
    """Reject a run that can never start on this cluster.

    Raises:
        InvalidInput: the run needs more CPUs/GPUs than the whole cluster has.
    """
    cpus, gpus = holding.needs(capacity["GPU"] > 0)
    if gpus and capacity["GPU"] == 0:
        raise InvalidInput(f"the job needs {gpus:g} GPUs (use_gpu) but the cluster has no GPUs")
    if cpus + DATA_CPUS > capacity["CPU"]:
        raise InvalidInput(
            f"the job needs {cpus:g} CPUs for {holding.workers} workers plus {DATA_CPUS:g} for "
            f"data loading, but the cluster has {capacity['CPU']:g} CPUs in total; use fewer "
            "workers"
        )
    if gpus > capacity["GPU"]:
        raise InvalidInput(f"the job needs {gpus:g} GPUs but the cluster has {capacity['GPU']:g}")


class _Scheduler:
    """The actor body. Methods return ("ok", value) or ("err", code, message)."""

    def __init__(self, settings_values: dict[str, Any]) -> None:
        self._settings = Settings(**settings_values)
        self._backend = Backend.connect(self._settings)  # the metadata actor's client
        self._store = self._backend.store
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._reasons: dict[str, str] = {}
        self._submit_failures: dict[str, float] = {}
        self._client: Any = None
        self._stopped = False
        self.errors: list[str] = []
        self._pool = WarmPool(self._settings.train_pool_size,
                              node_id=ray.get_runtime_context().get_node_id())  # fmt: skip
        self._pool_jobs: dict[str, PoolJob] = {}
        self._accounted: set[str] = set()  # runs RUNNING at the last tick (see _account)
        self._peaks: dict[str, int] = {}
        self._sampled_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="dlp-train-scheduler", daemon=True)
        self._thread.start()

    # -- remote API ---------------------------------------------------------------------------

    def _call(self, fn: Any, *args: Any) -> tuple[Any, ...]:
        def locked() -> Any:
            with self._lock:
                return fn(*args)

        return answer(locked, what="the training scheduler")

    def ping(self) -> str:
        return "ok"

    def wake(self) -> None:
        self._wake.set()

    def capacity(self) -> dict[str, float]:
        return cluster_capacity()

    def reasons(self) -> dict[str, str]:
        with self._lock:
            return dict(self._reasons)

    def cancel(self, run_id: str, by: str) -> tuple[Any, ...]:
        return self._call(self._cancel, run_id, by)

    def logs(self, run_id: str, offset: int, limit: int) -> tuple[Any, ...]:
        return self._call(self._logs, run_id, offset, limit)

    def tick(self) -> tuple[Any, ...]:
        return self._call(self._tick)

    def recent_errors(self) -> list[str]:
        return list(self.errors[-20:])

    def warm_pool(self) -> None:
        """Start the pool's members and import the training code here (``dlp up`` calls this;
        otherwise the first job that can use the pool starts it)."""
        self._pool.fill()
        threading.Thread(target=_import_training, name="dlp-warm-imports", daemon=True).start()

    def pool_status(self) -> dict[str, Any]:
        return self._pool.status()

    # -- internals ----------------------------------------------------------------------------

    def _jobs(self) -> Any:
        if self._client is None:
            self._client = job_client()
        return self._client

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(POLL_S)
            self._wake.clear()
            try:
                with self._lock:
                    self._tick()
            except Exception as exc:  # keep scheduling; the error is kept for `recent_errors`
                self.errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
                del self.errors[:-50]

    def _tick(self) -> None:
        running = _kinds(self._store, "RUNNING")
        for run in running:
            self._reconcile(run)
        running = _kinds(self._store, "RUNNING")
        self._account(running)
        queued = sorted(
            ((r, spec) for r in _kinds(self._store, "QUEUED")
             if (spec := self._queued_spec(r)) is not None),
            key=lambda rs: (-rs[0].priority, rs[0].created_at, rs[0].id),
        )  # fmt: skip
        self._reasons = {}
        if not queued:
            return
        capacity = cluster_capacity()
        has_gpus = capacity["GPU"] > 0
        free = ray.available_resources()
        held = [(run.owner, *_held(run, has_gpus)) for run in running]
        reserved_cpu = sum(c for _, c, _ in held)
        reserved_gpu = sum(g for _, _, g in held)
        gate = self._quota_gate(held)
        blocked = False
        for run, spec in queued:
            holding = Holding.of_run(run)  # read by _queued_spec already
            cpus, gpus = holding.needs(has_gpus)
            why = gate.reason(run.owner, cpus, gpus) if gate is not None else None
            if why is not None:  # a run over its owner's quota holds up no one else's
                self._reasons[run.id] = why
                continue
            if blocked:
                self._reasons[run.id] = "waiting behind a higher-priority job"
                continue
            try:
                check_fits(holding, capacity)
            except InvalidInput as exc:
                self._reasons[run.id] = f"cannot start on this cluster: {exc.message}"
                continue
            room_cpu = min(capacity["CPU"] - DATA_CPUS - reserved_cpu, float(free.get("CPU", 0)))
            room_gpu = min(capacity["GPU"] - reserved_gpu, float(free.get("GPU", 0)))
            if cpus > room_cpu + 1e-9 or gpus > room_gpu + 1e-9:
                self._reasons[run.id] = (
                    f"waiting for {cpus:g} free CPUs"
                    + (f" and {gpus:g} GPUs" if gpus else "")
                    + f" ({max(room_cpu, 0):g} CPUs free for training now)"
                )
                blocked = True
                continue
            self._launch(run, spec, has_gpus, (cpus, gpus))
            if gate is not None:
                gate.admit(run.owner, cpus, gpus)
            reserved_cpu += cpus
            reserved_gpu += gpus

    def _launch(
        self, run: Run, spec: TrainingJobSpec, has_gpus: bool,
        held: tuple[float, float] | None = None,
    ) -> None:  # fmt: skip
        """Start an admitted run (on the warm pool, else as a Ray job); ``held``: the CPUs and
        GPUs admitted for it (read from its record when not given)."""
        held = Holding.of_run(run).needs(has_gpus) if held is None else held
        try:
            run_owner(self._store, run.owner)  # its job acts as the owner, or not at all
        except PermissionDenied as exc:
            self._store.update_run(
                run.id, status=RunStatus.FAILED, ended_at=utcnow(), error=exc.message
            )
            return
        if self._takes_pool(run, spec, has_gpus):
            self._start_on_pool(run)
            self._record_start(run.id, held)
            return
        sid = submission_id(run.id)
        marks = {"submitted": run.created_at.timestamp(), "admitted": _startup.now()}
        self._store.update_run(
            run.id, status=RunStatus.RUNNING, started_at=utcnow(), name=sid,
            startup_json=_startup.dump(marks),
        )  # fmt: skip
        try:
            run_token = issue_job_token(self._store, self._settings, run)
            self._jobs().submit_job(
                entrypoint=f"python -m {ENTRYPOINT} --run-id {run.id}",
                submission_id=sid,
                runtime_env=job_runtime_env(self._settings, spec, run_token),
                metadata={"dlp_run_id": run.id, "dlp_owner": run.owner},
            )
            marks["job_submitted"] = _startup.now()
            self._store.update_run(run.id, startup_json=_startup.dump(marks))
            submitted = True
        except Exception as exc:
            submitted = False
            revoke_run_tokens(self._store, run.id, "its Ray job could not be started")
            # Often transient (the Jobs agent is still starting): back to the queue, a few times.
            first = self._submit_failures.setdefault(run.id, time.monotonic())
            why = f"could not start the Ray job: {type(exc).__name__}: {exc}"[:2000]
            if time.monotonic() - first < SUBMIT_RETRY_S:
                self._store.update_run(run.id, status=RunStatus.QUEUED, started_at=None, name="")
                self._reasons[run.id] = f"{why} (retrying for up to {SUBMIT_RETRY_S:g} s)"
            else:
                self._store.update_run(
                    run.id, status=RunStatus.FAILED, ended_at=utcnow(), error=why
                )
        if submitted:
            self._record_start(run.id, held)

    def _queued_spec(self, run: Run) -> TrainingJobSpec | None:
        """The training spec a queued run's job runs with (``job_spec``), or None when it or
        the run's holding cannot be read (written by another version of the platform): the run
        then fails with the reason instead of stopping every pass at it."""
        try:
            Holding.of_run(run)
            return job_spec(run)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            first = str(exc).splitlines()[0][:300]
            self._fail_queued(run.id, f"its spec cannot be read by this version of the platform "
                                      f"({first}); submit it again")  # fmt: skip
            return None

    def _fail_queued(self, run_id: str, reason: str) -> None:
        if self._store.get_run(run_id).status is RunStatus.QUEUED:
            revoke_run_tokens(self._store, run_id, reason)
            self._store.update_run(run_id, status=RunStatus.FAILED, ended_at=utcnow(), error=reason)

    def _record_start(self, run_id: str, held: tuple[float, float]) -> None:
        """Open the run's usage interval: the CPUs and GPUs admitted for it."""
        cpus, gpus = held
        record_run_start(self._store, self._store.get_run(run_id), cpus, gpus)

    def _quota_gate(self, held: list[tuple[str, float, float]]) -> QuotaGate | None:
        """The quotas as they apply to this pass, given what the running runs hold (owner,
        CPUs, GPUs each); None when no quota is set."""
        quotas = self._store.list_quotas()
        if not quotas:
            return None
        groups: dict[str, tuple[str, ...]] = {}

        def groups_of(user: str) -> tuple[str, ...]:
            if user not in groups:
                try:
                    groups[user] = self._store.get_user(user).groups
                except DLPlatformError:  # the platform's own runs, a removed user
                    groups[user] = ()
            return groups[user]

        used = gpu_seconds_by_user(self._store, utcnow()) if QuotaGate.needs_gpu_usage(
            quotas) else {}  # fmt: skip
        return QuotaGate(quotas, groups_of, held, used)

    def _account(self, running: list[Run]) -> None:
        """End the usage intervals of runs that ended since the last pass, and raise the peak
        memory of the running ones: each pass for warm-pool runs (their members' pids are at
        hand), every ``MEMORY_SAMPLE_S`` for Ray Jobs (Ray's state API is asked for theirs).
        Writes only on a change: each write moves the store's generation, which empties the
        gateway's read cache."""
        ids = {r.id for r in running}
        if self._accounted - ids:
            self._store.close_ended_run_usage()
            self._peaks = {k: v for k, v in self._peaks.items() if k in ids}
        self._accounted = ids
        if not running:
            return
        busy = self._pool.status()["busy"]
        with_jobs = time.monotonic() - self._sampled_at >= MEMORY_SAMPLE_S
        if with_jobs:
            self._sampled_at = time.monotonic()
        raised: dict[str, int] = {}
        for run in running:
            if run.id in busy:
                pids = busy[run.id]
            elif with_jobs:
                pids = self._job_pids(run)
            else:
                continue
            rss = resident_bytes(p for p in pids if p is not None)
            if rss is not None and rss > self._peaks.get(run.id, 0):
                self._peaks[run.id] = raised[run.id] = rss
        if raised:
            self._store.record_peak_memory(raised)

    def _job_pids(self, run: Run) -> list[int]:
        """The driver and worker processes of a run's Ray job ([] for a pool run or when Ray's
        state API does not answer)."""
        if not run.name or run.name.startswith(POOL_NAME_PREFIX):
            return []
        try:
            info = self._jobs().get_job_info(run.name)
        except Exception:  # accounting never stops the scheduler
            return []
        # /proc is this node's: processes elsewhere are not measured (a pid there means nothing)
        here = ray.get_runtime_context().get_node_id()
        driver = info.driver_info
        pids = [int(driver.pid)] if driver and driver.pid and info.driver_node_id == here else []
        try:  # the job's actors: Ray Train's workers, Tune's trials
            actors = list_actors(dashboard_url(), limit=1000, raise_on_missing_output=False,
                                 filters=[("job_id", "=", info.job_id), ("state", "=", "ALIVE"),
                                          ("node_id", "=", here)])  # fmt: skip
            pids += [int(a.pid) for a in actors if a.pid]
        except Exception:
            pass
        return pids

    def _takes_pool(self, run: Run, spec: TrainingJobSpec, has_gpus: bool) -> bool:
        """Whether ``run`` runs on the warm pool; when it does, its members are held for it."""
        if run.kind != "train" or not eligible(spec, has_gpus):
            return False
        if spec.workers > self._pool.size or not self._pool.is_healthy:
            return False
        if sum(1 for node in ray.nodes() if node.get("Alive")) != 1 or not self._is_small(
            run, spec
        ):
            return False
        return self._pool.take(run.id, spec.workers)

    def _is_small(self, run: Run, spec: TrainingJobSpec) -> bool:
        # torch: this actor imports the training code for the pool's jobs (see warm_pool)
        from dlplatform import data  # with the next: the gateway imports this module too
        from dlplatform.train import runner  # torch and Ray Train: pool jobs only

        commit = self._store.get_commit(run.dataset_commit)
        names = spec.features or [n for n in data.arrow_schema(commit).names if n != spec.label]
        features = len(names)
        return runner.is_small(spec, commit.row_count, features)

    def _start_on_pool(self, run: Run) -> None:
        marks = {"submitted": run.created_at.timestamp(), "admitted": _startup.now()}
        self._store.update_run(
            run.id, status=RunStatus.RUNNING, started_at=utcnow(),
            name=f"{POOL_NAME_PREFIX}{run.id}", startup_json=_startup.dump(marks),
        )  # fmt: skip
        job = PoolJob(self._pool, self._backend, run.id, pool_log_path(self._settings.home, run.id),
                      on_end=self._pool_job_ended)  # fmt: skip
        self._pool_jobs[run.id] = job
        job.start()

    def _pool_job_ended(self, run_id: str) -> None:
        self._pool_jobs.pop(run_id, None)
        self._wake.set()  # its CPUs are free for the queue now

    def _reconcile(self, run: Run) -> None:
        if not run.name:
            return
        if run.name.startswith(POOL_NAME_PREFIX):
            if run.id not in self._pool_jobs:  # this actor restarted: its driver thread is gone
                self._fail_if_running(
                    run.id, "the platform stopped while it ran on the warm pool (its training "
                    "scheduler restarted and the pool's members with it); submit it again",
                )  # fmt: skip
            return
        try:
            info = self._jobs().get_job_info(run.name)
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                self._fail_if_running(
                    run.id,
                    f"the platform stopped while it ran: its Ray job {run.name} no longer "
                    "exists (the Ray head was restarted or lost)",
                )
            return
        status = str(getattr(info.status, "value", info.status))
        if status not in _TERMINAL_JOB:
            return
        # The driver is gone: give its last metadata writes a moment, then decide.
        time.sleep(0.5)
        tail = ""
        if status != "SUCCEEDED":
            try:
                lines = [
                    ln for ln in self._jobs().get_job_logs(run.name).splitlines() if ln.strip()
                ]
                tail = " | ".join(lines[-3:])
            except Exception:
                tail = ""
        message = (info.message or "no message").strip()
        if len(message) > 300:  # Ray appends the whole log tail; keep its first and last lines
            lines = [ln for ln in message.splitlines() if ln.strip()]
            message = f"{lines[0]} ... {lines[-1]}" if len(lines) > 1 else message[-300:]
        reason = f"the Ray job driver ended ({status}: {message})"
        if tail:
            reason += f"; last log lines: {tail}"
        self._fail_if_running(run.id, reason[-2000:])

    def _fail_if_running(self, run_id: str, reason: str) -> None:
        current = self._store.get_run(run_id)
        if current.status is RunStatus.RUNNING:
            self._store.update_run(run_id, status=RunStatus.FAILED, ended_at=utcnow(), error=reason)
            close_children(self._store, run_id, RunStatus.FAILED, f"its job failed: {reason}")
        revoke_run_tokens(self._store, run_id, "its Ray job ended")

    def _cancel(self, run_id: str, by: str) -> Run:
        run = self._store.get_run(run_id)
        if run.status.is_final:
            raise Conflict(f"job {run_id} already finished ({run.status.value}); cannot cancel")
        updated = self._store.update_run(
            run_id, status=RunStatus.CANCELLED, ended_at=utcnow(), error=f"cancelled by {by}"
        )
        close_children(self._store, run_id, RunStatus.CANCELLED, f"its job was cancelled by {by}")
        pool_job = getattr(self, "_pool_jobs", {}).get(run_id)
        if pool_job is not None:
            pool_job.cancel()  # kills its members; the pool starts others
        elif run.status is RunStatus.RUNNING and run.name:
            try:
                self._jobs().stop_job(run.name)
            except Exception as exc:
                self.errors.append(f"stop_job {run.name}: {exc}")
        self._wake.set()
        return updated

    def _logs(self, run_id: str, offset: int, limit: int) -> LogChunk:
        """At most ``limit`` bytes of the driver's output from byte ``offset`` (see ``_joblog``)."""
        run = self._store.get_run(run_id)
        if not run.name:
            return LogChunk("", offset, 0)
        if run.name.startswith(POOL_NAME_PREFIX):
            job = getattr(self, "_pool_jobs", {}).get(run_id)
            if job is not None and run.status.is_final:
                job.join(2.0)  # the run ended a moment before its log's last line is written
            pool_log = pool_log_path(self._settings.home, run_id)
            return read_log_range(pool_log, offset, limit) if pool_log.is_file() else (
                LogChunk("", offset, 0)
            )  # fmt: skip
        path = driver_log_path(run.name)
        if path is not None and path.is_file():  # the driver ran here, on the head: seek
            return read_log_range(path, offset, limit)
        try:  # not written yet, or the driver ran on another node: Ray's API has the whole log
            whole = str(self._jobs().get_job_logs(run.name))
        except Exception as exc:
            if "does not exist" in str(exc) or "404" in str(exc):
                whole = ""
            else:
                raise BackendUnavailable(f"cannot read the logs of {run.name}: {exc}") from exc
        return slice_log(whole.encode(), offset, limit)


def _import_training() -> None:
    """Import what a pool job's driver needs (torch among it) before the first job needs it."""
    from dlplatform import data  # noqa: F401  (this function's purpose: import ahead)
    from dlplatform.train import execute  # noqa: F401  (torch, Ray Train and the training code)


SchedulerActor = ray.remote(num_cpus=0, max_concurrency=8, max_restarts=-1)(_Scheduler)


class SchedulerClient(ActorClient):
    """Typed calls to the scheduler actor; reads wait out a restart of the actor."""

    what = "the training scheduler"

    def _get(
        self, send: Callable[[], Any], *, retry: bool = True, timeout_s: float | None = 60
    ) -> Any:
        return super()._get(send, retry=retry, timeout_s=timeout_s)

    def wake(self) -> None:
        self._handle.wake.remote()

    def capacity(self) -> dict[str, float]:
        return dict(self._get(self._handle.capacity.remote))

    def reasons(self) -> dict[str, str]:
        return dict(self._get(self._handle.reasons.remote))

    def cancel(self, run_id: str, by: str) -> Run:
        return self._ask(lambda: self._handle.cancel.remote(run_id, by), retry=False)  # type: ignore[no-any-return]

    def logs(self, run_id: str, offset: int, limit: int) -> LogChunk:
        return LogChunk(*self._ask(lambda: self._handle.logs.remote(run_id, offset, limit)))

    def tick(self) -> None:
        self._ask(self._handle.tick.remote, retry=False)

    def warm_pool(self) -> None:
        self._get(self._handle.warm_pool.remote)

    def pool_status(self) -> dict[str, Any]:
        """The warm pool: ``size``, ``free``, ``free_pids``, ``busy`` (run id -> member pids),
        ``healthy`` and ``last_error``."""
        return dict(self._get(self._handle.pool_status.remote))

    def recent_errors(self) -> list[str]:
        return list(self._get(self._handle.recent_errors.remote))


def connect_scheduler(settings: Settings, *, create: bool = True) -> SchedulerClient:
    """The scheduler of the platform in ``settings.namespace`` (started when missing).

    Raises:
        BackendUnavailable: Ray is not initialised, or the actor cannot be started.
    """
    values = json.loads(settings.model_dump_json(exclude={"token"}))
    handle = get_or_create(SchedulerActor, SCHEDULER_NAME, settings.namespace, (values,),
                           what=SchedulerClient.what, create=create)  # fmt: skip
    return SchedulerClient(handle)


def scheduler_for(backend: Backend, *, create: bool = True) -> SchedulerClient:
    """The scheduler serving ``backend`` (see ``Backend.on_cluster``).

    Raises:
        BackendUnavailable: the backend is not the running platform's, or the actor is missing
            (with ``create=False``) or does not answer.
    """
    backend.require_cluster("training")
    return connect_scheduler(backend.settings, create=create)


def stop_scheduler(settings: Settings) -> bool:
    """Kill the scheduler actor (its queue lives in the runs table). Returns whether one ran."""
    return kill_named_actor(SCHEDULER_NAME, settings.namespace)
