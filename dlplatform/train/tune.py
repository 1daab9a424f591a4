"""Hyperparameter search on Ray Tune: a training spec plus a search space, run as one queued job.

A tuning job is a run of kind ``tune``; the training scheduler admits it like a training job and
starts one Ray Job (``python -m dlplatform.train._tune_entry --run-id <id>``) that runs the Tune
driver. Each Tune trial is a *driver function* that builds and fits a ``TorchTrainer`` with the
same training code as a normal job (``runner.plan``/``build_datasets``/``fit``) and forwards
rank-0 metrics to Tune with ``TuneReportCallback`` (RAY_NOTES §2: ``Tuner(TorchTrainer)`` does
not work under Train V2). Every trial is a run of kind ``trial`` (parent: the tuning run) with
its params and per-epoch metrics; trials that ASHA stops early end ``STOPPED``. When all trials
are done the best finished trial's model is registered, with lineage
``commit → tune run → trial run → model version`` (and ``commit → trial run``).

Search-space values are distribution strings::

    uniform(a,b)   loguniform(a,b)   randint(a,b)   choice(x,y,...)   grid(x,y,...)

``randint`` excludes ``b`` (as Ray Tune does). ``grid`` values are all tried, ``samples`` times
each. Keys ``lr`` and ``batch_size`` set those spec fields; any other key is a model
hyperparameter (``params``).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import DLPlatformError, InvalidInput, NotFound
from dlplatform.metadata import LineageEdge, Run, RunStatus
from dlplatform.metadata.records import invalid_input, utcnow
from dlplatform.train._usercode import job_principal, masked, may_see_env
from dlplatform.train.spec import ParamValue, TrainingJobSpec

if TYPE_CHECKING:  # Settings' loader is heavy; the SDK imports this module for its specs
    from dlplatform.context import Backend

ACCEPTED_FORMS = (
    "uniform(LOW,HIGH), loguniform(LOW,HIGH) with 0<LOW, randint(LOW,HIGH) (HIGH excluded), "
    "choice(V1,V2,...), grid(V1,V2,...)"
)
SPEC_FIELDS = ("lr", "batch_size")
"""Search-space keys that set a field of the training spec (every other key is a param)."""
_FIXED_FIELDS = set(TrainingJobSpec.model_fields) - set(SPEC_FIELDS) - {"params"}
_DIST = re.compile(r"^\s*([a-z]+)\s*\((.*)\)\s*$", re.DOTALL)
_METRIC = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]{0,127}$")
MISSING_METRIC_KEY = "dlp_missing_metric"
TRIAL_DRIVER_CPU = 0.01
"""CPU share a trial's driver function holds (its TorchTrainer workers hold the rest)."""


# --- distributions ---------------------------------------------------------------------------


def _value(raw: str) -> ParamValue:
    text = raw.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)  # type: ignore[no-any-return]
        except ValueError:
            continue
    return text


def _number(raw: str, text: str) -> float:
    value = _value(raw)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{text!r}: {raw.strip()!r} is not a finite number; accepted forms: "
                         f"{ACCEPTED_FORMS}")  # fmt: skip
    return float(value)


@dataclass(frozen=True)
class Distribution:
    """One parsed search-space entry."""

    kind: Literal["uniform", "loguniform", "randint", "choice", "grid"]
    args: tuple[ParamValue, ...]

    def __str__(self) -> str:
        return f"{self.kind}({','.join(str(a) for a in self.args)})"

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "uniform":
            return tune.uniform(float(self.args[0]), float(self.args[1]))
        if self.kind == "loguniform":
            return tune.loguniform(float(self.args[0]), float(self.args[1]))
        if self.kind == "randint":
            return tune.randint(int(self.args[0]), int(self.args[1]))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return tune.grid_search(list(self.args))

    def representatives(self) -> tuple[ParamValue, ...]:
        """Values that bound what a trial can draw (checked against the model at submit)."""
        if self.kind in ("uniform", "loguniform"):
            return (float(self.args[0]), float(self.args[1]))
        if self.kind == "randint":
            return (int(self.args[0]), int(self.args[1]) - 1)
        return self.args

    @property
    def grid_size(self) -> int:
        return len(self.args) if self.kind == "grid" else 1


def parse_distribution(text: str) -> Distribution:
    """``"loguniform(1e-4,1e-1)"`` → ``Distribution``.

    Raises:
        ValueError: the text is not one of ``ACCEPTED_FORMS`` (the message lists them).
    """
    if not isinstance(text, str) or len(text) > 4096:
        raise ValueError(f"a distribution must be a string; accepted forms: {ACCEPTED_FORMS}")
    match = _DIST.fullmatch(text)
    if not match:
        raise ValueError(f"malformed distribution {text!r}; accepted forms: {ACCEPTED_FORMS}")
    kind, body = match.group(1), match.group(2)
    raw = [part for part in body.split(",")]
    if kind in ("uniform", "loguniform", "randint"):
        if len(raw) != 2 or not all(r.strip() for r in raw):
            raise ValueError(f"{text!r}: {kind} takes exactly two numbers (LOW,HIGH); "
                             f"accepted forms: {ACCEPTED_FORMS}")  # fmt: skip
        low, high = _number(raw[0], text), _number(raw[1], text)
        if not low < high:
            raise ValueError(f"{text!r}: LOW must be below HIGH; accepted forms: {ACCEPTED_FORMS}")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"{text!r}: loguniform needs 0 < LOW; accepted forms: "
                             f"{ACCEPTED_FORMS}")  # fmt: skip
        if kind == "randint":
            if low != int(low) or high != int(high):
                raise ValueError(f"{text!r}: randint takes integers; accepted forms: "
                                 f"{ACCEPTED_FORMS}")  # fmt: skip
            return Distribution("randint", (int(low), int(high)))
        return Distribution(kind, (low, high))  # type: ignore[arg-type]
    if kind in ("choice", "grid"):
        if not body.strip() or any(not r.strip() for r in raw):
            raise ValueError(f"{text!r}: {kind} takes one or more comma-separated values; "
                             f"accepted forms: {ACCEPTED_FORMS}")  # fmt: skip
        values = tuple(_value(r) for r in raw)
        if len(set(map(repr, values))) != len(values):
            raise ValueError(f"{text!r}: {kind} values must not repeat")
        return Distribution(kind, values)  # type: ignore[arg-type]
    raise ValueError(f"unknown distribution {kind!r} in {text!r}; accepted forms: {ACCEPTED_FORMS}")


def parse_space_arg(text: str) -> tuple[str, str]:
    """CLI ``KEY=DIST`` → (key, dist text), the distribution checked.

    Raises:
        InvalidInput: not ``KEY=DIST`` or a malformed distribution.
    """
    key, sep, dist = text.partition("=")
    if not sep or not key.strip():
        raise InvalidInput(f"--space {text!r} is not KEY=DIST; accepted forms: {ACCEPTED_FORMS}")
    try:
        parse_distribution(dist)
    except ValueError as exc:
        raise InvalidInput(f"--space {key.strip()}: {exc}") from None
    return key.strip(), dist.strip()


# --- the spec --------------------------------------------------------------------------------


class TuningJobSpec(BaseModel, frozen=True, extra="forbid"):
    """A hyperparameter search: a training spec, a search space, and how to search it."""

    training: TrainingJobSpec = Field(description="The training job each trial runs.")
    space: dict[str, str] = Field(
        description="KEY -> distribution, e.g. {'lr': 'loguniform(1e-4,1e-1)', "
        "'hidden': 'choice(64,128)'}. Keys lr and batch_size set spec fields; others are params."
    )
    samples: int = Field(
        default=8, ge=1, le=10_000, description="Trials drawn (times the grid size)."
    )
    concurrency: int = Field(default=2, ge=1, le=256, description="Trials running at once.")
    metric: str = Field(default="val_loss", description="The reported metric to optimise.")
    mode: Literal["min", "max"] = "min"
    scheduler: Literal["asha", "fifo"] = Field(
        default="asha", description="asha: stop poor trials early; fifo: run every trial fully."
    )
    grace_period: int = Field(default=1, ge=1, description="ASHA: epochs before any stop.")
    reduction_factor: int = Field(default=2, ge=2, le=16, description="ASHA: keep 1/N per rung.")

    @field_validator("space")
    @classmethod
    def _space(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError(f"the search space is empty: give KEY=DIST entries ({ACCEPTED_FORMS})")
        for key, dist in value.items():
            if key in _FIXED_FIELDS:
                raise ValueError(
                    f"{key!r} cannot be searched; spec fields in the space: {', '.join(SPEC_FIELDS)}"
                    " (other keys are model hyperparameters)"
                )
            if key == "params" or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}", key):
                raise ValueError(f"invalid search-space key {key!r}")
            try:
                parse_distribution(dist)
            except ValueError as exc:
                raise ValueError(f"space[{key}]: {exc}") from None
        return value

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        if not _METRIC.fullmatch(value):
            raise ValueError(f"invalid metric name {value!r}")
        return value

    @model_validator(mode="after")
    def _trial_specs(self) -> TuningJobSpec:
        for config in self.representative_configs():
            trial_spec(self.training, config)
        return self

    def distributions(self) -> dict[str, Distribution]:
        return {k: parse_distribution(v) for k, v in self.space.items()}

    def representative_configs(self) -> list[dict[str, ParamValue]]:
        """One config per bound value of each key (the others at their first value)."""
        dists = self.distributions()
        first = {k: d.representatives()[0] for k, d in dists.items()}
        return [{**first, k: v} for k, d in dists.items() for v in d.representatives()]

    @property
    def num_trials(self) -> int:
        return self.samples * math.prod(d.grid_size for d in self.distributions().values())

    @property
    def effective_concurrency(self) -> int:
        return min(self.concurrency, self.num_trials)

    def resource_spec(self) -> TrainingJobSpec:
        """A training spec holding what the whole search holds at once (the scheduler's unit)."""
        return self.training.model_copy(
            update={"workers": self.training.workers * self.effective_concurrency}
        )


def trial_spec(base: TrainingJobSpec, config: dict[str, Any]) -> TrainingJobSpec:
    """The training spec of one trial: ``base`` with the sampled values applied.

    Raises:
        ValueError: a sampled value the spec rejects (e.g. ``batch_size=0``).
    """
    fields = {k: _plain(v) for k, v in config.items() if k in SPEC_FIELDS}
    params = {k: _plain(v) for k, v in config.items() if k not in SPEC_FIELDS}
    data = base.model_dump()
    data.update(fields)
    data["params"] = {**base.params, **params}
    return TrainingJobSpec.model_validate(data)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def builtin_metrics(task: str, has_val: bool) -> tuple[str, ...]:
    """The metric names the built-in training loop reports each epoch."""
    names = ["loss", "score", "samples", "epoch_time_s", "throughput_samples_per_s", "restarts"]
    if has_val:
        names += ["val_loss", "val_accuracy"] if task == "classification" else ["val_loss",
                                                                                "val_rmse"]  # fmt: skip
    return tuple(names)


# --- what users see --------------------------------------------------------------------------


class TrialSummary(BaseModel, frozen=True, extra="forbid"):
    """One row of a tuning job's trial table."""

    id: str
    status: str
    params: dict[str, ParamValue]
    metric: float | None = Field(description="The metric's value at the trial's chosen epoch.")
    epochs: int = Field(description="Epochs reported.")
    error: str | None = None


class TuningJob(BaseModel, frozen=True, extra="forbid"):
    """A tuning job: its run, spec, trial table (sorted by the metric) and outcome."""

    run: Run
    spec: TuningJobSpec
    trials: list[TrialSummary] = Field(default_factory=list)
    best_trial: str | None = None
    best_metric: float | None = None
    model_version: str | None = None
    ray_job_id: str | None = None
    waiting_reason: str | None = None

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> str:
        return self.run.status.value


# --- service ---------------------------------------------------------------------------------


def _task_of(training: TrainingJobSpec, label_type: Any) -> str:
    import pyarrow as pa

    task = training.params.get("task")
    if isinstance(task, str):
        return task
    return "regression" if pa.types.is_floating(label_type) else "classification"


def prepare(
    backend: Backend, principal: Principal, spec: TuningJobSpec
) -> tuple[TuningJobSpec, Any]:
    """Validate the spec against its dataset and model; pin the dataset to a commit.

    Raises:
        InvalidInput: a trial spec the model rejects, or a metric the built-in model never
            reports (the message lists the ones it does).
        NotFound, PermissionDenied: see ``dlplatform.train.service.prepare``.
    """
    from dlplatform import data
    from dlplatform.train import service

    pinned_training, commit = service.prepare(backend, principal, spec.training)
    if spec.training.is_builtin:
        from dlplatform.train import models

        for config in spec.representative_configs():
            models.check_params(spec.training.model, trial_spec(spec.training, config).params)
        schema = data.arrow_schema(commit)
        task = _task_of(spec.training, schema.field(spec.training.label).type)
        names = builtin_metrics(task, spec.training.validation_fraction > 0)
        if spec.metric not in names:
            raise InvalidInput(
                f"metric {spec.metric!r} is never reported by the built-in model "
                f"{spec.training.model} ({task}); it reports: {', '.join(names)}"
            )
    return spec.model_copy(update={"training": pinned_training}), commit


def submit(backend: Backend, principal: Principal, spec: TuningJobSpec) -> TuningJob:
    """Validate, pin and queue a tuning job; the training scheduler starts it.

    Raises:
        InvalidInput: bad space/metric, more trials than ``Settings.max_tuning_trials``, or
            the search needs more than the cluster has.
        PermissionDenied, NotFound, BackendUnavailable: as for a training job.
    """
    from dlplatform.train.scheduler import check_fits, scheduler_for
    from dlplatform.train.service import new_run_id

    authorize(
        backend.store, principal, Permission.TRAIN_SUBMIT, f"dataset:{spec.training.dataset_name}"
    )
    cap = backend.settings.max_tuning_trials
    if spec.num_trials > cap:
        raise InvalidInput(
            f"the search has {spec.num_trials} trials ({spec.samples} samples x the grid's "
            f"size); at most {cap} are allowed (max_tuning_trials): lower samples or the grid"
        )
    pinned, commit = prepare(backend, principal, spec)
    scheduler = scheduler_for(backend)
    try:
        check_fits(pinned.resource_spec(), scheduler.capacity())
    except InvalidInput as exc:
        raise InvalidInput(
            f"{pinned.effective_concurrency} concurrent trials x {spec.training.workers} "
            f"workers do not fit: {exc.message}; lower the concurrency or workers"
        ) from None
    run = Run(
        id=new_run_id(),
        kind="tune",
        owner=principal.name,
        status=RunStatus.QUEUED,
        priority=spec.training.priority,
        spec_json=pinned.model_dump_json(),
        dataset_commit=commit.id,
        created_at=utcnow(),
        tags=spec.training.tags,
    )
    backend.store.create_run(run)
    backend.store.log_params(
        run.id,
        {**{f"space.{k}": v for k, v in spec.space.items()}, "samples": spec.samples,
         "concurrency": spec.concurrency, "metric": spec.metric, "mode": spec.mode,
         "scheduler": spec.scheduler, "dataset": pinned.training.dataset,
         "model": spec.training.model},
    )  # fmt: skip
    audit(backend.store, principal, "tune.submit", f"run:{run.id}", pinned.training.dataset)
    scheduler.wake()
    return _view(backend, principal, run)


def _get_tune_run(backend: Backend, run_id: str) -> Run:
    run = backend.store.get_run(run_id)
    if run.kind != "tune":
        raise NotFound(f"tuning job {run_id!r} does not exist")
    return run


def trial_rows(backend: Backend, run: Run, spec: TuningJobSpec) -> list[TrialSummary]:
    """The trials of a tuning run, best first by the metric (trials without a value last)."""
    rows = []
    for trial in backend.store.list_runs(kind="trial", parent_id=run.id, limit=100_000):
        result = json.loads(trial.result_json) if trial.result_json else {}
        points = backend.store.get_metrics(trial.id, spec.metric)
        value = result.get("metric")
        if value is None and points:
            values = [p.value for p in points]
            value = min(values) if spec.mode == "min" else max(values)
        epochs = len({p.step for p in backend.store.get_metrics(trial.id, "loss")})
        params = {k[len("space.") :]: _value(v) for k, v in backend.store.get_params(trial.id).items()
                  if k.startswith("space.")}  # fmt: skip
        rows.append(
            TrialSummary(
                id=trial.id, status=trial.status.value, params=params,
                metric=None if value is None or math.isnan(value) else float(value),
                epochs=epochs, error=trial.error,
            )
        )  # fmt: skip
    sign = 1.0 if spec.mode == "min" else -1.0
    return sorted(rows, key=lambda r: (r.metric is None, sign * (r.metric or 0.0), r.id))


def _view(backend: Backend, viewer: Principal, run: Run) -> TuningJob:
    """The job as ``viewer`` sees it: env var values masked unless it owns the job or is an
    admin (in the spec and in the run's ``spec_json`` alike)."""
    spec = TuningJobSpec.model_validate_json(run.spec_json)
    training = spec.training if may_see_env(viewer, run) else masked(spec.training)
    if training is not spec.training:
        spec = spec.model_copy(update={"training": training})
        run = run.model_copy(update={"spec_json": spec.model_dump_json()})
    result = json.loads(run.result_json) if run.result_json else {}
    reason = None
    if run.status is RunStatus.QUEUED:
        from dlplatform.train.service import _reasons

        reason = _reasons(backend).get(run.id, "waiting for the scheduler")
    return TuningJob(
        run=run, spec=spec, trials=trial_rows(backend, run, spec),
        best_trial=result.get("best_trial"), best_metric=result.get("best_metric"),
        model_version=result.get("model_version"), ray_job_id=run.name or None,
        waiting_reason=reason,
    )  # fmt: skip


def get_job(backend: Backend, principal: Principal, run_id: str) -> TuningJob:
    """One tuning job with its trial table (sorted by the metric)."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    return _view(backend, principal, _get_tune_run(backend, run_id))


def list_jobs(
    backend: Backend, principal: Principal, *, status: list[str] | None = None, limit: int = 100
) -> list[TuningJob]:
    """Tuning jobs, newest first."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "tuning-jobs")
    if status:
        bad = [s for s in status if s not in RunStatus.__members__]
        if bad:
            raise InvalidInput(f"unknown status {', '.join(bad)}")
    runs = backend.store.list_runs(kind="tune", status=status, limit=limit)
    return [_view(backend, principal, r) for r in runs]


def cancel_job(backend: Backend, principal: Principal, run_id: str) -> TuningJob:
    """Cancel a queued or running tuning job: its Ray job stops, and with it every trial.

    Raises:
        PermissionDenied: not the owner (and not an admin).
        Conflict: already finished.
    """
    from dlplatform.train.service import cancel_run

    authorize(backend.store, principal, Permission.TRAIN_SUBMIT, f"run:{run_id}")
    run = cancel_run(backend, principal, _get_tune_run(backend, run_id), "tune")
    return _view(backend, principal, run)


def wait_job(
    backend: Backend,
    principal: Principal,
    run_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    on_update: Callable[[TuningJob], None] | None = None,
) -> TuningJob:
    """Block until the tuning job is final.

    Raises:
        TimeoutError: not final within ``timeout_s``.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = get_job(backend, principal, run_id)
        if on_update is not None:
            on_update(job)
        if job.run.status.is_final:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"tuning job {run_id} is still {job.status} after {timeout_s} s")
        time.sleep(poll_s)


def build_spec(**fields: Any) -> TuningJobSpec:
    """A spec from user input; ``InvalidInput`` (naming the field) instead of pydantic's error."""
    try:
        return TuningJobSpec(**fields)
    except ValidationError as exc:
        raise invalid_input(exc, "TuningJobSpec") from exc


# --- the Tune driver (runs in the job's Ray Job driver) -------------------------------------


def trial_run_id(tune_run_id: str, trial_id: str) -> str:
    return f"{tune_run_id}.{trial_id}"


def _metric_guard(metric: str) -> Any:
    from ray.tune.integration.ray_train import TuneReportCallback

    class MetricGuard(TuneReportCallback):  # type: ignore[misc]
        """Forwards rank-0 reports to Tune; a report without the metric stops the whole search."""

        def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                         checkpoint: Any) -> None:  # fmt: skip
            if metrics and metric not in metrics[0]:
                keys = ",".join(sorted(str(k) for k in metrics[0]))
                metrics = [{**metrics[0], metric: float("nan"), MISSING_METRIC_KEY: keys}]
            super().after_report(run_context, metrics, checkpoint)

    return MetricGuard()


def _trial_fn(config: dict[str, Any], ctx: dict[str, Any]) -> None:
    """One trial (a Tune function trainable): record the trial run, fit, keep its weights."""
    from ray import tune

    from dlplatform.config import Settings
    from dlplatform.errors import AlreadyExists
    from dlplatform.metadata import ArtifactRecord
    from dlplatform.train import runner
    from dlplatform.train.entrypoint import _backend

    backend = _backend(Settings(**ctx["settings"]))
    store = backend.store
    run_id = trial_run_id(ctx["tune_run_id"], tune.get_context().get_trial_id())
    base = TrainingJobSpec.model_validate_json(ctx["training"])
    spec = trial_spec(base, config)
    now = utcnow()
    try:
        store.create_run(Run(
            id=run_id, kind="trial", parent_id=ctx["tune_run_id"], name=run_id,
            owner=ctx["owner"], status=RunStatus.RUNNING, spec_json=spec.model_dump_json(),
            dataset_commit=ctx["commit"].id, code_version=ctx["code_version"], created_at=now,
            started_at=now,
        ))  # fmt: skip
        store.add_edges([
            LineageEdge(src=f"run:{ctx['tune_run_id']}", dst=f"run:{run_id}", relation="trial"),
            LineageEdge(src=f"commit:{ctx['commit'].id}", dst=f"run:{run_id}",
                        relation="trained_on"),
        ])  # fmt: skip
        store.log_params(run_id, {
            **{f"space.{k}": _plain(v) for k, v in config.items()},
            **{f"param.{k}": v for k, v in spec.params.items()},
            "lr": spec.lr, "batch_size": spec.batch_size, "epochs": spec.epochs,
            "workers": spec.workers, "model": spec.model, "dataset": spec.dataset,
        })  # fmt: skip
    except AlreadyExists:  # a retried trial keeps its record
        store.update_run(run_id, status=RunStatus.RUNNING, ended_at=None, error=None)
    train_plan = runner.plan(spec, ctx["schema"], ctx["label_values"], ctx["first_row"])
    datasets = runner.build_inputs(backend, ctx["commit"], spec, train_plan)
    try:
        outcome = runner.fit(
            run_id=run_id, spec=spec, train_plan=train_plan, datasets=datasets, store=store,
            artifacts=backend.artifacts, use_gpu=ctx["use_gpu"],
            extra_callbacks=(_metric_guard(ctx["metric"]),),
        )  # fmt: skip
    except Exception as exc:
        if not store.get_run(run_id).status.is_final:  # a cancelled search keeps CANCELLED
            store.update_run(run_id, status=RunStatus.FAILED, ended_at=utcnow(),
                             error=runner.failure_message(exc))  # fmt: skip
        raise
    result: dict[str, Any] = {"metrics": outcome.metrics, "final_metrics": outcome.final_metrics}
    value = outcome.metrics.get(ctx["metric"], outcome.final_metrics.get(ctx["metric"]))
    result["metric"] = value
    if outcome.checkpoint_dir is not None:
        try:
            weights = outcome.checkpoint_dir / runner.CHECKPOINT_MODEL
            if weights.is_file():
                ref = backend.artifacts.put_file(weights)
                store.record_artifact(ArtifactRecord(
                    sha256=ref.sha256, size_bytes=ref.size_bytes, kind="file",
                    purpose="checkpoint", created_at=utcnow(),
                ))  # fmt: skip
                result.update(weights_sha256=ref.sha256,
                              model_config=train_plan.model_config,
                              signature=train_plan.signature.model_dump(mode="json"))  # fmt: skip
        finally:
            shutil.rmtree(outcome.checkpoint_dir, ignore_errors=True)
    current = store.get_run(run_id)
    if not current.status.is_final:
        store.update_run(run_id, status=RunStatus.SUCCEEDED, ended_at=utcnow(),
                         result_json=json.dumps(result, default=str))  # fmt: skip


def _status_callback(store: Any, tune_run_id: str, scheduler: str) -> Any:
    from ray import tune

    class TrialStatus(tune.Callback):  # type: ignore[misc]
        """Runs in the Tune driver: records how each trial ended."""

        def __init__(self) -> None:
            self.missing: tuple[str, str] | None = None

        def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                            result: dict[str, Any], **info: Any) -> None:  # fmt: skip
            if MISSING_METRIC_KEY in result and self.missing is None:
                self.missing = (trial_run_id(tune_run_id, trial.trial_id),
                                str(result[MISSING_METRIC_KEY]))  # fmt: skip

        def _close(self, trial: Any, status: RunStatus, error: str | None) -> None:
            run_id = trial_run_id(tune_run_id, trial.trial_id)
            try:
                current = store.get_run(run_id)
            except NotFound:
                return
            if not current.status.is_final:
                store.update_run(run_id, status=status, ended_at=utcnow(), error=error)

        def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any,
                              **info: Any) -> None:  # fmt: skip
            epochs = int((trial.last_result or {}).get("training_iteration", 0))
            if self.missing is not None:
                self._close(trial, RunStatus.CANCELLED, "the search stopped: a trial did not "
                            "report the metric")  # fmt: skip
            else:
                self._close(
                    trial,
                    RunStatus.STOPPED,
                    f"stopped early by {scheduler.upper()} after {epochs} epoch(s)",
                )

        def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                           **info: Any) -> None:  # fmt: skip
            self._close(trial, RunStatus.FAILED, "the trial failed (see its Ray Tune log)")

    return TrialStatus()


def _asha_class() -> Any:
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class FinishingASHA(ASHAScheduler):  # type: ignore[misc]
        """ASHA that never stops a trial at its last epoch: a trial that trained to the end
        keeps running until it has saved its weights (it still counts in the last rung)."""

        def __init__(self, last_epoch: int, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._last_epoch = last_epoch

        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if int(result.get("training_iteration", 0)) >= self._last_epoch:
                return str(TrialScheduler.CONTINUE)
            return str(decision)

    return FinishingASHA


def _missing_stopper(guard: Any) -> Any:
    from ray import tune

    class MissingMetricStopper(tune.Stopper):  # type: ignore[misc]
        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return MISSING_METRIC_KEY in result

        def stop_all(self) -> bool:
            return guard.missing is not None

    return MissingMetricStopper()


def _remove_leftover_groups() -> None:
    """Remove the placement groups this job still holds once every trial has ended.

    A trial that ASHA stops is killed with its TorchTrainer controller; the worker group's
    placement group can outlive it (Train V2 removes it from a cleaner actor that dies with the
    job), holding its CPUs forever and starving the next job's Ray Data tasks.
    """
    import ray
    from ray.util.placement_group import PlacementGroup
    from ray.util.state import list_placement_groups

    job = ray.get_runtime_context().get_job_id()
    try:
        groups = list_placement_groups(
            filters=[("creator_job_id", "=", job), ("state", "=", "CREATED")], limit=1000
        )
        for group in groups:
            pg_id = ray.PlacementGroupID(bytes.fromhex(group.placement_group_id))
            ray.util.remove_placement_group(PlacementGroup(pg_id))
    except Exception as exc:  # best effort: the job's result does not depend on it
        print(f"could not remove leftover placement groups: {exc}", flush=True)


def execute(backend: Backend, run_id: str) -> Run:
    """Run the search to the end, register the best trial's model, record the outcome.

    Never raises for a training failure: the tuning run ends FAILED with the reason.
    """
    import ray
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from dlplatform import data
    from dlplatform.train import registry, runner
    from dlplatform.train.entrypoint import _finish, code_version
    from dlplatform.train.scheduler import close_children

    store = backend.store
    run = store.get_run(run_id)
    if run.status.is_final:
        return run
    store.update_run(run_id, status=RunStatus.RUNNING,
                     **({} if run.started_at else {"started_at": utcnow()}))  # fmt: skip
    try:
        spec = TuningJobSpec.model_validate_json(run.spec_json)
        training = spec.training
        principal = job_principal(backend, run, training)  # before user code is imported
        commit = data.resolve(backend, principal, training.dataset)
        schema = data.arrow_schema(commit)
        label_values = data.to_arrow(backend, commit, columns=[training.label]).column(0)
        first_row = None
        if training.model == "cnn" and training.features and len(training.features) == 1:
            table = data.to_arrow(backend, commit, columns=[training.features[0]])
            first_row = table.slice(0, 1).to_pylist()[0] if table.num_rows else None
        runner.plan(training, schema, label_values, first_row)  # fail before any trial starts
        code = code_version(training)
        store.update_run(run_id, dataset_commit=commit.id, code_version=code)
        store.add_edges(
            [LineageEdge(src=f"commit:{commit.id}", dst=f"run:{run_id}", relation="trained_on")]
        )
        use_gpu = bool(training.use_gpu if training.use_gpu is not None
                       else ray.cluster_resources().get("GPU", 0) > 0)  # fmt: skip
        ctx = {
            "settings": json.loads(backend.settings.model_dump_json(exclude={"token"})),
            "tune_run_id": run_id, "training": training.model_dump_json(), "owner": run.owner,
            "commit": commit, "schema": schema, "label_values": label_values,
            "first_row": first_row, "use_gpu": use_gpu, "metric": spec.metric,
            "code_version": code,
        }  # fmt: skip
        if spec.scheduler == "asha":
            sched: Any = _asha_class()(
                training.epochs,
                time_attr="training_iteration", max_t=training.epochs,
                grace_period=min(spec.grace_period, training.epochs),
                reduction_factor=spec.reduction_factor,
            )  # fmt: skip
        else:
            sched = FIFOScheduler()
        status_cb = _status_callback(store, run_id, spec.scheduler)
        storage_path, storage_fs = runner.checkpoint_storage(backend.artifacts)
        # The trial driver only waits on its TorchTrainer: it holds a token CPU share (Tune
        # refuses an empty request); the workers hold the real CPUs.
        trainable = tune.with_resources(
            tune.with_parameters(_trial_fn, ctx=ctx), {"CPU": TRIAL_DRIVER_CPU}
        )
        tuner = tune.Tuner(
            trainable,
            param_space={k: d.to_tune() for k, d in spec.distributions().items()},
            tune_config=tune.TuneConfig(
                metric=spec.metric, mode=spec.mode, num_samples=spec.samples,
                max_concurrent_trials=spec.effective_concurrency, scheduler=sched,
                trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(
                name=run_id, storage_path=storage_path, storage_filesystem=storage_fs,
                callbacks=[status_cb], stop=_missing_stopper(status_cb), verbose=0,
            ),
        )  # fmt: skip
        try:
            grid = tuner.fit()
        finally:
            _remove_leftover_groups()
        if status_cb.missing is not None:
            trial_id, keys = status_cb.missing
            message = (f"metric {spec.metric!r} is not reported by the training code (trial "
                       f"{trial_id} reported: {keys}); the search was stopped")  # fmt: skip
            close_children(store, run_id, RunStatus.CANCELLED, "the search stopped")
            return _finish(backend, run_id, RunStatus.FAILED, error=message)
        errors = [str(r.error) for r in grid if r.error is not None]
        close_children(store, run_id, RunStatus.STOPPED, "stopped before it finished")
        trials = store.list_runs(kind="trial", parent_id=run_id, limit=100_000)
        done = []
        for t in trials:
            res = json.loads(t.result_json) if t.result_json else {}
            value = res.get("metric")
            ok = t.status is RunStatus.SUCCEEDED and res.get("weights_sha256")
            if ok and value is not None and not math.isnan(float(value)):
                done.append((float(value), t, res))
        counts = {s.value: sum(1 for t in trials if t.status is s) for s in RunStatus}
        summary: dict[str, Any] = {"trials": {k: v for k, v in counts.items() if v}}
        if not done:
            first = errors[0].splitlines()[-1] if errors else "no trial reported a checkpoint"
            return _finish(backend, run_id, RunStatus.FAILED,
                           result_json=json.dumps(summary),
                           error=f"no trial finished with a model: {first}"[:2000])  # fmt: skip
        done.sort(key=lambda x: x[0] if spec.mode == "min" else -x[0])
        value, best, res = done[0]
        best_spec = TrainingJobSpec.model_validate_json(best.spec_json)
        with tempfile.TemporaryDirectory(prefix="dlp-tune-") as tmp:
            weights = backend.artifacts.get_file(res["weights_sha256"], Path(tmp) / "model.pt")
            builder = registry.BUILTIN_BUILDER if training.is_builtin else training.model_factory
            from dlplatform.train.spec import ModelSignature

            mv = registry.register_version(
                backend, run=best, model_name=training.registry_name, state_dict_path=weights,
                model_config=res["model_config"],
                signature=ModelSignature.model_validate(res["signature"]), builder=builder,
                metrics=res.get("metrics", {}),
                params={**best_spec.params, "epochs": best_spec.epochs,
                        "batch_size": best_spec.batch_size, "lr": best_spec.lr,
                        "seed": best_spec.seed, "workers": best_spec.workers},
                dataset_commit=commit.id, dataset_version_hash=commit.version_hash,
                code_version=code,
            )  # fmt: skip
        summary.update(best_trial=best.id, best_metric=value,
                       model_version=f"{mv.model}@{mv.version}", metric=spec.metric)  # fmt: skip
        return _finish(backend, run_id, RunStatus.SUCCEEDED, result_json=json.dumps(summary))
    except DLPlatformError as exc:
        close_children(store, run_id, RunStatus.CANCELLED, "the search failed")
        return _finish(backend, run_id, RunStatus.FAILED, error=exc.message[:2000])
    except Exception as exc:
        close_children(store, run_id, RunStatus.CANCELLED, "the search failed")
        return _finish(backend, run_id, RunStatus.FAILED,
                       error=f"{type(exc).__name__}: {exc}"[:2000])  # fmt: skip
