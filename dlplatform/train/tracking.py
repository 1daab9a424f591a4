"""Runs tracked from any code (a notebook, a script): start, log, end, search.

A tracked run is a ``Run`` of kind ``tracked``, listed and searched with the platform's own
training and tuning runs. The SDK (``p.runs.start(...)``) buffers metric points and sends them
in batches to ``POST /runs/{id}/metrics`` (``train.log_metrics``); everything else goes through
the functions here, which the gateway's ``/runs`` routes call.

Permissions: ``train.submit`` starts a run; only its owner or an admin logs to it, tags it or
ends it, and nothing is logged to a run that ended (``Conflict``, 409). ``train.view`` reads and
searches runs. The run's dataset version (``dataset="NAME@COMMIT"``) is read-checked and becomes
the lineage edge ``commit → run`` (``trained_on``, as a training job's); a logged model becomes
the next registry version with the edge ``run → model_version`` (``produced``).
"""

from __future__ import annotations

import math
import pickle
import re
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata.enums import RunStatus
from dlplatform.metadata.records import (
    ArtifactFile,
    ArtifactRecord,
    LineageEdge,
    MetricPoint,
    ModelVersion,
    Run,
    RunArtifact,
    check_name,
    check_page,
    utcnow,
)
from dlplatform.models.spec import ModelSignature, ParamValue, is_code_path
from dlplatform.train.spec import MAX_METRICS_PAGE

if TYPE_CHECKING:
    from dlplatform.context import Backend

KIND = "tracked"
MAX_RUNS_PAGE = 1000
"""The most runs one ``GET /runs`` page holds (``search_runs``)."""
MAX_PARAMS = 1000
MAX_COMPARE = 50
"""The most runs one comparison holds (``compare_runs``)."""
_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,127}")
_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # no "", ".", "..", "\\", "%2e"


def _check_keys(values: dict[str, Any], what: str) -> dict[str, Any]:
    if len(values) > MAX_PARAMS:
        raise ValueError(f"at most {MAX_PARAMS} {what}s, got {len(values)}")
    bad = next((k for k in values if not _KEY.fullmatch(k)), None)
    if bad is not None:
        raise ValueError(f"invalid {what} key {bad[:80]!r}: 1-128 of A-Z a-z 0-9 _ . / -")
    return values


def check_artifact_path(path: str) -> str:
    """``path`` if it names a file under a run: relative, '/'-separated segments of
    ``A-Z a-z 0-9 _ . -`` that are not ``.`` or ``..``, at most 512 characters.

    Raises:
        InvalidInput: anything else (absolute, ``..``, backslashes, empty segments).
    """
    parts = path.split("/") if isinstance(path, str) and len(path) <= 512 else [""]
    if not all(_SEGMENT.fullmatch(p) and p not in (".", "..") for p in parts):
        raise InvalidInput(
            f"invalid artifact path {str(path)[:80]!r}: a relative path of segments of "
            "A-Z a-z 0-9 _ . - (no '..', not absolute)"
        )
    return path


def _check_params(value: dict[str, ParamValue]) -> dict[str, ParamValue]:
    return _check_keys(value, "param")


def _check_tags(value: dict[str, str]) -> dict[str, str]:
    too_long = next((k for k, v in value.items() if len(v) > 1000), None)
    if too_long is not None:
        raise ValueError(f"tag {too_long!r}: a value has at most 1000 characters")
    return _check_keys(value, "tag")


Params = Annotated[dict[str, ParamValue], AfterValidator(_check_params)]
Tags = Annotated[dict[str, str], AfterValidator(_check_tags)]


class TrackedRunSpec(BaseModel, frozen=True, extra="forbid"):
    """A run started from your own code (``POST /runs``)."""

    name: str = Field(default="", max_length=200)
    params: Params = Field(default_factory=dict)
    tags: Tags = Field(default_factory=dict)
    dataset: str | None = Field(
        default=None, description="NAME or NAME@COMMIT: the version this run trains on."
    )


class ParamsUpdate(BaseModel, frozen=True, extra="forbid"):
    params: Params


class TagsUpdate(BaseModel, frozen=True, extra="forbid"):
    tags: Tags


class RunEnd(BaseModel, frozen=True, extra="forbid"):
    """How a tracked run ended: SUCCEEDED (the ``with`` block finished) or FAILED."""

    status: Literal["SUCCEEDED", "FAILED"] = "SUCCEEDED"
    error: str | None = Field(default=None, max_length=2000)


class ModelLog(BaseModel, frozen=True, extra="forbid"):
    """A model to register from weights the run logged as an artifact (``POST
    /runs/{id}/model``): a torch state dict saved with ``torch.save``, read weights-only."""

    name: str = Field(description="Registry name; the next version of it is made.")
    weights: str = Field(description="The run's artifact path holding the state dict.")
    signature: ModelSignature
    builder: str | None = Field(
        default=None,
        description="'module:function' rebuilding the torch module from model_config (None: "
        "stored, but it cannot be served or loaded back as a module).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict, description="What ``builder`` takes to build the module."
    )

    @field_validator("builder")
    @classmethod
    def _builder(cls, value: str | None) -> str | None:
        if value is not None and not is_code_path(value):
            raise ValueError(f"builder {value[:80]!r} is not 'module:function'")
        return value


class RunView(BaseModel, frozen=True, extra="forbid", ser_json_inf_nan="strings"):
    """A run as search and ``GET /runs/{id}`` show it: the record, its params, the final value
    of each metric (the point at the highest step; NaN and infinities kept), its tags as a
    mapping and its dataset version."""

    run: Run
    params: dict[str, str] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    dataset: str | None = None
    artifacts: list[RunArtifact] = Field(default_factory=list)


class RunComparison(BaseModel, frozen=True, extra="forbid", ser_json_inf_nan="strings"):
    """Runs side by side (``GET /runs/compare``): each run as ``GET /runs/{id}`` shows it (in the
    order asked), the comparison's rows (``params.KEY`` then ``metrics.KEY``, each sorted by key;
    a metric's value is its final one) and the rows whose values differ between the runs."""

    runs: list[RunView]
    rows: list[str] = Field(description='e.g. ["params.lr", "metrics.loss"]')
    differing: list[str] = Field(
        description="The rows whose values are not all equal (a key one run lacks differs; "
        "NaN equals NaN)."
    )


def tags_of(run: Run) -> dict[str, str]:
    """A run's tags as a mapping: ``key=value`` entries, and plain labels (a training job's
    tags) with an empty value."""
    out: dict[str, str] = {}
    for tag in run.tags:
        key, _, value = tag.partition("=")
        out[key] = value
    return out


def _tag_list(tags: dict[str, str]) -> tuple[str, ...]:
    return tuple(f"{k}={v}" if v else k for k, v in sorted(tags.items()))


# --- the service ------------------------------------------------------------------------------


def check_run_writer(backend: Backend, principal: Principal, run_id: str, action: str) -> Run:
    """The run, if ``principal`` may log to it: its owner (a job's run token included) or an
    admin, while it has not ended. A refusal is audited.

    Raises:
        NotFound: no such run.
        PermissionDenied: the caller neither owns the run nor is an admin.
        Conflict: the run has ended.
    """
    run = backend.store.get_run(run_id)
    if run.owner != principal.name and not principal.is_admin:
        reason = f"run {run_id} belongs to {run.owner}"
        backend.store.append_audit(principal.name, action, f"run:{run_id}", "denied", reason)
        raise PermissionDenied(f"{principal.name} may not {action} on run {run_id}: {reason}")
    if run.status.is_final:
        raise Conflict(f"run {run_id} has ended ({run.status.value}); nothing more can be logged")
    return run


def start_run(backend: Backend, principal: Principal, spec: TrackedRunSpec) -> RunView:
    """Start a tracked run (RUNNING) with its params and tags; its dataset version, when given,
    is read-checked, pinned and recorded as lineage.

    Raises:
        PermissionDenied: the caller lacks ``train.submit`` or may not read the dataset.
        NotFound: the dataset or commit does not exist.
        InvalidInput: a malformed dataset reference.
    """
    from dlplatform import data  # the data service; data does not import train

    authorize(backend.store, principal, Permission.TRAIN_SUBMIT, "runs")
    commit = data.resolve(backend, principal, spec.dataset) if spec.dataset else None
    now = utcnow()
    run = Run(
        id=f"run-{secrets.token_hex(6)}",
        kind=KIND,
        name=spec.name,
        owner=principal.name,
        status=RunStatus.RUNNING,
        spec_json=spec.model_dump_json(),
        dataset_commit=commit.id if commit else None,
        created_at=now,
        started_at=now,
        tags=_tag_list(spec.tags),
    )
    store = backend.store
    store.create_run(run)
    if spec.params:
        store.log_params(run.id, {k: str(v) for k, v in spec.params.items()})
    if commit is not None:
        edge = LineageEdge(src=f"commit:{commit.id}", dst=f"run:{run.id}", relation="trained_on")
        store.add_edges([edge])
    audit(store, principal, "run.start", f"run:{run.id}", spec.dataset or "")
    return _views(backend, [run])[0]


def get_run(backend: Backend, principal: Principal, run_id: str) -> RunView:
    """Any run (tracked, training, tuning, trial) with params, final metrics, tags and
    artifacts."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    run = backend.store.get_run(run_id)
    view = _views(backend, [run])[0]
    return view.model_copy(update={"artifacts": backend.store.list_run_artifacts(run_id)})


def search_runs(
    backend: Backend,
    principal: Principal,
    filter_text: str | None = None,
    order_by: str | None = None,
    *,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[RunView], int]:
    """One page of the runs of every kind matching ``filter_text`` sorted by ``order_by``, and
    how many match. The languages: ``dlplatform/metadata/_run_search.py`` (and the README).

    Raises:
        InvalidInput: a malformed filter or sort (naming the token and its position), or a
            page out of range.
    """
    check_page(limit, offset, MAX_RUNS_PAGE)
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "runs")
    runs, total = backend.store.search_runs(filter_text, order_by, limit=limit, offset=offset)
    return _views(backend, runs), total


def compare_runs(backend: Backend, principal: Principal, run_ids: Sequence[str]) -> RunComparison:
    """Runs of any kind side by side: their params and final metrics, and which differ.

    Args:
        run_ids: run ids, each item possibly several joined by commas (``?ids=a,b``); a repeated
            id counts once.

    Raises:
        InvalidInput: no ids, or more than ``MAX_COMPARE``.
        NotFound: a run does not exist (the message names it).
    """
    ids = list(dict.fromkeys(i.strip() for item in run_ids for i in item.split(",") if i.strip()))
    if not ids:
        raise InvalidInput("give at least one run id to compare")
    if len(ids) > MAX_COMPARE:
        raise InvalidInput(f"at most {MAX_COMPARE} runs can be compared at once, got {len(ids)}")
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "runs")
    views = _views(backend, [backend.store.get_run(i) for i in ids])
    rows: list[str] = []
    differing: list[str] = []
    for prefix, values_of in (("params", lambda v: v.params), ("metrics", lambda v: v.metrics)):
        for key in sorted({k for v in views for k in values_of(v)}):
            row = f"{prefix}.{key}"
            rows.append(row)
            if len({_comparable(values_of(v).get(key)) for v in views}) > 1:
                differing.append(row)
    return RunComparison(runs=views, rows=rows, differing=differing)


def _comparable(value: object) -> object:
    """A value as compared: NaN equals NaN (it never equals itself as a float)."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def _views(backend: Backend, runs: list[Run]) -> list[RunView]:
    if not runs:
        return []
    store = backend.store
    ids = [r.id for r in runs]
    params = store.get_params_of(ids)
    metrics = store.get_final_metrics(ids)
    datasets = _dataset_refs(backend, [r.dataset_commit for r in runs if r.dataset_commit])
    return [
        RunView(
            run=r,
            params=params.get(r.id, {}),
            metrics=metrics.get(r.id, {}),
            tags=tags_of(r),
            dataset=datasets.get(r.dataset_commit or ""),
        )
        for r in runs
    ]


def _dataset_refs(backend: Backend, commit_ids: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for commit_id in dict.fromkeys(commit_ids):
        try:
            out[commit_id] = f"{backend.store.get_commit(commit_id).dataset}@{commit_id}"
        except NotFound:  # a purged dataset's commit: the id alone
            out[commit_id] = commit_id
    return out


def log_params(
    backend: Backend, principal: Principal, run_id: str, update: ParamsUpdate
) -> RunView:
    """Add or change params of a run you own (409 once it ended)."""
    check_run_writer(backend, principal, run_id, "run.log_params")
    backend.store.log_params(run_id, {k: str(v) for k, v in update.params.items()})
    return _views(backend, [backend.store.get_run(run_id)])[0]


def set_tags(backend: Backend, principal: Principal, run_id: str, update: TagsUpdate) -> RunView:
    """Set tags of a run you own (a key given again gets the new value; 409 once it ended)."""
    run = check_run_writer(backend, principal, run_id, "run.set_tags")
    merged = {**tags_of(run), **update.tags}
    if len(merged) > MAX_PARAMS:
        raise InvalidInput(f"a run has at most {MAX_PARAMS} tags")
    updated = backend.store.update_run(run_id, tags=_tag_list(merged))
    return _views(backend, [updated])[0]


def end_run(backend: Backend, principal: Principal, run_id: str, end: RunEnd) -> RunView:
    """End a tracked run you own: SUCCEEDED or FAILED (with ``error``).

    Raises:
        Conflict: it ended already, or it is a platform job (those end by themselves or by
            ``cancel``).
    """
    run = check_run_writer(backend, principal, run_id, "run.end")
    if run.kind != KIND:
        raise Conflict(f"run {run_id} is a {run.kind} job: cancel it instead of ending it")
    updated = backend.store.update_run(
        run_id, status=RunStatus(end.status), ended_at=utcnow(), error=end.error
    )
    audit(backend.store, principal, "run.end", f"run:{run_id}", end.status)
    return _views(backend, [updated])[0]


def log_artifact(
    backend: Backend, principal: Principal, run_id: str, path: str, staged: Path
) -> RunArtifact:
    """Store the file ``staged`` (the uploaded body) as the run's artifact ``path``.

    Raises:
        InvalidInput: ``path`` is absolute, has ``..`` or other unusable segments.
        NotFound, PermissionDenied, Conflict: see ``check_run_writer``.
    """
    check_artifact_path(path)
    check_run_writer(backend, principal, run_id, "run.log_artifact")
    ref = backend.artifacts.put_file(staged)
    now = utcnow()
    backend.store.record_artifact(
        ArtifactRecord(sha256=ref.sha256, size_bytes=ref.size_bytes, purpose="run-artifact",
                       created_at=now)
    )  # fmt: skip
    artifact = RunArtifact(
        run_id=run_id, path=path, sha256=ref.sha256, size_bytes=ref.size_bytes, created_at=now
    )
    backend.store.add_run_artifact(artifact)
    audit(backend.store, principal, "run.log_artifact", f"run:{run_id}", path)
    return artifact


def list_run_artifacts(backend: Backend, principal: Principal, run_id: str) -> list[ArtifactFile]:
    """The files a run logged, by path.

    Raises:
        NotFound: no such run.
        PermissionDenied: the caller lacks ``train.view``.
    """
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    backend.store.get_run(run_id)  # an unknown run is a 404, not an empty list
    return [
        ArtifactFile.of(a.path, a.sha256, a.size_bytes, a.created_at)
        for a in backend.store.list_run_artifacts(run_id)
    ]


def open_run_artifact(
    backend: Backend, principal: Principal, run_id: str, path: str
) -> tuple[ArtifactFile, Iterator[bytes]]:
    """A file the run logged and its bytes (``ArtifactStore.iter_verified``: a damaged stored
    file raises ``IntegrityError`` before its last chunk is given). The read is audited.

    Raises:
        InvalidInput: ``path`` is absolute, has ``..`` or other unusable segments.
        NotFound: no such run, or the run has no file ``path``.
        PermissionDenied: the caller lacks ``train.view``.
        IntegrityError: a damaged file of one chunk (found before the first byte).
    """
    from dlplatform.metadata.artifacts import ArtifactRef  # pyarrow: not for the SDK's imports

    check_artifact_path(path)
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    backend.store.get_run(run_id)
    found = backend.store.get_run_artifact(run_id, path)
    ref = ArtifactRef(sha256=found.sha256, size_bytes=found.size_bytes)
    chunks = backend.artifacts.iter_verified(ref)
    audit(backend.store, principal, "run.read_artifact", f"run:{run_id}", path)
    return ArtifactFile.of(path, found.sha256, found.size_bytes, found.created_at), chunks


def log_model(backend: Backend, principal: Principal, run_id: str, spec: ModelLog) -> ModelVersion:
    """Register the weights the run logged at ``spec.weights`` as the next version of
    ``spec.name``, as a training job registers its model (``artifact.register_version``): read
    weights-only, with the run's final metrics, params and dataset version, and the lineage
    edge ``run → model_version``.

    Raises:
        PermissionDenied: the caller lacks ``train.submit`` or does not own the run.
        NotFound: the run has no artifact ``spec.weights``.
        InvalidInput: a bad model name, or the file is not a plain torch state dict.
        Conflict: the run has ended.
    """
    from dlplatform.models import artifact  # loads torch: only where a model is registered

    authorize(backend.store, principal, Permission.TRAIN_SUBMIT, f"model:{spec.name}")
    try:
        check_name(spec.name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    run = check_run_writer(backend, principal, run_id, "run.log_model")
    weights = backend.store.get_run_artifact(run_id, check_artifact_path(spec.weights))
    store = backend.store
    commit = store.get_commit(run.dataset_commit) if run.dataset_commit else None
    metrics = {k: v for k, v in store.get_final_metrics([run_id])[run_id].items()
               if math.isfinite(v)}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="dlp-log-model-") as tmp:
        local = backend.artifacts.get_file(weights.sha256, Path(tmp, "weights.pt"))
        try:
            version = artifact.register_version(
                backend, run=run, model_name=spec.name, state_dict_path=local,
                model_config=spec.config, signature=spec.signature, builder=spec.builder,
                metrics=metrics, params=store.get_params(run_id),
                dataset_commit=commit.id if commit else None,
                dataset_version_hash=commit.version_hash if commit else None,
                code_version=run.code_version,
            )  # fmt: skip
        except (pickle.UnpicklingError, RuntimeError, ValueError, EOFError) as exc:  # torch's
            raise InvalidInput(
                f"{spec.weights} is not a torch state dict readable weights-only: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
            ) from None
    audit(store, principal, "run.log_model", f"model_version:{version.model}@{version.version}",
          f"run={run_id}")  # fmt: skip
    return version


def get_metrics_page(
    backend: Backend,
    principal: Principal,
    run_id: str,
    key: str | None = None,
    *,
    limit: int = MAX_METRICS_PAGE,
    offset: int = 0,
) -> tuple[list[MetricPoint], int]:
    """One page of any run's metric points (by key, step and time) and how many there are."""
    check_page(limit, offset, MAX_METRICS_PAGE)
    authorize(backend.store, principal, Permission.TRAIN_VIEW, f"run:{run_id}")
    backend.store.get_run(run_id)
    return metrics_page(backend.store, run_id, key, limit, offset)


def metrics_page(
    store: Any, run_id: str, key: str | None, limit: int, offset: int
) -> tuple[list[MetricPoint], int]:
    """One page of a run's points and how many there are (the caller checked access)."""
    return store.get_metrics(run_id, key, limit=limit, offset=offset), store.count_metrics(
        run_id, key
    )
