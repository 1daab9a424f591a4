"""The Ray Tune driver of a tuning run (see ``tune`` for the search and its spec).

``entrypoint`` runs ``execute`` in the run's Ray Job: Tune starts the trials, each a *driver
function* (``_trial_fn``) that builds and fits a ``TorchTrainer`` with the same training code as
a normal job (``runner.plan``/``build_inputs``/``fit``) and forwards rank-0 metrics to Tune
(``MetricGuard``; RAY_NOTES §2: ``Tuner(TorchTrainer)`` does not work under Train V2). Every
trial is a run of kind ``trial`` (parent: the tuning run); trials that ASHA stops early end
``STOPPED``. When all are done the best finished trial's model is registered.

Imports Ray Tune, Ray Train and torch: only a tuning job's driver (and its trials) load it.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.util.placement_group import PlacementGroup
from ray.util.state import list_placement_groups

from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import AlreadyExists, DLPlatformError, NotFound
from dlplatform.metadata import ArtifactRecord, LineageEdge, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.models import artifact
from dlplatform.models.spec import ModelSignature
from dlplatform.train import runner
from dlplatform.train._lifecycle import (
    close_children,
    code_version,
    finish,
    job_backend,
    load_inputs,
)
from dlplatform.train.spec import TrainingJobSpec
from dlplatform.train.tune import (
    MISSING_METRIC_KEY,
    TRIAL_DRIVER_CPU,
    TuningJobSpec,
    plain_value,
    trial_spec,
)


def trial_run_id(tune_run_id: str, trial_id: str) -> str:
    return f"{tune_run_id}.{trial_id}"


class MetricGuard(TuneReportCallback):  # type: ignore[misc]
    """Forwards rank-0 reports to Tune; a report without the metric stops the whole search."""

    def __init__(self, metric: str) -> None:
        super().__init__()
        self._metric = metric

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:  # fmt: skip
        metric = self._metric
        if metrics and metric not in metrics[0]:
            keys = ",".join(sorted(str(k) for k in metrics[0]))
            metrics = [{**metrics[0], metric: float("nan"), MISSING_METRIC_KEY: keys}]
        super().after_report(run_context, metrics, checkpoint)


def _trial_fn(config: dict[str, Any], ctx: dict[str, Any]) -> None:
    """One trial (a Tune function trainable): record the trial run, fit, keep its weights."""
    backend = job_backend(Settings(**ctx["settings"]))
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
            **{f"space.{k}": plain_value(v) for k, v in config.items()},
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
            extra_callbacks=(MetricGuard(ctx["metric"]),),
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


class TrialStatus(tune.Callback):  # type: ignore[misc]
    """Runs in the Tune driver: records how each trial ended."""

    def __init__(self, store: Any, tune_run_id: str, scheduler: str) -> None:
        self.missing: tuple[str, str] | None = None
        self._store, self._tune_run_id, self._scheduler = store, tune_run_id, scheduler

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any,
                        result: dict[str, Any], **info: Any) -> None:  # fmt: skip
        if MISSING_METRIC_KEY in result and self.missing is None:
            self.missing = (trial_run_id(self._tune_run_id, trial.trial_id),
                            str(result[MISSING_METRIC_KEY]))  # fmt: skip

    def _close(self, trial: Any, status: RunStatus, error: str | None) -> None:
        run_id = trial_run_id(self._tune_run_id, trial.trial_id)
        try:
            current = self._store.get_run(run_id)
        except NotFound:
            return
        if not current.status.is_final:
            self._store.update_run(run_id, status=status, ended_at=utcnow(), error=error)

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
                f"stopped early by {self._scheduler.upper()} after {epochs} epoch(s)",
            )

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any,
                       **info: Any) -> None:  # fmt: skip
        self._close(trial, RunStatus.FAILED, "the trial failed (see its Ray Tune log)")


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


class MissingMetricStopper(tune.Stopper):  # type: ignore[misc]
    """Stops a trial that reported without the metric, and then the whole search."""

    def __init__(self, guard: TrialStatus) -> None:
        self._guard = guard

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return MISSING_METRIC_KEY in result

    def stop_all(self) -> bool:
        return self._guard.missing is not None


def _remove_leftover_groups() -> None:
    """Remove the placement groups this job still holds once every trial has ended.

    A trial that ASHA stops is killed with its TorchTrainer controller; the worker group's
    placement group can outlive it (Train V2 removes it from a cleaner actor that dies with the
    job), holding its CPUs forever and starving the next job's Ray Data tasks.
    """
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

    store = backend.store
    run = store.get_run(run_id)
    if run.status.is_final:
        return run
    store.update_run(run_id, status=RunStatus.RUNNING,
                     **({} if run.started_at else {"started_at": utcnow()}))  # fmt: skip
    try:
        spec = TuningJobSpec.model_validate_json(run.spec_json)
        training = spec.training
        inputs = load_inputs(backend, run, training)  # the owner is checked before user code
        commit = inputs.commit
        # fail before any trial starts
        runner.plan(training, inputs.schema, inputs.label_values, inputs.first_row)
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
            "commit": commit, "schema": inputs.schema, "label_values": inputs.label_values,
            "first_row": inputs.first_row, "use_gpu": use_gpu, "metric": spec.metric,
            "code_version": code,
        }  # fmt: skip
        if spec.scheduler == "asha":
            sched: Any = FinishingASHA(
                training.epochs,
                time_attr="training_iteration", max_t=training.epochs,
                grace_period=min(spec.grace_period, training.epochs),
                reduction_factor=spec.reduction_factor,
            )  # fmt: skip
        else:
            sched = FIFOScheduler()
        status_cb = TrialStatus(store, run_id, spec.scheduler)
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
                callbacks=[status_cb], stop=MissingMetricStopper(status_cb), verbose=0,
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
            return finish(backend, run_id, RunStatus.FAILED, error=message)
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
            return finish(backend, run_id, RunStatus.FAILED,
                           result_json=json.dumps(summary),
                           error=f"no trial finished with a model: {first}"[:2000])  # fmt: skip
        done.sort(key=lambda x: x[0] if spec.mode == "min" else -x[0])
        value, best, res = done[0]
        best_spec = TrainingJobSpec.model_validate_json(best.spec_json)
        with tempfile.TemporaryDirectory(prefix="dlp-tune-") as tmp:
            weights = backend.artifacts.get_file(res["weights_sha256"], Path(tmp) / "model.pt")
            builder = artifact.BUILTIN_BUILDER if training.is_builtin else training.model_factory
            mv = artifact.register_version(
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
        return finish(backend, run_id, RunStatus.SUCCEEDED, result_json=json.dumps(summary))
    except DLPlatformError as exc:
        close_children(store, run_id, RunStatus.CANCELLED, "the search failed")
        return finish(backend, run_id, RunStatus.FAILED, error=exc.message[:2000])
    except Exception as exc:
        close_children(store, run_id, RunStatus.CANCELLED, "the search failed")
        return finish(backend, run_id, RunStatus.FAILED,
                       error=f"{type(exc).__name__}: {exc}"[:2000])  # fmt: skip
