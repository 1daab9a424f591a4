"""Bring a team's MLflow history along: ``dlp import mlflow --tracking-uri URI [--experiment N]``.

Client-side, like every CLI command: MLflow is read with its own ``MlflowClient`` (any tracking
URI it takes: ``http(s)://`` server, ``sqlite:///`` or another database, a local path), and the
platform is written through the SDK over HTTP (``p.runs``), so the import obeys tokens and roles
and is audited like any tracked run.

Each active MLflow run becomes a tracked run (kind ``tracked``) owned by the importing user:

- params, tags (keys outside ``A-Z a-z 0-9 _ . / -`` get ``_``; tag values are cut at 1,000
  characters), every metric point with its step and timestamp (NaN and infinities as they are),
  and the run's artifacts (path segments made plain the same way);
- MLflow's own record of it, verbatim, as the artifact ``mlflow_import/run.json``;
- tags naming where it came from: ``mlflow.run_id``, ``mlflow.experiment_id``,
  ``mlflow.experiment_name``, ``mlflow.status``, and the original ``mlflow.start_time`` /
  ``mlflow.end_time`` (ISO, UTC): the platform's API sets a run's own times when it is started
  and ended, so the run's ``created``/``started``/``ended`` are those of the import;
- its end state: FINISHED → SUCCEEDED; FAILED, KILLED or still RUNNING → FAILED with the reason.

A registered model version of an imported run becomes a registry version with lineage to that
run when its files hold a torch state dict (``state_dict.pth``, as ``mlflow.pytorch.
log_state_dict`` writes it, or a single ``.pt``/``.pth`` file) that the gateway reads
weights-only. Its signature, builder and config come from the version's MLflow tags
``dlp.signature`` (JSON of a ``ModelSignature``), ``dlp.builder`` (``module:function``) and
``dlp.config`` (JSON); without them the weights are registered but cannot be served. Every other
flavor (MLflow's pytorch flavor pickles the whole module or exports a pt2 program; sklearn and
pyfunc models are pickles) is refused with the reason, which is kept on the run as the tag
``mlflow.model.NAME.VERSION`` and in the report; an MLflow model directory in a run's artifacts
(``MLmodel`` inside) is not copied either. MLflow aliases of an imported version become
platform aliases.

Importing again skips every run already imported completely (the tag ``mlflow.import =
complete``, set just before such a run is ended). A run whose import was cut off (a crash) is
ended FAILED and imported again. A model version registered in MLflow after its run was imported
is not picked up (an ended run takes no new model).
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlparse

import httpx
from pydantic import BaseModel, Field

from dlplatform.client._mlflow_parts import (
    chunks,
    clean_key,
    clean_segment,
    first_line,
    iso_time,
    json_float,
    model_name,
    model_spec,
    state_dict_file,
)
from dlplatform.errors import (
    BackendUnavailable,
    DLPlatformError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from dlplatform.metadata.records import ModelVersion
from dlplatform.train.spec import MetricsLogged
from dlplatform.train.tracking import RunEnd, RunView

if TYPE_CHECKING:
    from dlplatform.client import Platform
    from dlplatform.client.runs import ActiveRun

IMPORT_TAG = "mlflow.import"
"""Set to ``complete`` on a run whose import finished; such a run is never imported again."""
RUN_ID_TAG = "mlflow.run_id"
RECORD_PATH = "mlflow_import/run.json"
_MAX_TAGS = 1000  # the platform's limits (dlplatform/train/tracking.py)
_MAX_TAG_CHARS = 1000
_POINT_BYTES = 700_000  # JSON per metrics request, under the gateway's 1 MiB body limit
_ENDS = {"FINISHED": ("SUCCEEDED", None)}  # any other MLflow status ends the run FAILED


class ModelOutcome(BaseModel, frozen=True, extra="forbid"):
    """What became of one MLflow registered model version."""

    mlflow_model: str
    mlflow_version: str
    mlflow_run_id: str | None
    imported_as: str | None = Field(default=None, description="NAME@VERSION in the registry.")
    reason: str = Field(default="", description="Why it was not imported, or a note.")


class RunOutcome(BaseModel, frozen=True, extra="forbid"):
    """What became of one MLflow run."""

    mlflow_run_id: str
    experiment: str
    name: str
    outcome: Literal["imported", "skipped", "failed"]
    run_id: str | None = Field(default=None, description="The platform's run.")
    params: int = 0
    metric_points: int = 0
    artifacts: int = 0
    models: list[ModelOutcome] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    error: str | None = None


class ImportReport(BaseModel, frozen=True, extra="forbid"):
    """The result of ``import_mlflow``: one outcome per run, in the order imported, and the
    registered versions that belong to no imported run."""

    tracking_uri: str
    experiments: list[str]
    runs: list[RunOutcome]
    other_models: list[ModelOutcome] = Field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for r in self.runs if r.outcome == outcome)


Progress = Callable[[int, int, RunOutcome], None]


def import_mlflow(
    p: Platform,
    tracking_uri: str,
    experiments: Sequence[str] = (),
    *,
    progress: Progress | None = None,
) -> ImportReport:
    """Copy the active runs of ``experiments`` (default: every active experiment) and their
    registered model versions from MLflow at ``tracking_uri`` into the platform ``p``; calls
    ``progress(done, total, outcome)`` after each run. A run that fails to import is ended
    FAILED, reported, and the next one goes on.

    Raises:
        InvalidInput: MLflow is not installed, or the URI is not one MLflow reads.
        NotFound: no store at that path, or no experiment of that name.
        BackendUnavailable: MLflow or the platform cannot be reached.
        PermissionDenied: the caller may not start runs (``train.submit``).
    """
    mlflow = _load_mlflow()
    client = _open(mlflow, tracking_uri)
    chosen = _experiments(client, tracking_uri, experiments)
    runs = [(exp.name, run) for exp in chosen for run in _runs(client, exp.experiment_id)]
    versions: dict[str | None, list[Any]] = {}
    for mv in _pages(lambda token: client.search_model_versions(max_results=1000,
                                                                page_token=token)):  # fmt: skip
        versions.setdefault(mv.run_id or None, []).append(mv)
    before = _imported_before(p, [run.info.run_id for _, run in runs])
    outcomes: list[RunOutcome] = []
    with tempfile.TemporaryDirectory(prefix="dlp-mlflow-import-") as tmp:
        for done, (experiment, run) in enumerate(runs, 1):
            outcome = _import_one(
                p, client, mlflow, tracking_uri, experiment, run,
                versions.get(run.info.run_id, []), before.get(run.info.run_id, []), Path(tmp),
            )  # fmt: skip
            outcomes.append(outcome)
            if progress is not None:
                progress(done, len(runs), outcome)
    seen = {run.info.run_id for _, run in runs}
    others = [] if experiments else [
        ModelOutcome(mlflow_model=mv.name, mlflow_version=str(mv.version),
                     mlflow_run_id=run_id, reason=_no_run_reason(run_id))
        for run_id, mvs in versions.items() if run_id not in seen for mv in mvs
    ]  # fmt: skip
    return ImportReport(tracking_uri=tracking_uri, experiments=[e.name for e in chosen],
                        runs=outcomes, other_models=others)  # fmt: skip


# --- reading MLflow ---------------------------------------------------------------------------


def _load_mlflow() -> Any:
    try:
        # optional: the mlflow package, only this command needs it
        import mlflow
        import mlflow.artifacts
        from mlflow.tracking import MlflowClient  # noqa: F401
    except ImportError as exc:
        raise InvalidInput(
            f"importing from MLflow needs the mlflow package ({exc}): pip install "
            "mlflow-skinny sqlalchemy alembic (or mlflow)"
        ) from None
    return mlflow


def _open(mlflow: Any, uri: str) -> Any:
    """An ``MlflowClient`` of ``uri`` that answered one request.

    A server is asked for ``/health`` first (MLflow's client retries an unreachable server for
    minutes); a sqlite file or a local store must exist (MLflow would create an empty one).
    """
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https"):
        _check_server(uri)
    elif scheme == "sqlite" or (scheme in ("", "file") and uri not in ("", "databricks")):
        path = Path(uri.removeprefix("sqlite:///") if scheme == "sqlite" else parsed.path or uri)
        if scheme == "sqlite" and not uri.startswith("sqlite:///"):
            raise InvalidInput(f"{uri!r} is no sqlite file: use sqlite:///PATH")
        if not path.exists():
            raise NotFound(f"no MLflow store at {uri}: {path} does not exist")
    try:
        client = mlflow.tracking.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # MLflow's, SQLAlchemy's or the HTTP library's, by URI scheme
        raise BackendUnavailable(f"cannot read MLflow at {uri}: {first_line(exc)}") from None
    return client


def _check_server(uri: str) -> None:
    try:
        reply = httpx.get(f"{uri.rstrip('/')}/health", timeout=10.0)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"cannot reach MLflow at {uri}: {first_line(exc)}") from None
    if reply.status_code != 200:
        raise BackendUnavailable(
            f"{uri} answered {reply.status_code} to /health: is it an MLflow tracking server?"
        )


def _experiments(client: Any, uri: str, names: Sequence[str]) -> list[Any]:
    if not names:  # oldest first, as the runs in each
        found = _pages(lambda token: client.search_experiments(max_results=1000,
                                                               page_token=token))  # fmt: skip
        return sorted(found, key=lambda e: (e.creation_time or 0, e.experiment_id))
    found = []
    for name in dict.fromkeys(names):
        exp = client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            raise NotFound(f"MLflow at {uri} has no experiment named {name!r}")
        found.append(exp)
    return found


def _runs(client: Any, experiment_id: str) -> Iterator[Any]:
    return _pages(lambda token: client.search_runs(
        [experiment_id], max_results=1000, order_by=["attributes.start_time ASC"],
        page_token=token,
    ))  # fmt: skip


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = page.token
        if not token:
            return


def _no_run_reason(run_id: str | None) -> str:
    if run_id is None:
        return "not imported: it has no MLflow run to import it with"
    return f"not imported: its MLflow run {run_id} is not an active run of any experiment"


# --- the platform's side ----------------------------------------------------------------------


def _imported_before(p: Platform, mlflow_ids: list[str]) -> dict[str, list[RunView]]:
    """The platform's runs tagged with each MLflow run id (complete imports and cut-off ones)."""
    out: dict[str, list[RunView]] = {}
    for start in range(0, len(mlflow_ids), 50):  # a filter holds at most 4,000 characters
        quoted = ", ".join(json.dumps(i) for i in mlflow_ids[start : start + 50])
        for view in p.runs.list(f"tags.{RUN_ID_TAG} IN ({quoted})", max_results=100_000):
            out.setdefault(view.tags.get(RUN_ID_TAG, ""), []).append(view)
    return out


def _import_one(
    p: Platform, client: Any, mlflow: Any, uri: str, experiment: str, run: Any,
    versions: list[Any], before: list[RunView], tmp: Path,
) -> RunOutcome:  # fmt: skip
    info = run.info
    name = (info.run_name or run.data.tags.get("mlflow.runName") or "")[:200]
    base = {"mlflow_run_id": info.run_id, "experiment": experiment, "name": name}
    done = next((v for v in before if v.tags.get(IMPORT_TAG) == "complete"), None)
    if done is not None:
        return RunOutcome(**base, outcome="skipped", run_id=done.run.id,
                          notes=[f"imported before as {done.run.id}"])  # fmt: skip
    for stale in before:  # an import that was cut off: end it (if ours), then import again
        if stale.run.status.value == "RUNNING":
            body = RunEnd(status="FAILED", error="import from MLflow cut off; imported again")
            with contextlib.suppress(DLPlatformError):
                p.http.post(f"runs/{quote(stale.run.id, safe='')}/end", RunView, body)
    copier = _RunCopy(p, client, mlflow, uri, run, tmp / info.run_id)
    error = None
    try:
        copier.copy(experiment, name, versions)
    except (PermissionDenied, Unauthenticated, BackendUnavailable):
        raise  # it would fail every run the same way: one line says so
    except Exception as exc:  # one run's failure is reported; the next run goes on
        error = f"{type(exc).__name__}: {first_line(exc)}"
    return RunOutcome(**base, outcome="failed" if error else "imported", error=error,
                      run_id=copier.run_id, params=copier.params, metric_points=copier.points,
                      artifacts=copier.artifacts, models=copier.models, notes=copier.notes)  # fmt: skip


class _RunCopy:
    """Copies one MLflow run into one tracked run, counting what it copied."""

    def __init__(self, p: Platform, client: Any, mlflow: Any, uri: str, run: Any,
                 tmp: Path) -> None:  # fmt: skip
        self.p, self.client, self.mlflow, self.uri, self.run, self.tmp = (
            p, client, mlflow, uri, run, tmp)  # fmt: skip
        self.run_id: str | None = None
        self.params = self.points = self.artifacts = 0
        self.models: list[ModelOutcome] = []
        self.notes: list[str] = []

    def copy(self, experiment: str, name: str, versions: list[Any]) -> None:
        info, data = self.run.info, self.run.data
        params = chunks(self._keys(data.params, "param"))
        tags = chunks(self._tags(data.tags))
        first_tags = {**tags[0], **_origin_tags(info, experiment)}
        with self.p.runs.start(name, params=params[0], tags=first_tags) as active:
            self.run_id = active.id
            for chunk in params[1:]:
                active.log_params(chunk)
            for more in tags[1:]:
                active.set_tags(more)
            self.params = sum(len(c) for c in params)
            for key in data.metrics:
                self._metric(active, key)
            self._artifacts(active)
            model_tags = {}
            for mv in sorted(versions, key=lambda v: int(v.version)):
                outcome = self._model(active, mv)
                self.models.append(outcome)
                key = clean_key(f"mlflow.model.{mv.name}.{mv.version}")
                model_tags[key] = (f"imported as {outcome.imported_as}" if outcome.imported_as
                                   else outcome.reason)[:_MAX_TAG_CHARS]  # fmt: skip
            self._record(active, experiment, versions)
            if self.notes:
                model_tags["mlflow.import_notes"] = "; ".join(self.notes)[:_MAX_TAG_CHARS]
            active.set_tags({**model_tags, IMPORT_TAG: "complete"})
            status, error = _ENDS.get(info.status, ("FAILED", f"{info.status} in MLflow"))
            active.end(status, error)

    # --- keys and tags -----------------------------------------------------------------------

    def _keys(self, values: dict[str, Any], what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            clean = clean_key(key)
            if clean != key:
                self.notes.append(f"{what} {key!r} is {clean!r}")
            out[clean] = value
        return out

    def _tags(self, tags: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for key, value in self._keys(tags, "tag").items():
            if len(out) >= _MAX_TAGS - 16:  # room for the import's own tags
                self.notes.append(f"{len(tags) - len(out)} tags over the limit are only in "
                                  f"{RECORD_PATH}")  # fmt: skip
                break
            if len(value) > _MAX_TAG_CHARS:
                self.notes.append(f"tag {key!r} cut at {_MAX_TAG_CHARS} characters")
            out[key] = value[:_MAX_TAG_CHARS]
        return out

    # --- metrics -----------------------------------------------------------------------------

    def _metric(self, active: ActiveRun, key: str) -> None:
        history = sorted(self.client.get_metric_history(self.run.info.run_id, key),
                         key=lambda m: (m.step, m.timestamp))  # fmt: skip
        clean = clean_key(key)
        if clean != key:
            self.notes.append(f"metric {key!r} is {clean!r}")
        per_request = max(1, _POINT_BYTES // (len(clean) + 64))
        for start in range(0, len(history), per_request):
            part = history[start : start + per_request]
            body = {
                "keys": [clean] * len(part),
                "values": [json_float(m.value) for m in part],
                "steps": [int(m.step) for m in part],
                "timestamps": [m.timestamp / 1000 for m in part],
            }
            logged = self.p.http.post(f"runs/{quote(active.id, safe='')}/metrics",
                                      MetricsLogged, body)  # fmt: skip
            self.points += logged.count

    # --- artifacts ---------------------------------------------------------------------------

    def _artifacts(self, active: ActiveRun) -> None:
        run_id = self.run.info.run_id
        if not self.client.list_artifacts(run_id):
            return
        root = self.tmp / "run"
        root.mkdir(parents=True)
        local = Path(self.client.download_artifacts(run_id, "", str(root)))
        models = sorted(d.parent for d in local.rglob("MLmodel"))
        for model_dir in models:
            reason = state_dict_file(model_dir)[1]
            where = model_dir.relative_to(local).as_posix() or "."
            self.notes.append(f"MLflow model at {where!r} not copied: {reason}")
        for path in sorted(local.rglob("*")):
            if not path.is_file() or any(m in path.parents for m in models):
                continue
            rel = path.relative_to(local).as_posix()
            target = "/".join(clean_segment(s) for s in rel.split("/"))
            if target != rel:
                self.notes.append(f"artifact {rel!r} is {target!r}")
            active.log_artifact(path, target)
            self.artifacts += 1

    def _record(self, active: ActiveRun, experiment: str, versions: list[Any]) -> None:
        info, data = self.run.info, self.run.data
        record = {
            "tracking_uri": self.uri, "experiment_id": info.experiment_id,
            "experiment_name": experiment, "run_id": info.run_id, "run_name": info.run_name,
            "status": info.status, "user_id": info.user_id, "start_time": info.start_time,
            "end_time": info.end_time, "artifact_uri": info.artifact_uri,
            "params": dict(data.params), "tags": dict(data.tags),
            "model_versions": [{"name": mv.name, "version": str(mv.version),
                                "source": mv.source} for mv in versions],
        }  # fmt: skip
        path = self.tmp / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, sort_keys=True, default=str))
        active.log_artifact(path, RECORD_PATH)

    # --- registered model versions -----------------------------------------------------------

    def _model(self, active: ActiveRun, mv: Any) -> ModelOutcome:
        base = {"mlflow_model": mv.name, "mlflow_version": str(mv.version),
                "mlflow_run_id": mv.run_id}  # fmt: skip
        dest = self.tmp / "models" / clean_segment(mv.name) / str(mv.version)
        dest.mkdir(parents=True)
        try:
            where = self.client.get_model_version_download_uri(mv.name, mv.version)
            local = Path(self.mlflow.artifacts.download_artifacts(
                artifact_uri=where, dst_path=str(dest), tracking_uri=self.uri,
            ))  # fmt: skip
        except Exception as exc:  # its files are gone or unreadable: the run goes on without it
            return ModelOutcome(**base, reason=f"not imported: cannot read its files: "
                                f"{first_line(exc)}")  # fmt: skip
        weights, reason = state_dict_file(local)
        if weights is None:
            return ModelOutcome(**base, reason=f"not imported: {reason}")
        try:
            spec, note = model_spec(model_name(mv.name), mv.tags)
        except ValueError as exc:
            return ModelOutcome(**base, reason=f"not imported: {first_line(exc)}")
        path = f"mlflow_models/{clean_segment(mv.name)}/{mv.version}/{clean_segment(weights.name)}"
        active.log_artifact(weights, path)
        try:
            version: ModelVersion = self.p.http.post(
                f"runs/{quote(active.id, safe='')}/model", ModelVersion,
                spec.model_copy(update={"weights": path}),
            )  # fmt: skip
        except DLPlatformError as exc:  # e.g. not a state dict the gateway reads weights-only
            return ModelOutcome(**base, reason=f"not imported: {exc.message}")
        ref = f"{version.model}@{version.version}"
        aliases = self.client.get_model_version(mv.name, mv.version).aliases or []
        for alias in aliases:
            try:
                self.p.models.promote(version.model, version.version, alias)
            except DLPlatformError as exc:
                note = f"{note}; alias {alias!r} not set: {exc.message}".lstrip("; ")
        return ModelOutcome(**base, imported_as=ref, reason=note)


def _origin_tags(info: Any, experiment: str) -> dict[str, str]:
    tags = {
        RUN_ID_TAG: info.run_id,
        "mlflow.experiment_id": str(info.experiment_id),
        "mlflow.experiment_name": experiment[:_MAX_TAG_CHARS],
        "mlflow.status": str(info.status),
        "mlflow.start_time": iso_time(info.start_time),
    }
    if info.end_time:
        tags["mlflow.end_time"] = iso_time(info.end_time)
    return tags
