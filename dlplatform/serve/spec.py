"""What a caller asks the serving component for, and what it gets back.

``DeploymentSpec`` is the per-deployment configuration (replicas, batching, limits, logging);
it is stored as the deployment record's ``config_json`` so a restart redeploys the same thing.
The defaults are the fastest configuration measured on a 2-core machine (``benchmarks/
serve_bench.py``, RAY_NOTES §9): one replica (a second has no free core: the HTTP proxy takes the
other), ``max_ongoing_requests=64`` (Serve's default of 5 queues requests at the proxy),
dynamic batching with a zero wait (``serve._batching``: batches still form under load, and a
quiet request never waits).
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from dlplatform.errors import InvalidInput
from dlplatform.metadata.records import Deployment, Name, check_name

SERVE_HEAD_ENV: dict[str, str] = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    "RAY_SERVE_HAPROXY_TUNE_BUFSIZE": "65536",
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
}
"""Environment for the process that starts the Ray head, switching Serve to its fast ingress.

Measured on 2 cores (RAY_NOTES §9, ``benchmarks/serve_bench.py``): Serve's default proxy costs
about 8 ms of CPU per request (c1 p50 ≈ 7 ms, c32 ≈ 220 req/s with max_ongoing_requests=64); with
throughput mode + the HAProxy ingress the same deployment answers in ≈ 0.4 ms at c1 and
≈ 3,000+ req/s at c32, on par with a plain uvicorn server. HAProxy's own metrics cost ≈ 0.27 of a
core of parsing, so they are off: the platform exports its own request metrics
(``dlp_serve_requests_total`` and friends). One HAProxy thread leaves the other core to the
replica. Buffers of 64 KiB instead of 16 KiB cut HAProxy's CPU for a large download by a third
(a whole dataset version: 0.042 -> 0.029 s of CPU per 67 MB; 256 KiB gained nothing more), at
most 2 x 64 KiB per active connection. The draining period is shortened from 30 s so a rollout or undeploy frees its replicas
quickly. These variables only work in the environment of the process that starts Ray (the head);
set ``http_options`` hosts to loopback explicitly (HAProxy mode binds all interfaces otherwise).
``dlp up`` starts its head with them, plus per-home HAProxy paths, ports and loopback binds
(``serve._ingress.fast_ingress_env``); ``DLP_FAST_INGRESS=false`` turns them off.
"""

APP_PREFIX = "model-"
"""Serve application name of a dedicated deployment: ``model-<name>``."""
SHARED_APP = "dlp-shared-models"
"""The multiplexed application serving every ``shared`` deployment."""
ROUTE_PREFIX = "/models"
"""Inference routes: ``POST /models/<name>``. The shared app owns ``/models`` itself, so any
``/models/<name>`` without a dedicated app of its own reaches it (longest prefix wins)."""
QUIET_LOGGING: dict[str, Any] = {"enable_access_log": False, "log_level": "WARNING"}
REPLICA_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.25},
    "max_ongoing_requests": 64,
    "graceful_shutdown_wait_loop_s": 0.5,
    "graceful_shutdown_timeout_s": 10,
    "logging_config": QUIET_LOGGING,
}
"""The ``@serve.deployment`` options of a model replica, dedicated or shared (a deployment's
spec overrides the CPUs and the scaling when it is deployed)."""


class DeploymentSpec(BaseModel, frozen=True, extra="forbid"):
    """How a model version is served. Every field has a default that serves well on 2 cores."""

    min_replicas: int = Field(default=1, ge=0, le=64, description="Autoscaling floor.")
    max_replicas: int = Field(
        default=1, ge=1, le=64, description="Autoscaling ceiling (one replica per free core)."
    )
    target_ongoing_requests: float = Field(
        default=16, gt=0, le=1024, description="Autoscaling target of in-flight requests/replica."
    )
    max_ongoing_requests: int = Field(
        default=64, ge=1, le=4096, description="Requests a replica takes at once (>= batch size)."
    )
    max_batch_size: int = Field(default=32, ge=1, le=1024, description="Rows per model call.")
    batch_wait_timeout_s: float = Field(
        default=0.0, ge=0, le=10, description="Wait for a batch to fill (adds to quiet latency)."
    )
    max_rows: int = Field(default=1024, ge=1, le=100_000, description="Rows per request.")
    num_cpus: float = Field(default=0.25, ge=0, le=64, description="Logical CPUs per replica.")
    allow_anonymous: bool = Field(
        default=False, description="Serve requests without a token (off by default)."
    )
    log_sample_rate: float = Field(
        default=1.0, ge=0, le=1, description="Share of predictions logged with inputs/outputs."
    )
    log_flush_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often a replica flushes its prediction log."
    )
    shared: bool = Field(
        default=False, description="Serve on the multiplexed shared app (long-tail models)."
    )
    max_models_per_replica: int = Field(
        default=4, ge=1, le=256, description="Shared app: models kept in memory per replica (LRU)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> DeploymentSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be at least "
                f"max_batch_size ({self.max_batch_size}): a batch of one-row requests never "
                "holds more requests than are in flight"
            )
        return self


Traffic = dict[int, int]
"""Version → weight (percent, summing to 100)."""


def check_traffic(traffic: dict[Any, Any]) -> Traffic:
    """Normalise ``{version: weight}``: positive int versions, int weights 0-100 summing to 100.

    Raises:
        ValueError: names the bad entry.
    """
    if not traffic:
        raise ValueError("traffic needs at least one VERSION=WEIGHT")
    out: Traffic = {}
    for key, weight in traffic.items():
        try:
            version = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"traffic version {key!r} is not a version number") from None
        if version < 1:
            raise ValueError(f"traffic version {version} must be >= 1")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or int(weight) != weight:
            raise ValueError(f"traffic weight of version {version} must be an integer percent")
        if not 0 <= int(weight) <= 100:
            raise ValueError(f"traffic weight of version {version} must be 0-100, got {weight}")
        out[version] = int(weight)
    total = sum(out.values())
    if total != 100:
        raise ValueError(f"traffic weights must sum to 100, got {total}")
    return {v: w for v, w in sorted(out.items()) if w > 0}


class TrafficSpec(BaseModel, frozen=True, extra="forbid"):
    """A traffic split for ``POST /deployments/{name}/traffic``: ``{"traffic": {"3": 90, "4": 10}}``."""

    traffic: dict[str, int] = Field(description="Version → percent of requests; sums to 100.")

    @field_validator("traffic")
    @classmethod
    def _valid(cls, value: dict[str, int]) -> dict[str, int]:
        check_traffic(value)
        return value


class DeployRequest(BaseModel, frozen=True, extra="forbid"):
    """``POST /deployments``: which model version (``NAME``, ``NAME@VERSION``, ``NAME@ALIAS``)."""

    model: str = Field(description="NAME, NAME@VERSION or NAME@ALIAS (latest version by default).")
    config: DeploymentSpec = Field(default_factory=DeploymentSpec)


class FeedbackRequest(BaseModel, frozen=True, extra="forbid"):
    """``POST /feedback``: the true label of an earlier prediction."""

    request_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    label: Any = Field(description="The true label (any JSON value; one per row of the request).")


class DeploymentInfo(BaseModel, frozen=True, extra="forbid"):
    """A deployment as shown to users: the record plus what Serve reports right now."""

    name: str
    model: str
    version: int
    traffic: dict[str, int]
    standby: list[int] = Field(
        default_factory=list,
        description="Versions every replica holds at weight 0: a split that moves traffic back "
        "to them (a rollback) applies at once, without a redeploy.",
    )
    route: str
    shared: bool
    status: str = Field(description="Serve's status (RUNNING, DEPLOYING, ...) or the record's.")
    replicas: int = 0
    config: DeploymentSpec
    created_by: str
    updated_at: str
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Live counters: requests, errors, p50/p99 ms (if known)."
    )

    @classmethod
    def of(
        cls,
        record: Deployment,
        *,
        status: str | None = None,
        replicas: int = 0,
        metrics: dict[str, float] | None = None,
    ) -> DeploymentInfo:
        spec = DeploymentSpec.model_validate_json(record.config_json or "{}")
        split = json.loads(record.traffic_json or "{}")
        return cls(
            name=record.name,
            model=record.model,
            version=record.version,
            traffic={str(k): int(v) for k, v in split.items() if int(v) > 0},
            standby=sorted(int(k) for k, v in split.items() if int(v) == 0),
            route=f"{ROUTE_PREFIX}/{record.name}",
            shared=spec.shared,
            status=status or record.status,
            replicas=replicas,
            config=spec,
            created_by=record.created_by,
            updated_at=record.updated_at.isoformat(),
            metrics=metrics or {},
        )


InputRow = list[float] | list[str] | dict[str, Any] | str
"""One row of ``inputs``: the feature values in signature order, an object keyed by feature name,
a flat list of pixels (image models), or a string (text models, also as a one-element list)."""


class PredictionRequest(
    BaseModel,
    frozen=True,
    extra="forbid",
    json_schema_extra={"examples": [{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]},
):
    """The body of ``POST /models/<name>``; each row is checked against the version's signature."""

    inputs: list[InputRow] = Field(
        min_length=1,
        description="The rows to predict, at most the deployment's `max_rows` (413 past it).",
    )


class PredictionResult(BaseModel, frozen=True, extra="forbid"):
    """What ``POST /models/<name>`` answers."""

    outputs: list[Any] = Field(
        description="One output per input row: a class value (classification) or a number."
    )
    model: str
    version: int = Field(description="The version that answered (traffic splits pick one).")
    request_id: str = Field(description="Names this prediction for `POST /api/v1/feedback`.")


class PredictionError(BaseModel, frozen=True, extra="forbid"):
    """An error answer of ``POST /models/<name>``: the gateway's error body plus the request id."""

    error: str = Field(description="The stable error code, e.g. `invalid_input`.")
    message: str
    request_id: str


class BatchPredictRequest(BaseModel, frozen=True, extra="forbid"):
    """``POST /api/v1/batch-predictions``: predict every row of a dataset version with a model."""

    model: str = Field(description="NAME, NAME@VERSION or NAME@ALIAS (latest version by default).")
    dataset: str = Field(description="DATASET or DATASET@COMMIT (the head commit by default).")
    output: Name = Field(
        description="Dataset to commit the rows plus a `prediction` column to (created if missing)."
    )
    workers: int = Field(default=1, ge=1, le=64, description="Inference actors (one model each).")


class BatchPredictResult(BaseModel, frozen=True, extra="forbid"):
    """A finished batch inference: the commit holding the predictions."""

    model: str
    version: int
    input_dataset: str
    input_commit: str
    output_dataset: str
    output_commit: str
    rows: int
    seconds: float


def split_model_ref(ref: str) -> tuple[str, str | None]:
    """``"m@3"`` → ``("m", "3")``; ``"m@production"`` → ``("m", "production")``; ``"m"`` → ``("m", None)``.

    Raises:
        ValueError: a malformed name or version/alias.
    """
    name, sep, selector = ref.partition("@")
    check_name(name)
    if sep:
        if not selector.isdigit():
            check_name(selector)
        return name, selector
    return name, None


ServeStatus = Literal["RUNNING", "DEPLOYING", "DEPLOY_FAILED", "UNHEALTHY", "NOT_RUNNING"]


def deployment_spec(**values: Any) -> DeploymentSpec:
    """A ``DeploymentSpec`` from options (``None`` = the default); ``min_replicas`` alone also
    raises ``max_replicas`` to it. Raises InvalidInput naming a bad option."""
    clean = {k: v for k, v in values.items() if v is not None}
    if "min_replicas" in clean and "max_replicas" not in clean:
        clean["max_replicas"] = max(clean["min_replicas"], 1)
    try:
        return DeploymentSpec(**clean)
    except ValidationError as exc:
        raise options_error("deployment options", exc) from None


def options_error(what: str, exc: ValidationError) -> InvalidInput:
    """One line naming each problem of ``exc`` (the CLI prints it as is)."""
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return InvalidInput(f"{what}: {'; '.join(problems)}")


def rollout_spec(**values: Any) -> RolloutSpec:
    """A ``RolloutSpec`` from options (``None`` = the default). Raises InvalidInput naming a
    bad option."""
    try:
        return RolloutSpec(**{k: v for k, v in values.items() if v is not None})
    except ValidationError as exc:
        raise options_error("rollout options", exc) from None


def deploy_request(name_or_ref: Any, **options: Any) -> DeployRequest:
    """What ``deploy`` asks for: ``NAME[@VERSION|@ALIAS]`` (or a ``ModelVersion``) and the
    ``deployment_spec`` of ``options``. Raises InvalidInput naming a bad option."""
    ref = name_or_ref
    if not isinstance(ref, str):
        ref = f"{name_or_ref.model}@{name_or_ref.version}"
    return DeployRequest(model=ref, config=deployment_spec(**options))


class RolloutSpec(BaseModel, frozen=True, extra="forbid"):
    """How ``serve.rollout`` moves traffic to a new version and judges each step
    (``serve._stats`` describes the tests)."""

    steps: list[int] = Field(
        default_factory=lambda: [5, 25, 50, 100],
        min_length=1,
        max_length=20,
        description="The new version's percent of traffic at each step; rising, ending at 100.",
    )
    min_dwell_s: float = Field(
        default=60, ge=0, le=86_400, description="Shortest time a step lasts before it is judged."
    )
    min_requests: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Requests of the new version a step waits for.",
    )
    min_labels: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="Labelled rows (feedback) of the new version a step waits for (0: judge "
        "accuracy only where labels happen to have arrived).",
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Significance level of the rate tests."
    )
    min_samples: int = Field(
        default=100,
        ge=1,
        le=10_000_000,
        description="Samples each side a rate or latency comparison needs to count.",
    )
    latency_tolerance: float = Field(
        default=0.2, ge=0, le=100, description="Allowed relative rise of p99 latency."
    )
    latency_slack_ms: float = Field(
        default=1.0, ge=0, le=60_000, description="Allowed absolute rise of p99 latency (ms)."
    )
    baseline_window_s: float = Field(
        default=600,
        ge=0,
        le=30 * 86_400,
        description="The current version is judged on its requests since this long before the "
        "rollout started.",
    )
    max_step_s: float = Field(
        default=3600,
        gt=0,
        le=30 * 86_400,
        description="A step still short of its minimum numbers after this long rolls back.",
    )
    promote_alias: str = Field(
        default="production", description="Alias pointed at the new version when it passes."
    )

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: list[int]) -> list[int]:
        if any(not 1 <= s <= 100 for s in steps):
            raise ValueError(f"steps must be percents within 1..100, got {steps}")
        if any(a >= b for a, b in itertools.pairwise(steps)):
            raise ValueError(f"steps must rise strictly, got {steps}")
        if steps[-1] != 100:
            raise ValueError(f"the last step must be 100 (the new version takes all), got {steps}")
        return steps

    @field_validator("promote_alias")
    @classmethod
    def _alias(cls, alias: str) -> str:
        check_name(alias)
        if alias.isdigit():
            raise ValueError(f"alias {alias!r} must not be a number")
        return alias


class RolloutRequest(BaseModel, frozen=True, extra="forbid"):
    """``POST /api/v1/deployments/{name}/rollouts``: roll ``version`` out by ``spec``."""

    version: int = Field(ge=1, description="The model version to roll out.")
    spec: RolloutSpec = Field(default_factory=RolloutSpec)


class RolloutEventInfo(BaseModel, frozen=True, extra="forbid"):
    """One step or decision of a rollout, with its numbers."""

    seq: int
    at: str
    kind: str
    percent: int
    decision: str
    numbers: dict[str, Any]
    message: str


class RolloutStatus(BaseModel, frozen=True, extra="forbid"):
    """A rollout as shown by ``dlp serve rollout status`` and the UI's deployment page."""

    id: str
    deployment: str
    model: str
    from_version: int
    to_version: int
    status: str = Field(description="RUNNING, PROMOTED, ROLLED_BACK or ABORTED.")
    step: int = Field(description="Index of the current (or last) step in spec.steps.")
    percent: int = Field(description="The new version's share of traffic in that step.")
    reason: str
    spec: RolloutSpec
    created_by: str
    created_at: str
    updated_at: str
    finished_at: str | None
    events: list[RolloutEventInfo]
