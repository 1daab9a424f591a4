"""The Ray Job driver of a training or tuning run: ``python -m dlplatform.train.entrypoint``.

Started by the scheduler with ``--run-id RUN`` (the run is already recorded and QUEUED/RUNNING;
its kind says what runs: ``execute.execute_training``, or ``tune_driver.execute`` for a
search),
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
Exit status: 0 when the run SUCCEEDED (a search: its best model registered), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dlplatform.access import SYSTEM, authenticate
from dlplatform.config import load_settings
from dlplatform.errors import DLPlatformError
from dlplatform.metadata import RunStatus
from dlplatform.train import _startup, service
from dlplatform.train._joblog import route_ray_noise
from dlplatform.train._lifecycle import connect_ray, job_backend
from dlplatform.train.execute import execute_training, outcome_line
from dlplatform.train.spec import TrainingJobSpec

JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def _submission_id() -> str:
    try:
        config = json.loads(os.environ.get(JOB_CONFIG_ENV, "{}"))
        return str(config.get("metadata", {}).get("job_submission_id", ""))
    except ValueError:
        return ""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dlplatform.train.entrypoint",
        description="Run one dlplatform training or tuning job.",
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--run-id", help="An already recorded run (started by the scheduler).")
    group.add_argument("--spec-json", help="A TrainingJobSpec as JSON; the run is recorded here.")
    group.add_argument("--spec", type=Path, help="A file holding the TrainingJobSpec JSON.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    started = _startup.process_start_time() or _startup.now()

    args = _parse(argv)
    try:
        settings = load_settings()
        route_ray_noise(settings.home, args.run_id or _submission_id() or "job")
        connect_ray(settings)
        backend = job_backend(settings)
        if args.run_id:
            run = backend.store.get_run(args.run_id)
        else:
            text = args.spec.read_text() if args.spec else args.spec_json
            spec = TrainingJobSpec.model_validate_json(text)
            principal = authenticate(backend.store, settings.token) if settings.token else SYSTEM
            pinned, commit = service.prepare(backend, principal, spec)
            run = service.create_run(
                backend, principal, pinned, commit, status=RunStatus.RUNNING,
                name=_submission_id(),
            )  # fmt: skip
            print(f"dlplatform run {run.id} recorded for dataset {pinned.dataset}", flush=True)
    except DLPlatformError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed spec (pydantic) or settings
        print(f"error: invalid training spec: {exc}", file=sys.stderr)
        return 1
    if run.kind == "tune":
        from dlplatform.train import tune_driver  # Ray Tune: a training job's driver skips it

        run = tune_driver.execute(backend, run.id)
    else:
        marks = {"driver_started": started, "driver_ready": _startup.now()}
        if not args.run_id:  # recorded here: the run starts with this process
            marks["submitted"] = started
        run = execute_training(backend, run.id, marks=marks)
    ok = run.status is RunStatus.SUCCEEDED
    print(outcome_line(run), file=sys.stdout if ok else sys.stderr, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
