"""What a caller asks the trainer for (``TrainingJobSpec``) and what it gets back (``TrainingJob``).

A spec is validated once, when it is built. ``dataset`` is ``NAME`` or ``NAME@COMMIT``; the
service pins ``NAME`` to the dataset's head commit at submit time, so a queued job always trains
on the exact version it was submitted against.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from dlplatform.metadata.records import MetricPoint, Run, check_id, check_name
from dlplatform.models.spec import BUILTIN_MODELS, ParamValue, is_code_path
from dlplatform.usage import UsageTotal

_METRIC_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}")
_PARAM_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def split_dataset_ref(ref: str) -> tuple[str, str | None]:
    """``"name@commit"`` → ``("name", "commit")``; ``"name"`` → ``("name", None)``.

    Raises:
        ValueError: the name or the commit id is malformed.
    """
    name, sep, commit = ref.partition("@")
    check_name(name)
    if sep:
        check_id(commit)
        return name, commit
    return name, None


class TrainingJobSpec(BaseModel, frozen=True, extra="forbid"):
    """A training job: which data, which model, how to scale, how long to train."""

    dataset: str = Field(description="NAME or NAME@COMMIT; NAME is pinned to the head at submit.")
    label: str = Field(min_length=1, max_length=256, description="The label column.")
    features: tuple[str, ...] | None = Field(
        default=None, description="Feature columns; default: every column but the label."
    )
    model: str = Field(
        default="mlp",
        description="A built-in model (mlp, cnn, text) or user code 'package.module:train_fn' "
        "(a Ray Train loop taking the config dict).",
    )
    model_factory: str | None = Field(
        default=None,
        description="User code only: 'module:fn' building the torch module from the config "
        "(needed to load the registered weights back).",
    )
    runtime_env: dict[str, Any] | None = Field(
        default=None,
        description="User code only: Ray runtime_env. 'pip' (a list of requirements) and "
        "'env_vars' (NAME -> string; shown masked to all but the job's owner and admins); any "
        "other key (working_dir, py_modules, conda, ...) is admin-only.",
    )
    params: dict[str, ParamValue] = Field(
        default_factory=dict, description="Hyperparameters passed to the model (e.g. hidden=64)."
    )
    workers: int = Field(default=2, ge=1, le=256, description="Ray Train workers (DDP ranks).")
    use_gpu: bool | None = Field(
        default=None, description="None: use GPUs when the cluster has them."
    )
    resources_per_worker: dict[str, float] | None = Field(
        default=None, description='Per-worker resources, default {"CPU": 1} (+ GPU: 1 on GPU).'
    )
    epochs: int = Field(default=3, ge=1, le=10_000)
    batch_size: int = Field(default=64, ge=1, le=1_000_000)
    lr: float = Field(default=1e-3, gt=0, le=10)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    validation_fraction: float = Field(default=0.2, ge=0, lt=1)
    checkpoint_every: int = Field(default=1, ge=1, description="Checkpoint every N epochs.")
    max_failures: int = Field(default=1, ge=0, le=100, description="Worker-group restarts allowed.")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first.")
    tags: tuple[str, ...] = ()
    model_name: str | None = Field(
        default=None, description="Registry name; default '<dataset>-<model>'."
    )
    fault_injection_kill_at_epoch: int | None = Field(
        default=None,
        ge=0,
        description="Testing only: the rank-1 worker (rank 0 with one worker) SIGKILLs its own "
        "process once per run (a marker file in the node temp dir), at the start of this epoch, "
        "to exercise fault tolerance.",
    )

    @field_validator("dataset")
    @classmethod
    def _dataset_ref(cls, value: str) -> str:
        split_dataset_ref(value)
        return value

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str) -> str:
        if value in BUILTIN_MODELS or is_code_path(value):
            return value
        raise ValueError(
            f"unknown model {value!r}: use one of {', '.join(BUILTIN_MODELS)} "
            "or user code 'module:function'"
        )

    @field_validator("model_factory")
    @classmethod
    def _factory(cls, value: str | None) -> str | None:
        if value is not None and not is_code_path(value):
            raise ValueError(f"model_factory {value!r} is not 'module:function'")
        return value

    @field_validator("runtime_env")
    @classmethod
    def _env_vars(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        env = (value or {}).get("env_vars")
        if env is None:
            return value
        if not isinstance(env, dict):
            raise ValueError("runtime_env.env_vars must map variable names to strings")
        for name, text in env.items():
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(f"runtime_env.env_vars: invalid variable name {name[:80]!r}")
            if not isinstance(text, str):
                raise ValueError(f"runtime_env.env_vars[{name}] must be a string")
        return value

    @field_validator("params")
    @classmethod
    def _param_keys(cls, value: dict[str, ParamValue]) -> dict[str, ParamValue]:
        for key in value:
            if not _PARAM_KEY.fullmatch(key):
                raise ValueError(f"invalid hyperparameter name {key!r}")
        return value

    @field_validator("model_name")
    @classmethod
    def _registry_name(cls, value: str | None) -> str | None:
        return None if value is None else check_name(value)

    @field_validator("resources_per_worker")
    @classmethod
    def _resources(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is not None:
            for key, amount in value.items():
                if amount < 0:
                    raise ValueError(f"resource {key!r} must not be negative")
        return value

    @model_validator(mode="after")
    def _user_code_only_fields(self) -> TrainingJobSpec:
        if self.is_builtin and (self.runtime_env is not None or self.model_factory is not None):
            raise ValueError("runtime_env and model_factory are for user-code models only")
        if self.features is not None and self.label in self.features:
            raise ValueError(f"label {self.label!r} is also listed as a feature")
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError("features must not repeat")
        return self

    @property
    def is_builtin(self) -> bool:
        return self.model in BUILTIN_MODELS

    @property
    def dataset_name(self) -> str:
        return split_dataset_ref(self.dataset)[0]

    @property
    def dataset_commit(self) -> str | None:
        return split_dataset_ref(self.dataset)[1]

    @property
    def registry_name(self) -> str:
        """The model name the run registers under."""
        if self.model_name:
            return self.model_name
        base = self.model if self.is_builtin else self.model.rsplit(":", 1)[1].lower()
        name = re.sub(r"[^a-z0-9._-]", "-", f"{self.dataset_name}-{base}")[:63]
        return check_name(name)

    def cpus_per_worker(self) -> float:
        return float((self.resources_per_worker or {}).get("CPU", 1.0))

    def cpus_needed(self) -> float:
        """CPUs the job's workers hold while it runs (the scheduler's admission unit)."""
        return self.workers * self.cpus_per_worker()


JobState = Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"]


class TrainingJob(BaseModel, frozen=True, extra="forbid"):
    """A training job as shown to users: the run record plus its place in the queue."""

    run: Run
    spec: TrainingJobSpec
    queue_position: int | None = Field(
        default=None, description="1 = next to start; None when not queued."
    )
    waiting_reason: str | None = Field(default=None, description="Why a queued job waits.")
    ray_job_id: str | None = Field(
        default=None, description="The Ray Job's submission id; None on the warm pool."
    )
    model_version: str | None = Field(
        default=None, description="'name@N' of the registered version once SUCCEEDED."
    )
    startup: dict[str, float] = Field(
        default_factory=dict,
        description="Seconds spent in each stage from submit to the first training step, in "
        "order, and their 'total' (see dlplatform.train._startup.STAGES); filled in as the "
        "job starts.",
    )
    usage: UsageTotal | None = Field(
        default=None,
        description="What the job held so far: CPU/GPU-seconds as admitted, wall seconds, peak "
        "memory sampled (see dlplatform.usage); set on a single job's view once it started.",
    )

    @property
    def id(self) -> str:
        return self.run.id

    @property
    def status(self) -> str:
        return self.run.status.value


class Difference(BaseModel, frozen=True, extra="forbid"):
    epoch: int
    key: str
    original: float | None = Field(description="None: the original has no value there.")
    reproduced: float | None = Field(description="None: the re-run has no value there.")


class Reproduction(BaseModel, frozen=True, extra="forbid"):
    """How a re-run compares with the run it reproduces."""

    original: str
    reproduction: str
    status: Literal["pending", "identical", "within_tolerance", "different", "failed"] = Field(
        description="pending: the re-run has not ended; failed: it did not succeed (its error "
        "is in `reason`)."
    )
    tolerance: float = Field(description="Relative tolerance used: 0 on CPU, GPU_RTOL on GPU.")
    epochs: int = Field(description="Epochs compared.")
    keys: tuple[str, ...] = Field(description="Metric keys compared.")
    first_difference: Difference | None = None
    max_relative_difference: float = 0.0
    code_changed: bool = Field(description="The re-run ran other code (allow_code_change).")
    reason: str = ""


MAX_WATCH_S = 30.0
"""The longest one ``GET /training/jobs/{id}/watch`` waits for a change (a client then asks
again)."""


class JobChange(BaseModel, frozen=True, extra="forbid"):
    """The answer of ``GET /training/jobs/{id}/watch``: the job's change counter."""

    version: int = Field(description="Changes with each new metric point or status; pass it "
                         "back as ``known`` to wait for the next change.")  # fmt: skip


MAX_METRIC_POINTS = 100_000


class MetricBatch(BaseModel, frozen=True, extra="forbid"):
    """Metric points of one run as columns (``POST /runs/{id}/metrics``): point ``i`` is
    ``keys[i]``, ``values[i]`` at ``steps[i]`` (0 when omitted), logged at ``timestamps[i]``
    (unix seconds; now when omitted)."""

    keys: list[str] = Field(min_length=1, max_length=MAX_METRIC_POINTS)
    values: list[float] = Field(min_length=1, max_length=MAX_METRIC_POINTS)
    steps: list[int] | None = Field(default=None, max_length=MAX_METRIC_POINTS)
    timestamps: list[float] | None = Field(default=None, max_length=MAX_METRIC_POINTS)

    @model_validator(mode="after")
    def _columns_match(self) -> MetricBatch:
        n = len(self.keys)
        for name in ("values", "steps", "timestamps"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"{name} has {len(column)} entries, keys has {n}")
        bad = next((k for k in self.keys if not _METRIC_KEY.fullmatch(k)), None)
        if bad is not None:
            raise ValueError(f"invalid metric key {bad[:80]!r}: 1-128 of A-Z a-z 0-9 _ . / -")
        return self


class MetricsLogged(BaseModel, frozen=True, extra="forbid"):
    run_id: str
    count: int


MAX_LOG_CHUNK_BYTES = 256 * 1024
"""The most bytes of a job's log one ``GET /training/jobs/{id}/logs`` answers."""
MAX_METRICS_PAGE = 10_000
"""The most metric points one ``GET /training/jobs/{id}/metrics`` answers."""


class JobLogs(BaseModel, frozen=True, extra="forbid"):
    """A chunk of a job's log: ``GET /training/jobs/{id}/logs?offset=N``, at most
    ``MAX_LOG_CHUNK_BYTES`` from byte ``N`` (cut on a whole UTF-8 character)."""

    text: str
    offset: int = Field(ge=0, description="The byte offset ``text`` starts at.")
    next_offset: int = Field(ge=0, description="The byte offset to ask for next.")
    final: bool = Field(
        description="The job is finished and this chunk reaches the end of its log: no more "
        "output will come."
    )


STEP_KEY_PREFIX = "step/"
"""Metric keys under this prefix are step-level progress (see ``runner.ProgressReporter``)."""


def shown_spec(spec_json: str) -> TrainingJobSpec:
    """A stored spec as a job's view shows it, also when this version of the platform cannot
    read it as written (a run queued or run by another version): unknown fields are dropped,
    and a spec still invalid then is shown by its dataset and label only. Never for running
    a job: ``TrainingJobSpec.model_validate_json`` is."""
    try:
        return TrainingJobSpec.model_validate_json(spec_json)
    except ValueError:
        pass
    try:
        raw = json.loads(spec_json)
    except ValueError:
        raw = {}
    raw = raw if isinstance(raw, dict) else {}
    known = {k: v for k, v in raw.items() if k in TrainingJobSpec.model_fields}
    try:
        return TrainingJobSpec.model_validate(known)
    except ValueError:
        return TrainingJobSpec.model_construct(dataset=str(raw.get("dataset", "?")),
                                               label=str(raw.get("label", "?")))  # fmt: skip


def epoch_table(points: list[MetricPoint]) -> list[dict[str, float]]:
    """Metric points as one row per epoch (the last value of each key at that step); the
    step-level progress keys (``step/...``, counted in optimizer steps) are left out."""
    rows: dict[int, dict[str, float]] = {}
    for p in sorted(points, key=lambda p: (p.step, p.timestamp)):
        if p.key.startswith(STEP_KEY_PREFIX):
            continue
        rows.setdefault(p.step, {"epoch": float(p.step)})[p.key] = p.value
    return [rows[k] for k in sorted(rows)]
