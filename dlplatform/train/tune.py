"""Hyperparameter search on Ray Tune: a training spec plus a search space, run as one queued job.

A tuning job is a run of kind ``tune`` that records what all its concurrent trials hold; the
training scheduler admits it like a training job and starts one Ray Job (``python -m
dlplatform.train.entrypoint --run-id <id>``) that runs the Tune driver (``tune_driver``). Each
Tune trial is a run of kind ``trial`` (parent: the tuning run) with its params and per-epoch
metrics; trials that ASHA stops early end ``STOPPED``. When all trials are done the best
finished trial's model is registered, with lineage
``commit → tune run → trial run → model version`` (and ``commit → trial run``).

This module holds the spec and the service functions; the SDK and the CLI import it for its
specs, so it loads neither Ray nor torch: the service functions import the training service and
the scheduler when called.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata import Run, RunStatus
from dlplatform.metadata.records import invalid_input, utcnow
from dlplatform.models.spec import ParamValue
from dlplatform.train._usercode import masked, may_see_env
from dlplatform.train.spec import TrainingJobSpec

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
        from ray import tune  # the SDK imports this module: only the Tune driver samples

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


def trial_spec(base: TrainingJobSpec, config: dict[str, Any]) -> TrainingJobSpec:
    """The training spec of one trial: ``base`` with the sampled values applied.

    Raises:
        ValueError: a sampled value the spec rejects (e.g. ``batch_size=0``).
    """
    fields = {k: plain_value(v) for k, v in config.items() if k in SPEC_FIELDS}
    params = {k: plain_value(v) for k, v in config.items() if k not in SPEC_FIELDS}
    data = base.model_dump()
    data.update(fields)
    data["params"] = {**base.params, **params}
    return TrainingJobSpec.model_validate(data)


def plain_value(value: Any) -> Any:
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
    import pyarrow as pa  # the SDK imports this module for its specs (no pyarrow there)

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
    from dlplatform import data  # see the module's docstring: loaded when a service is called
    from dlplatform.train import service  # Ray and torch: loaded when a service is called

    pinned_training, commit = service.prepare(backend, principal, spec.training)
    if spec.training.is_builtin:
        from dlplatform.models import builtin  # loads torch: the CLI imports this module

        for config in spec.representative_configs():
            builtin.check_params(spec.training.model, trial_spec(spec.training, config).params)
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
    from dlplatform.train._lifecycle import Holding, new_run_id  # see the module's docstring
    from dlplatform.train.scheduler import check_fits, scheduler_for  # Ray: see the docstring

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
    holding = Holding.of_spec(pinned.training, pinned.effective_concurrency)  # all trials at once
    try:
        check_fits(holding, scheduler.capacity())
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
        **holding.fields(),
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
        from dlplatform.train.service import waiting_reasons  # see the module's docstring

        reason = waiting_reasons(backend).get(run.id, "waiting for the scheduler")
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
    from dlplatform.train.service import cancel_run  # see the module's docstring

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
    """Block until the tuning job is final; ``on_update`` sees it after each change of the
    tuning run, and at least every ``poll_s`` (its trials change without it).

    Raises:
        TimeoutError: not final within ``timeout_s``.
    """
    from dlplatform.train._lifecycle import wait_final  # see the module's docstring

    return wait_final(
        backend, run_id, lambda: get_job(backend, principal, run_id), lambda job: job.run,
        timeout_s=timeout_s, poll_s=poll_s, on_update=on_update,
    )  # fmt: skip


def build_spec(**fields: Any) -> TuningJobSpec:
    """A spec from user input; ``InvalidInput`` (naming the field) instead of pydantic's error."""
    try:
        return TuningJobSpec(**fields)
    except ValidationError as exc:
        raise invalid_input(exc, "TuningJobSpec") from exc
