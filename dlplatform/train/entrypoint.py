"""The Ray Job driver of a training run: ``python -m dlplatform.train.entrypoint``.

Started by the scheduler with ``--run-id RUN`` (the run is already recorded and QUEUED/RUNNING),
or directly with ``ray job submit`` and a spec, in which case the run is recorded here::

    RAY_API_SERVER_ADDRESS=http://127.0.0.1:8265 ray job submit \\
        --runtime-env-json '{"env_vars": {"DLP_HOME": "'$HOME'/.dlplatform"}}' -- \\
        python -m dlplatform.train.entrypoint \\
        --spec-json '{"dataset": "digits", "label": "target", "model": "mlp", "workers": 2}'

Settings come from the ``DLP_*`` env vars of the job's runtime_env. The run's owner is the user
of ``DLP_TOKEN`` when set, otherwise ``system`` (whoever can submit Ray jobs is trusted). A job the
scheduler starts (``--run-id``) has its run recorded already, with its owner; its ``DLP_TOKEN`` is
that owner's run token, for the job's code, and is revoked when the run ends. The driver acts as
the owner: an owner that no longer exists (or is disabled, or may no longer run the job's code)
fails the run before any user code is imported, never runs it as anyone else.
Exit status: 0 when the run SUCCEEDED, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import shutil
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from dlplatform.access import SYSTEM, authenticate, revoke_run_tokens
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.errors import DLPlatformError, NotFound
from dlplatform.metadata import LineageEdge, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import _startup
from dlplatform.train._joblog import route_ray_noise
from dlplatform.train._usercode import job_principal
from dlplatform.train.spec import TrainingJobSpec

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def package_version() -> str:
    try:
        return version("dlplatform")
    except PackageNotFoundError:
        return "unknown"


def _sha256_of_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def code_version(spec: TrainingJobSpec) -> str:
    """``dlplatform-<version>+sha256:<hash of the training/inference code>``.

    Built-in models hash ``models.py`` and ``runner.py``; user code hashes the source files of
    the modules of ``model`` and ``model_factory``.
    """
    if spec.is_builtin:  # located, not imported: the gateway checks re-runs without torch
        files = [Path(str(importlib.util.find_spec(f"dlplatform.train.{name}").origin))
                 for name in ("models", "runner")]  # type: ignore[union-attr]  # fmt: skip
    else:
        files = []
        for ref in (spec.model, spec.model_factory):
            if ref:
                module = importlib.import_module(ref.partition(":")[0])
                files.append(Path(inspect.getfile(module)))
    return f"dlplatform-{package_version()}+sha256:{_sha256_of_files(files)}"


def _finish(backend: Backend, run_id: str, status: RunStatus, **changes: Any) -> Run:
    """End the run with ``status`` (unless it was cancelled meanwhile: the user's decision stays)
    and revoke its run token: the job's code can no longer act as the owner. The token goes
    first, so whoever sees the run ended finds its token revoked too."""
    current = backend.store.get_run(run_id)
    ending = current.status if current.status.is_final else status
    revoke_run_tokens(backend.store, run_id, f"its run ended ({ending.value})")
    if not current.status.is_final:
        current = backend.store.update_run(run_id, status=status, ended_at=utcnow(), **changes)
    return current


def execute(
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
    import ray

    from dlplatform import data
    from dlplatform.train import registry, reproduce, runner

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
        principal = job_principal(backend, run, spec)  # before user code is imported
        commit = data.resolve(backend, principal, spec.dataset)
        schema = data.arrow_schema(commit)
        label_values = data.to_arrow(backend, commit, columns=[spec.label]).column(0)
        first_row = None
        if spec.model == "cnn" and spec.features and len(spec.features) == 1:
            table = data.to_arrow(backend, commit, columns=[spec.features[0]])
            first_row = table.slice(0, 1).to_pylist()[0] if table.num_rows else None
        train_plan = runner.plan(spec, schema, label_values, first_row)
        marks["planned"] = _startup.now()
        code = code_version(spec)
        store.update_run(run_id, dataset_commit=commit.id, code_version=code)
        if (original := reproduce.reproduces(run)) is not None:  # user code is checked here
            allowed = reproduce.ALLOW_CODE_CHANGE_TAG in run.tags
            reproduce.check_code(store.get_run(original), code, allowed)
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
            return _finish(backend, run_id, RunStatus.FAILED, error=runner.failure_message(exc))
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
                builder = registry.BUILTIN_BUILDER if spec.is_builtin else spec.model_factory
                mv = registry.register_version(
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
        return _finish(backend, run_id, RunStatus.SUCCEEDED, result_json=json.dumps(result))
    except DLPlatformError as exc:
        return _finish(backend, run_id, RunStatus.FAILED, error=exc.message[:2000])
    except Exception as exc:
        return _finish(
            backend, run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000]
        )


def _submission_id() -> str:
    try:
        config = json.loads(os.environ.get(JOB_CONFIG_ENV, "{}"))
        return str(config.get("metadata", {}).get("job_submission_id", ""))
    except ValueError:
        return ""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dlplatform.train.entrypoint", description="Run one dlplatform training job."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--run-id", help="An already recorded run (started by the scheduler).")
    group.add_argument("--spec-json", help="A TrainingJobSpec as JSON; the run is recorded here.")
    group.add_argument("--spec", type=Path, help="A file holding the TrainingJobSpec JSON.")
    return parser.parse_args(argv)


def _backend(settings: Settings) -> Backend:
    from dlplatform.metadata.actor import connect_store
    from dlplatform.metadata.artifacts import ArtifactStore

    return Backend(
        store=connect_store(settings), artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )  # fmt: skip


def _connect_ray(settings: Settings, attempts: int = 4) -> None:
    """Join the job's cluster; retried, as a busy head can time out a driver's first connect."""
    import time

    import ray

    address = settings.ray_address
    if address:
        # Ray Train's helpers (state API) resolve the cluster from RAY_ADDRESS: keep them on ours.
        os.environ["RAY_ADDRESS"] = address
    for attempt in range(attempts):
        try:
            ray.init(
                address=address, namespace=settings.namespace, log_to_driver=True,
                logging_level="WARNING",
            )  # fmt: skip
            return
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            ray.shutdown()
            time.sleep(2.0 * (attempt + 1))


def main(argv: list[str] | None = None) -> int:
    from dlplatform.train import service

    started = _startup.process_start_time() or _startup.now()

    args = _parse(argv)
    try:
        settings = load_settings()
        route_ray_noise(settings.home, args.run_id or _submission_id() or "job")
        _connect_ray(settings)
        backend = _backend(settings)
        if args.run_id:
            run_id = args.run_id
        else:
            text = args.spec.read_text() if args.spec else args.spec_json
            spec = TrainingJobSpec.model_validate_json(text)
            principal = authenticate(backend.store, settings.token) if settings.token else SYSTEM
            pinned, commit = service.prepare(backend, principal, spec)
            run = service.create_run(
                backend, principal, pinned, commit, status=RunStatus.RUNNING,
                name=_submission_id(),
            )  # fmt: skip
            run_id = run.id
            print(f"dlplatform run {run_id} recorded for dataset {pinned.dataset}", flush=True)
    except DLPlatformError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed spec (pydantic) or settings
        print(f"error: invalid training spec: {exc}", file=sys.stderr)
        return 1
    marks = {"driver_started": started, "driver_ready": _startup.now()}
    if not args.run_id:  # recorded here: the run starts with this process
        marks["submitted"] = started
    run = execute(backend, run_id, marks=marks)
    ok = run.status is RunStatus.SUCCEEDED
    print(outcome_line(run), file=sys.stdout if ok else sys.stderr, flush=True)
    return 0 if ok else 1


def outcome_line(run: Run) -> str:
    """The job log's last line: how the run ended, with its result or error."""
    if run.status is RunStatus.SUCCEEDED:
        return f"run {run.id} SUCCEEDED: {run.result_json}"
    return f"run {run.id} {run.status.value}: {run.error}"


if __name__ == "__main__":
    sys.exit(main())
