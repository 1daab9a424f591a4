"""One training run, executed to the end in this process: the body of a run's Ray Job driver
(``entrypoint``) and of a warm-pool job (``pool.PoolJob``, with its own ``fit``).

Imports torch and Ray (through ``runner``): only job drivers and the scheduler's warm-pool
threads import this module, never the gateway or the CLI.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from typing import Any

import ray

from dlplatform.context import Backend
from dlplatform.errors import DLPlatformError, NotFound
from dlplatform.metadata import LineageEdge, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.models import artifact
from dlplatform.train import _startup, runner
from dlplatform.train._lifecycle import (
    ALLOW_CODE_CHANGE_TAG,
    check_code,
    code_version,
    finish,
    load_inputs,
    reproduces,
)
from dlplatform.train.spec import TrainingJobSpec


def execute_training(
    backend: Backend,
    run_id: str,
    *,
    torch_threads: int = 1,
    marks: dict[str, float] | None = None,
    fit: Callable[..., Any] | None = None,
) -> Run:
    """Train the run to the end, register its model, and record the outcome. Never raises for a
    training failure: the run ends FAILED with the reason.

    ``marks``: the startup stages this process has passed already (see ``_startup``).
    ``fit``: what trains, ``runner.fit`` (Ray Train) unless given (the warm pool's
    ``PoolJob.fit``, with the same arguments and outcome).
    """
    store = backend.store
    run = store.get_run(run_id)
    if run.status.is_final:
        return run
    changes: dict[str, Any] = {"status": RunStatus.RUNNING}
    if run.started_at is None:
        changes["started_at"] = utcnow()
    store.update_run(run_id, **changes)
    marks = dict(marks or {})
    try:
        spec = TrainingJobSpec.model_validate_json(run.spec_json)
        inputs = load_inputs(backend, run, spec)  # the owner is checked before user code loads
        commit = inputs.commit
        train_plan = runner.plan(spec, inputs.schema, inputs.label_values, inputs.first_row)
        marks["planned"] = _startup.now()
        code = code_version(spec)
        store.update_run(run_id, dataset_commit=commit.id, code_version=code)
        if (original := reproduces(run)) is not None:  # user code is checked here
            check_code(store.get_run(original), code, ALLOW_CODE_CHANGE_TAG in run.tags)
        store.add_edges(
            [LineageEdge(src=f"commit:{commit.id}", dst=f"run:{run_id}", relation="trained_on")]
        )
        store.log_params(
            run_id,
            {
                **{f"param.{k}": v for k, v in spec.params.items()},
                "model": spec.model, "workers": spec.workers, "epochs": spec.epochs,
                "batch_size": spec.batch_size, "lr": spec.lr, "seed": spec.seed,
                "validation_fraction": spec.validation_fraction,
                "dataset": spec.dataset, "features": ",".join(train_plan.features),
                "label": spec.label,
            },
        )  # fmt: skip
        use_gpu = spec.use_gpu if spec.use_gpu is not None else (
            ray.cluster_resources().get("GPU", 0) > 0
        )  # fmt: skip
        datasets = runner.build_inputs(backend, commit, spec, train_plan)
        marks["data_ready"] = _startup.now()
        marks = _startup.merge(store, run_id, marks)
        try:
            outcome = (fit or runner.fit)(
                run_id=run_id, spec=spec, train_plan=train_plan, datasets=datasets,
                store=store, artifacts=backend.artifacts, use_gpu=bool(use_gpu),
                torch_threads=torch_threads, startup=marks,
            )  # fmt: skip
        except DLPlatformError:
            raise
        except Exception as exc:
            return finish(backend, run_id, RunStatus.FAILED, error=runner.failure_message(exc))
        result: dict[str, Any] = {
            "metrics": outcome.metrics,
            "final_metrics": outcome.final_metrics,
            "train_path": outcome.result_path,
            "use_gpu": bool(use_gpu),
        }
        if outcome.checkpoint_dir is not None:
            try:
                weights = outcome.checkpoint_dir / runner.CHECKPOINT_MODEL
                if not weights.is_file():
                    raise NotFound(f"the chosen checkpoint has no {runner.CHECKPOINT_MODEL}")
                builder = artifact.BUILTIN_BUILDER if spec.is_builtin else spec.model_factory
                mv = artifact.register_version(
                    backend, run=store.get_run(run_id), model_name=spec.registry_name,
                    state_dict_path=weights, model_config=train_plan.model_config,
                    signature=train_plan.signature, builder=builder, metrics=outcome.metrics,
                    params={**spec.params, "epochs": spec.epochs, "batch_size": spec.batch_size,
                            "lr": spec.lr, "seed": spec.seed, "workers": spec.workers},
                    dataset_commit=commit.id, dataset_version_hash=commit.version_hash,
                    code_version=code,
                )  # fmt: skip
            finally:
                shutil.rmtree(outcome.checkpoint_dir, ignore_errors=True)
            result["model_version"] = f"{mv.model}@{mv.version}"
        else:
            result["note"] = "the training function reported no checkpoint; nothing registered"
        return finish(backend, run_id, RunStatus.SUCCEEDED, result_json=json.dumps(result))
    except DLPlatformError as exc:
        return finish(backend, run_id, RunStatus.FAILED, error=exc.message[:2000])
    except Exception as exc:
        return finish(
            backend, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )


def outcome_line(run: Run) -> str:
    """The job log's last line: how the run ended, with its result or error."""
    what = "tuning run" if run.kind == "tune" else "run"
    if run.status is RunStatus.SUCCEEDED:
        return f"{what} {run.id} SUCCEEDED: {run.result_json}"
    return f"{what} {run.id} {run.status.value}: {run.error}"
