"""Persisted records: the metadata store's vocabulary.

Every record that crosses a component, process, HTTP or Ray boundary is a frozen pydantic model.
Components build specs of their own; what they persist is one of these.
"""

from __future__ import annotations

import functools
import mimetypes
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, NewType, TypeVar

from pydantic import AfterValidator, BaseModel, Field, ValidationError

from dlplatform.errors import InvalidInput
from dlplatform.metadata.enums import CommitMode, DatasetType, Role, RunStatus

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_NAME = re.compile(NAME_PATTERN)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def check_page(limit: int, offset: int, maximum: int) -> None:
    """A page of a list: ``limit`` in 1..``maximum``, ``offset`` not negative.

    Raises:
        InvalidInput: either is out of range (a 422 naming the bound).
    """
    if not 1 <= limit <= maximum:
        raise InvalidInput(f"limit must be between 1 and {maximum}, got {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must not be negative, got {offset}")


def check_name(value: str) -> str:
    """Validate a user-chosen name (dataset, model, workflow, user).

    Raises:
        ValueError: the name does not match ``NAME_PATTERN``.
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        shown = value if isinstance(value, str) and len(value) <= 80 else f"{str(value)[:80]}..."
        raise ValueError(
            f"invalid name {shown!r}: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_id(value: str) -> str:
    """Validate a server-issued or user-given identifier (run id, commit id, request id)."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or ".." in value:
        raise ValueError(f"invalid id {str(value)[:80]!r}")
    return value


_IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def check_idempotency_key(value: str) -> str:
    """``value`` if it is a valid idempotency key (of a push or a training submit): 1-128
    characters of ``A-Z a-z 0-9 _ . : -``.

    Raises:
        InvalidInput: anything else.
    """
    if not isinstance(value, str) or not _IDEMPOTENCY_KEY.fullmatch(value):
        raise InvalidInput(
            f"invalid idempotency key {str(value)[:40]!r}: use 1 to 128 characters of "
            "A-Z a-z 0-9 _ . : - (e.g. a UUID)"
        )
    return value


Name = Annotated[str, AfterValidator(check_name)]
Identifier = Annotated[str, AfterValidator(check_id)]
RunId = NewType("RunId", str)
CommitId = NewType("CommitId", str)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def invalid_input(exc: ValidationError, what: str = "") -> InvalidInput:
    """The ``InvalidInput`` for a failed record validation; the message names each bad field."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )
    return InvalidInput(f"invalid {what or exc.title}: {problems}")


_M = TypeVar("_M", bound=BaseModel)


def build(record: type[_M], /, **fields: Any) -> _M:
    """Build a record from user input, raising ``InvalidInput`` (not pydantic's error) if invalid."""
    try:
        return record(**fields)
    except ValidationError as exc:
        raise invalid_input(exc, record.__name__) from exc


class Record(BaseModel, frozen=True, extra="forbid"):
    """Base of all persisted records."""


# --- users, tokens, audit -------------------------------------------------------------------


class User(Record):
    name: Name
    role: Role
    groups: tuple[str, ...] = ()
    created_at: datetime
    disabled: bool = False
    disabled_at: datetime | None = None  # when ``disabled`` was last set


class TokenInfo(Record):
    """A token as listed: never the secret, only an id and a short prefix.

    A run token (``run_id`` set) is the one the platform gives the code of that run: it acts as
    the run's owner and stops working when the run ends or at ``expires_at``.
    """

    id: str
    user: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None
    run_id: str | None = None
    expires_at: datetime | None = None


class AuditEntry(Record):
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    outcome: Literal["ok", "denied", "error"]
    detail: str = ""


# --- datasets -------------------------------------------------------------------------------


class Dataset(Record):
    name: Name
    description: str = ""
    type: DatasetType = DatasetType.TABULAR
    tags: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    arrow_schema: str | None = None  # Arrow schema, serialized by data/
    created_at: datetime
    created_by: str
    deleted_at: datetime | None = None
    head: str | None = None  # id of the head commit


class CommitPart(Record):
    sha256: str
    row_count: int
    size_bytes: int


class Commit(Record):
    id: str
    dataset: str
    parent: str | None
    mode: CommitMode
    message: str = ""
    author: str
    created_at: datetime
    row_count: int
    size_bytes: int
    version_hash: str
    arrow_schema: str
    stats_json: str | None = None
    notes: str = ""  # e.g. widening applied on this push
    parts: tuple[CommitPart, ...] = ()


# --- runs, params, metrics ------------------------------------------------------------------


class Run(Record):
    id: str
    kind: Literal["train", "tune", "trial", "batch", "transform", "tracked"] = "train"
    parent_id: str | None = None
    name: str = ""
    owner: str
    status: RunStatus = RunStatus.QUEUED
    priority: int = 0
    spec_json: str = "{}"
    dataset_commit: str | None = None
    code_version: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    result_json: str | None = None
    tags: tuple[str, ...] = ()
    startup_json: str | None = None
    # What a training or tuning run holds while it runs, recorded at submit (the scheduler's
    # admission unit): 0 workers when not recorded; gpus None: one per worker on a GPU cluster.
    workers: int = 0
    cpus: float = 0.0
    gpus: float | None = None


class MetricPoint(BaseModel, frozen=True, extra="forbid", ser_json_inf_nan="strings"):
    """One metric value. Not a Record subclass: it is created in hot loops. NaN and infinite
    values travel in JSON as the strings "NaN", "Infinity", "-Infinity" (JSON has no such
    numbers), and are read back as floats."""

    run_id: str
    key: str
    value: float
    step: int = 0
    timestamp: float = 0.0  # unix seconds; 0 means "now" when stored


class RunArtifact(Record):
    """A file a tracked run logged: ``path`` under the run, bytes in the artifact store."""

    run_id: str
    path: str
    sha256: str
    size_bytes: int
    created_at: datetime


# Files of ML work that the standard tables miss or misname (".pt" is a SNES page table there).
_ML_TYPES = {
    "pt": "application/octet-stream", "pth": "application/octet-stream",
    "ckpt": "application/octet-stream", "safetensors": "application/octet-stream",
    "npy": "application/octet-stream", "npz": "application/octet-stream",
    "parquet": "application/vnd.apache.parquet", "arrow": "application/vnd.apache.arrow.file",
    "jsonl": "application/jsonl", "md": "text/markdown", "log": "text/plain",
    "yaml": "application/yaml", "yml": "application/yaml", "csv": "text/csv",
    "tsv": "text/tab-separated-values", "ipynb": "application/x-ipynb+json",
}  # fmt: skip


@functools.cache
def _mime_types() -> mimetypes.MimeTypes:
    """Python's own table, never the machine's (/etc/mime.types differs between hosts)."""
    return mimetypes.MimeTypes()


class ArtifactFile(BaseModel, frozen=True, extra="forbid"):
    """A file of a run's or a model version's artifacts, as listed (``GET .../artifacts``) and
    downloaded (``GET .../artifacts/{path}``, its bytes checked against ``sha256``)."""

    path: str = Field(description="Relative path under the run or model version.")
    size_bytes: int = Field(ge=0)
    sha256: str = Field(description="sha256 of the file's bytes (64 lowercase hex).")
    media_type: str = Field(description="Guessed from the file name, e.g. image/png.")
    created_at: datetime | None = Field(default=None, description="When it was logged.")

    @classmethod
    def of(
        cls, path: str, sha256: str, size_bytes: int, created_at: datetime | None = None
    ) -> ArtifactFile:
        """The file at ``path``, its media type guessed from the name (else octet-stream)."""
        suffix = path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
        guessed = _ML_TYPES.get(suffix) or _mime_types().guess_type(path, strict=False)[0]
        guessed = guessed or "application/octet-stream"
        return cls(path=path, size_bytes=size_bytes, sha256=sha256, media_type=guessed,
                   created_at=created_at)  # fmt: skip


# --- models, deployments --------------------------------------------------------------------


class Model(Record):
    name: Name
    description: str = ""
    owner: str
    created_at: datetime


class ModelSummary(Model):
    """A model as the registry lists it (``GET /models``): the record and the number of its
    newest version (``None`` while it has none)."""

    latest_version: int | None = None


class ModelVersion(Record):
    model: str
    version: int
    run_id: str | None
    artifact_sha256: str
    signature_json: str
    config_json: str = "{}"
    metrics_json: str = "{}"
    params_json: str = "{}"
    dataset_commit: str | None = None
    dataset_version_hash: str | None = None
    code_version: str | None = None
    created_at: datetime
    aliases: tuple[str, ...] = ()


class AliasEvent(Record):
    model: str
    alias: str
    version: int
    previous_version: int | None
    by: str
    at: datetime


class Deployment(Record):
    name: Name
    model: str
    version: int
    config_json: str = "{}"
    traffic_json: str = "{}"  # {"<version>": weight}
    status: str = "DEPLOYING"
    created_by: str
    created_at: datetime
    updated_at: datetime


class Prediction(Record):
    request_id: str
    deployment: str
    model: str
    version: int
    at: datetime
    inputs_json: str
    outputs_json: str
    latency_ms: float
    error: str = ""  # the error code of a request the replica failed to answer ("" = answered)


class Rollout(Record):
    """A progressive rollout of ``deployment`` from ``from_version`` to ``to_version``
    (``serve.rollout``); ``spec_json`` is its ``RolloutSpec``."""

    id: str
    deployment: str
    model: str
    from_version: int
    to_version: int
    spec_json: str
    status: Literal["RUNNING", "PROMOTED", "ROLLED_BACK", "ABORTED"] = "RUNNING"
    step: int = 0  # index into the spec's steps
    step_started_at: datetime | None = None  # None: this step's traffic is not applied yet
    reason: str = ""
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


class RolloutEvent(Record):
    """One step or decision of a rollout, with the numbers it was made on."""

    rollout_id: str
    seq: int
    at: datetime
    kind: str  # start, traffic, step, rollback, promote, abort, resume
    percent: int  # the new version's share of traffic when it happened
    decision: str = ""  # pass, fail or "" (not a decision)
    numbers_json: str = "{}"
    message: str = ""


class VersionWindow(Record):
    """What one version of a deployment did since a time, from the prediction log."""

    version: int
    requests: int  # answered and failed
    errors: int
    p99_ms: float | None  # of answered requests; None without any
    labelled: tuple[tuple[str, str], ...] = ()  # (outputs_json, label_json) of labelled requests


class Feedback(Record):
    request_id: str
    label_json: str
    by: str
    at: datetime


class Alert(Record):
    id: int
    kind: str
    severity: Literal["info", "warning", "critical"] = "warning"
    target: str
    message: str
    at: datetime
    resolved_at: datetime | None = None


# --- workflows ------------------------------------------------------------------------------


class WorkflowRun(Record):
    id: str
    workflow: str  # registered name (runs before the registry: module:factory)
    params_json: str = "{}"
    status: RunStatus = RunStatus.QUEUED
    owner: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None


class WorkflowStep(Record):
    run_id: str
    step_id: str
    name: str
    status: RunStatus = RunStatus.QUEUED
    attempts: int = 0
    started_at: datetime | None = None
    ended_at: datetime | None = None
    output_ref: str | None = None  # JSON description of the persisted output
    error: str | None = None


class WorkflowTrigger(Record):
    """A registration that starts a workflow: on each new commit of ``dataset``, or on ``cron``."""

    id: str
    kind: Literal["cron", "commit"]
    workflow: str  # registered name (triggers before the registry: module:factory)
    params_json: str = "{}"
    cron: str | None = None  # 5-field expression (kind "cron")
    dataset: str | None = None  # watched dataset (kind "commit")
    owner: str
    created_at: datetime
    enabled: bool = True
    last_fired_at: datetime | None = None  # cron: when it last fired
    last_commit: str | None = None  # commit: the last head it saw


class WorkflowRegistration(Record):
    """A workflow runs may name: ``name`` stands for the factory at ``target`` (module:factory).

    ``source``: a built-in pipeline, an admin's registration (stored) or a package's entry point.
    """

    name: str
    target: str  # module:factory, imported only by the workflow manager
    source: Literal["builtin", "admin", "entry_point"]
    description: str = ""
    registered_by: str | None = None
    registered_at: datetime | None = None


# --- lineage, artifacts ---------------------------------------------------------------------

EntityKind = Literal[
    "dataset", "commit", "run", "model_version", "deployment", "prediction", "workflow_run"
]
_ENTITY = re.compile(
    r"^(dataset|commit|run|model_version|deployment|prediction|workflow_run):[A-Za-z0-9_.:@-]{1,200}$"
)


def check_entity(value: str) -> str:
    """An entity reference ``kind:id`` used in lineage, e.g. ``commit:c-1a2b`` or ``model_version:m@3``."""
    if not _ENTITY.fullmatch(value):
        raise ValueError(
            f"invalid entity {value[:80]!r}: expected KIND:ID with KIND one of "
            "dataset, commit, run, model_version, deployment, prediction, workflow_run"
        )
    return value


EntityRef = Annotated[str, AfterValidator(check_entity)]


class LineageEdge(Record):
    src: EntityRef
    dst: EntityRef
    relation: str = Field(min_length=1, max_length=64)
    created_at: datetime | None = None


class LineageNode(Record):
    entity: str
    depth: int
    relation: str
    via: str  # the neighbour this node was reached from


class UsageInterval(Record):
    """What a run or a deployment held from ``start_at`` to ``end_at`` (None: still holding):
    the CPUs and GPUs allocated to it, and the peak resident memory sampled while it ran (None:
    not measured). See ``dlplatform.usage``."""

    kind: Literal["run", "deployment"]
    subject: str  # run id or deployment name
    owner: str
    dataset: str | None = None
    start_at: datetime
    end_at: datetime | None = None
    cpus: float = Field(ge=0)
    gpus: float = Field(ge=0)
    peak_mem_bytes: int | None = None


class Quota(Record):
    """Limits the training scheduler enforces for a user or a group (None: no limit)."""

    scope: Literal["user", "group"]
    name: Name
    max_cpus: float | None = Field(default=None, ge=0)
    max_gpus: float | None = Field(default=None, ge=0)
    gpu_hours_per_day: float | None = Field(default=None, ge=0)
    updated_by: str
    updated_at: datetime


class ArtifactRecord(Record):
    sha256: str
    size_bytes: int
    kind: Literal["file", "dir"] = "file"
    purpose: str = ""  # "dataset-part", "checkpoint", "model", "workflow-output", ...
    created_at: datetime


JSONValue = Any
