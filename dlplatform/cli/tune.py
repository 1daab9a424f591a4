"""``dlp tune``: hyperparameter search on Ray Tune (submit, status with the trial table, list).

A client of the gateway (``p.tuning``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from dlplatform.cli import _common
from dlplatform.cli import _training_opts as opts
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, parse_model

if TYPE_CHECKING:
    from dlplatform.client import Platform
    from dlplatform.train.tune import TuningJob

app = typer.Typer(no_args_is_help=True, help="Hyperparameter search (Ray Tune, ASHA by default).")

_JOB_COLUMNS = ["id", "status", "dataset", "model", "trials", "stopped", "best_trial", "metric",
                "best", "model_version", "created_at"]  # fmt: skip
_TRIAL_COLUMNS = ["trial", "status", "params", "metric", "epochs", "error"]


def _job_row(job: TuningJob) -> dict[str, Any]:
    run = job.run
    return {
        "id": run.id,
        "status": run.status.value,
        "dataset": job.spec.training.dataset,
        "model": job.spec.training.model,
        "trials": len(job.trials),
        "stopped": sum(t.status == "STOPPED" for t in job.trials),
        "best_trial": job.best_trial or "",
        "metric": f"{job.spec.metric} ({job.spec.mode})",
        "best": "" if job.best_metric is None else f"{job.best_metric:.5g}",
        "model_version": job.model_version or "",
        "created_at": run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "error": run.error or "",
        "waiting_reason": job.waiting_reason or "",
    }


def _trial_rows(job: TuningJob) -> list[dict[str, Any]]:
    return [
        {
            "trial": t.id.rsplit(".", 1)[-1],
            "status": t.status,
            "params": " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in sorted(t.params.items())
            ),
            "metric": "" if t.metric is None else f"{t.metric:.5g}",
            "epochs": t.epochs,
            "error": (t.error or "")[:80],
        }
        for t in job.trials
    ]


def _show(job: TuningJob, as_json: bool) -> None:
    if as_json:
        emit(job, True)
        return
    emit(_job_row(job), False)
    emit(_trial_rows(job), False, columns=_TRIAL_COLUMNS,
         title=f"trials by {job.spec.metric} ({job.spec.mode})")  # fmt: skip


@app.command("submit")
@handle_errors
def submit(
    dataset: str = opts.DatasetOpt,
    label: str = opts.LabelOpt,
    space: list[str] = typer.Option(
        ...,
        "--space",
        help="KEY=DIST (repeatable): uniform(a,b), loguniform(a,b), "
        "randint(a,b), choice(x,y,...), grid(x,y,...). lr/batch_size or a model hyperparameter.",
    ),
    samples: int = typer.Option(8, "--samples", help="Trials to draw (x the grid size)."),
    concurrency: int = typer.Option(2, "--concurrency", help="Trials running at once."),
    scheduler: str = typer.Option("asha", "--scheduler", help="asha (early stopping) or fifo."),
    metric: str = typer.Option("val_loss", "--metric", help="Reported metric to optimise."),
    mode: str = typer.Option("min", "--mode", help="min or max."),
    grace_period: int = typer.Option(1, "--grace-period", help="ASHA: epochs before a stop."),
    model: str = opts.ModelOpt,
    feature: list[str] = opts.FeatureOpt,
    param: list[str] = opts.ParamOpt,
    workers: int = opts.workers_opt(1, "Ray Train workers per trial."),
    epochs: int = opts.epochs_opt(4),
    batch_size: int = opts.BatchSizeOpt,
    lr: float = opts.LrOpt,
    seed: int = opts.SeedOpt,
    validation_fraction: float = opts.ValidationFractionOpt,
    priority: int = opts.PriorityOpt,
    model_name: str | None = opts.ModelNameOpt,
    wait: bool = typer.Option(False, "--wait", help="Follow the trials until the search ends."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Queue a hyperparameter search; the best trial's model is registered."""
    from dlplatform.train.tune import TuningJobSpec, parse_space_arg  # `dlp --help` stays light

    entries = dict(parse_space_arg(x) for x in space)
    training = opts.training_spec(
        dataset=dataset, label=label, model=model, feature=feature, param=param,
        workers=workers, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        validation_fraction=validation_fraction, priority=priority, model_name=model_name,
    )  # fmt: skip
    spec = parse_model(
        TuningJobSpec, training=training, space=entries, samples=samples,
        concurrency=concurrency, scheduler=scheduler, metric=metric, mode=mode,
        grace_period=grace_period,
    )  # fmt: skip
    p = _common.platform(home)
    job = p.tuning.submit(spec).status()
    if not wait:
        emit(job if as_json else _job_row(job), as_json)
        return
    print(f"submitted {job.id}: {spec.num_trials} trials, {spec.effective_concurrency} at a time",
          file=sys.stderr)  # fmt: skip
    final = _follow(p, job.id, spec.num_trials)
    _show(final, as_json)
    if final.status != "SUCCEEDED":
        raise typer.Exit(1)


def _follow(p: Platform, job_id: str, total: int) -> TuningJob:
    """Follow a search until it is final: a line per trial state change and a progress bar of
    finished trials on stderr."""
    from rich.console import Console  # with the next: only --wait draws (`dlp --help` stays light)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # see above

    seen: dict[str, str] = {}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} trials"),
        TimeElapsedColumn(), transient=True, console=Console(stderr=True),
    ) as bar:  # fmt: skip
        task = bar.add_task(f"{job_id} QUEUED", total=total)

        def update(job: TuningJob) -> None:
            for t in job.trials:
                if seen.get(t.id) != t.status:
                    seen[t.id] = t.status
                    bar.console.print(f"{t.id}: {t.status}", style="dim")
            done = sum(t.status in {"SUCCEEDED", "STOPPED", "FAILED", "CANCELLED"}
                       for t in job.trials)  # fmt: skip
            bar.update(task, completed=min(done, total), description=f"{job_id} {job.status}")

        final: TuningJob = p.tuning.get(job_id).wait(on_update=update)
        return final


@app.command("status")
@handle_errors
def status(
    job_id: str = typer.Argument(..., help="Tuning job (run) id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One search: state, best trial, registered version, and the trial table by the metric."""
    _show(_common.platform(home).tuning.get(job_id).status(), as_json)


@app.command("list")
@handle_errors
def list_(
    status: list[str] = typer.Option([], "--status", help="QUEUED, RUNNING, SUCCEEDED, ..."),
    limit: int = typer.Option(50, "--limit"),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Tuning jobs, newest first."""
    jobs = _common.platform(home).tuning.list(
        status=[s.upper() for s in status] or None, limit=limit
    )
    emit(jobs if as_json else [_job_row(j) for j in jobs], as_json, columns=_JOB_COLUMNS,
         title="tuning jobs")  # fmt: skip


@app.command("cancel")
@handle_errors
def cancel(
    job_id: str = typer.Argument(...), home: str | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """Cancel a queued or running search (all its trials stop)."""
    job = _common.platform(home).tuning.get(job_id).cancel()
    emit(job if as_json else _job_row(job), as_json)
