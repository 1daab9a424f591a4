"""Built-in pipelines, registered under their names (``registry.BUILTIN``).

``train_and_deploy``, typically on each new commit of a dataset (``dlp workflows on-commit DATASET
train_and_deploy --param label=y``): train on the commit → evaluate on the held-out split → gate
on acceptance criteria → promote to ``production`` and deploy (or, with ``rollout``, roll the
version out in judged steps: ``serve.rollout``); a rejected model stops the run at the gate with
the reasons as its error, and nothing is promoted or deployed.

``monitor``, typically on a schedule (``dlp workflows schedule monitor --cron "*/15 * * * *"
--param deployment=NAME``): accuracy of the deployed model from feedback labels over a window, and
input drift against the training commit's column statistics; a breach raises an alert row, a log
line and, when ``webhook_url`` is given, a JSON POST to it. The URL must be a public http(s) one
unless the admin allows its host (``dlplatform.alerts``): checked when the monitor is created and
again, with the host resolved, when it sends.

Steps act as the run's owner (its permissions apply) through the components' public APIs.

Recovery: ``train_model`` submits its training job under a key of its workflow run and step
(``StepContext.idempotency_key``), so running the step again (the manager crashed mid-step and
continued the run, or a person resumed it) trains once, not twice: a job of an earlier execution
that is queued or running is awaited, and one that succeeded is used as it is. A job that failed
or was cancelled is not used: a new one is submitted under the next key, as a retry of the step
would (logged; the earlier job stays in the history). So a job that fails while the manager is
down is trained again when the run continues, where a manager that stayed up would have failed
the step; to stop a pipeline, cancel its workflow run.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dlplatform import models, serve, train
from dlplatform.access import Principal, run_owner
from dlplatform.alerts import check_webhook_url, post_webhook
from dlplatform.context import Backend
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata import Deployment, ModelVersion, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.serve.spec import rollout_spec
from dlplatform.workflows._task import StepContext, current
from dlplatform.workflows.dag import building_settings
from dlplatform.workflows.steps import StepNode, step, workflow

if TYPE_CHECKING:
    from dlplatform.train import TrainingJob, TrainingJobSpec

log = logging.getLogger("dlplatform.workflows.pipelines")

PRODUCTION = "production"


class GateRejected(Exception):
    """The candidate model did not meet the acceptance criteria (the reasons are the message)."""


def _current() -> StepContext:
    ctx = current()
    if ctx is None:
        raise RuntimeError("this step runs only inside a workflow run")
    return ctx


def _context() -> tuple[Backend, Principal]:
    ctx = _current()
    backend = ctx.backend()
    # A missing or disabled owner fails the step (PermissionDenied), never runs it as admin.
    return backend, run_owner(backend.store, ctx.owner)


def _metric(version: ModelVersion, key: str) -> float | None:
    value = json.loads(version.metrics_json or "{}").get(key)
    return float(value) if isinstance(value, int | float) else None


# --- train_and_deploy ------------------------------------------------------------------------


def training_job(
    backend: Backend, principal: Principal, spec: TrainingJobSpec, ctx: StepContext
) -> TrainingJob:
    """The training job of the step ``ctx``: one an earlier execution of the step submitted, if
    it is queued, running or succeeded; else a new one (see the module docstring).

    The n-th job a step submits has the key ``ctx.idempotency_key("train", n)``: the keys are
    tried in order, passing over jobs that failed or were cancelled, until one names a job to
    use or is free (then ``train.submit`` records it with the new job).
    """
    n = 1
    while True:
        key = ctx.idempotency_key("train", n)
        job = train.submit(backend, principal, spec, idempotency_key=key)
        if job.run.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
            return job
        log.warning(
            "workflow run %s step %s: earlier training job %s %s; submitting another",
            ctx.run_id, ctx.step_id, job.id, job.status,
        )  # fmt: skip
        n += 1


@step(num_cpus=0)  # the training job takes its own resources through the train scheduler
def train_model(
    dataset: str, commit: str, label: str, options: dict[str, Any]
) -> dict[str, Run | ModelVersion]:
    """Submit a training job on ``dataset@commit`` (or find the one an earlier execution of this
    step submitted) and wait for its model version."""
    backend, principal = _context()
    spec = train.TrainingJobSpec(dataset=f"{dataset}@{commit}", label=label, **options)
    job = training_job(backend, principal, spec, _current())
    job = train.wait_job(backend, principal, job.id)
    if job.status != "SUCCEEDED" or not job.model_version:
        raise RuntimeError(f"training job {job.id} {job.status}: {job.run.error or 'no model'}")
    name, _, number = job.model_version.partition("@")
    version = models.get_version(backend, principal, name, int(number))
    # A step's output is read by every workflow.view holder: no env var values in it.
    return {"run": train.masked_run(job.run), "model_version": version}


@step(num_cpus=0)
def evaluate(trained: dict[str, Any], metric: str) -> dict[str, Any]:
    """The candidate's score on the held-out (validation) split, and production's, if any."""
    backend, principal = _context()
    candidate: ModelVersion = trained["model_version"]
    result: dict[str, Any] = {
        "model": candidate.model,
        "version": candidate.version,
        "metric": metric,
        "candidate": _metric(candidate, metric),
        "production": None,
        "production_version": None,
    }
    try:
        prod = models.get_version(backend, principal, candidate.model, PRODUCTION)
    except NotFound:
        return result
    if prod.version != candidate.version:
        result["production"] = _metric(prod, metric)
        result["production_version"] = prod.version
    return result


@step(num_cpus=0)
def gate(evaluation: dict[str, Any], min_score: float, max_regression: float) -> dict[str, Any]:
    """Accept the candidate, or raise ``GateRejected`` naming every unmet criterion."""
    metric, score, prod = evaluation["metric"], evaluation["candidate"], evaluation["production"]
    reasons = []
    if score is None:
        reasons.append(f"the model version has no {metric} metric")
    else:
        if score < min_score:
            reasons.append(f"{metric} {score:.4f} < {min_score}")
        if prod is not None and score < prod - max_regression:
            reasons.append(
                f"{metric} {score:.4f} is worse than production v{evaluation['production_version']} "
                f"({prod:.4f}) by more than {max_regression}"
            )
    if reasons:
        raise GateRejected(
            f"{evaluation['model']}@{evaluation['version']} rejected: " + "; ".join(reasons)
        )
    return {**evaluation, "accepted": True}


@step(num_cpus=0)
def deploy_model(accepted: dict[str, Any], deployment: str | None) -> Deployment:
    """Promote the accepted version to ``production`` and serve it (rolling update if deployed)."""
    backend, principal = _context()
    model, version = accepted["model"], accepted["version"]
    models.promote(backend, principal, model, version, PRODUCTION)
    info = serve.deploy(backend, principal, f"{model}@{version}")
    name = deployment or info.name
    return backend.store.get_deployment(name)


class RolloutFailed(Exception):
    """The candidate's rollout ended without promotion (the reason is the message)."""


ROLLOUT_POLL_S = 1.0


@step(num_cpus=0)
def roll_out_model(accepted: dict[str, Any], rollout: dict[str, Any]) -> dict[str, Any]:
    """Roll the accepted version out to its model's deployment in judged steps
    (``serve.start_rollout``) and wait for the outcome: promoted, or ``RolloutFailed``. A model
    not deployed yet has nothing to compare with: it is promoted and deployed directly."""
    backend, principal = _context()
    model, version = accepted["model"], accepted["version"]
    spec = serve.RolloutSpec.model_validate(rollout)
    try:
        backend.store.get_deployment(model)
    except NotFound:
        models.promote(backend, principal, model, version, spec.promote_alias)
        info = serve.deploy(backend, principal, f"{model}@{version}")
        return {"model": model, "version": version, "status": "DEPLOYED", "deployment": info.name}
    try:  # the step run again (the manager restarted): follow the rollout it started
        status: serve.RolloutStatus | None = serve.rollout_status(backend, principal, model)
    except NotFound:
        status = None
    if status is None or status.to_version != version:
        status = serve.start_rollout(backend, principal, model, version, spec)
    while status.status == "RUNNING":
        time.sleep(ROLLOUT_POLL_S)
        status = serve.rollout_status(backend, principal, model)
    if status.status != "PROMOTED":
        raise RolloutFailed(
            f"rollout {status.id} of {model}@{version} {status.status}: {status.reason}"
        )
    return {"model": model, "version": version, "status": status.status, "rollout": status.id}


@workflow
def train_and_deploy(
    dataset: str,
    commit: str,
    label: str,
    model: str = "mlp",
    epochs: int = 3,
    workers: int = 1,
    params: dict[str, Any] | None = None,
    model_name: str | None = None,
    training: dict[str, Any] | None = None,
    metric: str = "val_accuracy",
    min_score: float = 0.9,
    max_regression: float = 0.02,
    rollout: dict[str, Any] | None = None,
) -> StepNode:
    """Train on ``dataset@commit`` → evaluate → gate (``metric >= min_score`` and not worse than
    production by more than ``max_regression``) → promote to production and deploy.

    ``training`` holds further ``TrainingJobSpec`` fields (e.g. ``lr``, ``batch_size``, ``seed``).
    ``rollout`` (``RolloutSpec`` fields, ``{}`` for the defaults) ends the run in a judged rollout
    of the deployed model instead of a direct deploy: promoted when every step passes, the run
    failing when it is rolled back.
    """
    if not 0 <= min_score <= 1 or not 0 <= max_regression <= 1:
        raise InvalidInput("min_score and max_regression must be within 0..1")
    options: dict[str, Any] = {**(training or {}), "model": model, "epochs": epochs}
    options["workers"] = workers
    if params:
        options["params"] = params
    if model_name:
        options["model_name"] = model_name
    trained = train_model.bind(dataset, commit, label, options)
    accepted = gate.bind(evaluate.bind(trained, metric), min_score, max_regression)
    if rollout is not None:  # checked now, so a bad spec refuses the run before it trains
        spec = rollout_spec(**rollout)
        return roll_out_model.bind(accepted, spec.model_dump(mode="json"))
    return deploy_model.bind(accepted, None)


# --- monitor ---------------------------------------------------------------------------------


def _rows(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@step(num_cpus=0)
def measure(deployment: str, window_minutes: float, max_predictions: int) -> dict[str, Any]:
    """Accuracy from feedback labels and input drift over the window, for one deployment."""
    backend, principal = _context()
    store = backend.store
    info = serve.get_deployment(backend, principal, deployment)
    since = utcnow() - timedelta(minutes=window_minutes)
    predictions = [
        p for p in store.list_predictions(deployment, limit=max_predictions) if p.at >= since
    ]
    correct = labelled = 0
    inputs: list[Any] = []
    for p in predictions:
        inputs.extend(_rows(json.loads(p.inputs_json)) if p.inputs_json else [])
        labels = store.list_feedback(p.request_id)
        if not labels:
            continue
        outputs = _rows(json.loads(p.outputs_json)) if p.outputs_json else []
        truth = _rows(json.loads(labels[-1].label_json))
        for out, lab in zip(outputs, truth, strict=False):
            labelled += 1
            correct += int(out == lab or str(out) == str(lab))
    version = store.get_model_version(info.model, info.version)
    drift = _drift(backend, version, inputs)
    return {
        "deployment": deployment,
        "model": info.model,
        "version": info.version,
        "predictions": len(predictions),
        "labelled": labelled,
        "accuracy": correct / labelled if labelled else None,
        "drift": drift,
    }


def _drift(backend: Backend, version: ModelVersion, inputs: list[Any]) -> dict[str, float]:
    """Per numeric feature: |recent mean - training mean| / training range (0 = no shift)."""
    if not inputs or not version.dataset_commit:
        return {}
    try:
        signature = json.loads(version.signature_json)
        stats_json = backend.store.get_commit(version.dataset_commit).stats_json or "{}"
        stats = {c["name"]: c for c in json.loads(stats_json).get("columns", [])}
    except (ValueError, KeyError, TypeError):
        return {}
    features = list(signature.get("features", ()))
    drift: dict[str, float] = {}
    for i, name in enumerate(features):
        col = stats.get(name)
        if not col or not isinstance(col.get("mean"), int | float):
            continue
        lo, hi = col.get("min"), col.get("max")
        numeric = isinstance(lo, int | float) and isinstance(hi, int | float)
        span = float(hi) - float(lo) if numeric else 0.0
        values = []
        for row in inputs:
            if isinstance(row, dict):
                v = row.get(name)
            else:
                v = row[i] if isinstance(row, list) and i < len(row) else None
            if isinstance(v, int | float):
                values.append(float(v))
        if values:
            shift = abs(sum(values) / len(values) - float(col["mean"]))
            drift[name] = round(shift / span, 4) if span > 0 else round(shift, 4)
    return drift


@step(num_cpus=0)
def check_and_alert(
    measured: dict[str, Any], min_accuracy: float, max_drift: float, webhook_url: str | None
) -> dict[str, Any]:
    """Raise an alert (row, log line, optional webhook) for each breached threshold. A refused
    or failed webhook is logged and reported as ``webhook``; the alert rows exist anyway."""
    backend, _ = _context()
    name = measured["deployment"]
    problems = []
    accuracy = measured["accuracy"]
    if accuracy is not None and accuracy < min_accuracy:
        problems.append(
            ("accuracy", f"accuracy {accuracy:.3f} < {min_accuracy} over {measured['labelled']} "
                         f"labelled rows of {name} ({measured['model']}@{measured['version']})")
        )  # fmt: skip
    drifted = {k: v for k, v in measured["drift"].items() if v > max_drift}
    if drifted:
        problems.append(("drift", f"input drift of {name} above {max_drift}: {drifted}"))
    alerts = []
    webhook: str | None = None
    for kind, message in problems:
        alert = backend.store.create_alert(kind, f"deployment:{name}", message, "warning")
        alerts.append(alert.id)
        log.warning("monitor alert %s: %s", kind, message)
        if webhook_url:
            body = {"kind": kind, "deployment": name, "message": message}
            webhook = _post(webhook_url, body, backend.settings.webhook_allowed_hosts)
    return {**measured, "alerts": alerts, "ok": not problems, "webhook": webhook}


def _post(url: str, body: dict[str, Any], allowed_hosts: list[str]) -> str:
    """Send one alert; the outcome in words (the alert row exists already: a refused or dead
    webhook must not fail the run)."""
    try:
        status = post_webhook(url, body, allowed_hosts=allowed_hosts)
    except InvalidInput as exc:
        log.warning("monitor webhook refused: %s", exc.message)
        return f"refused: {exc.message}"
    except OSError as exc:
        log.warning("monitor webhook %s failed: %s", url[:80], exc)
        return f"failed: {exc}"
    return f"sent (HTTP {status})"


@workflow
def monitor(
    deployment: str,
    window_minutes: float = 60,
    min_accuracy: float = 0.9,
    max_drift: float = 0.2,
    webhook_url: str | None = None,
    max_predictions: int = 1000,
) -> StepNode:
    """Accuracy (from feedback) and drift of ``deployment`` over the last ``window_minutes``."""
    if window_minutes <= 0 or not 1 <= max_predictions <= 100_000:
        raise InvalidInput("window_minutes must be > 0 and max_predictions within 1..100000")
    if webhook_url is not None:  # checked again, with the host resolved, when it sends
        settings = building_settings()
        check_webhook_url(webhook_url, settings.webhook_allowed_hosts if settings else ())
    measured = measure.bind(deployment, window_minutes, max_predictions)
    return check_and_alert.bind(measured, min_accuracy, max_drift, webhook_url)
