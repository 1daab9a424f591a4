"""The Ray Job driver of a tuning run: ``python -m dlplatform.train._tune_entry --run-id RUN``.

Started by the training scheduler for runs of kind ``tune`` (already recorded and QUEUED or
RUNNING). Settings come from the ``DLP_*`` env vars of the job's runtime_env; its ``DLP_TOKEN``
is a run token of the tuning run's owner (for the trials' code), revoked when the search ends.
Exit status: 0 when the search SUCCEEDED (best model registered), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

from dlplatform.config import load_settings
from dlplatform.errors import DLPlatformError
from dlplatform.metadata import RunStatus


def main(argv: list[str] | None = None) -> int:
    from dlplatform.train import tune
    from dlplatform.train._joblog import route_ray_noise
    from dlplatform.train.entrypoint import _backend, _connect_ray

    parser = argparse.ArgumentParser(
        prog="python -m dlplatform.train._tune_entry", description="Run one dlplatform tuning job."
    )
    parser.add_argument("--run-id", required=True, help="A recorded tuning run (kind 'tune').")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        route_ray_noise(settings.home, args.run_id)
        _connect_ray(settings)
        backend = _backend(settings)
    except DLPlatformError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    run = tune.execute(backend, args.run_id)
    if run.status is RunStatus.SUCCEEDED:
        print(f"tuning run {run.id} SUCCEEDED: {run.result_json}", flush=True)
        return 0
    print(f"tuning run {run.id} {run.status.value}: {run.error}", file=sys.stderr, flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main())
