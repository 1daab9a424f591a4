"""``dlp train``: submit training jobs, watch the queue, follow logs and per-epoch metrics.

A client of the gateway (``p.training``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import typer

from dlplatform.cli import _common
from dlplatform.cli import _training_opts as opts
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors
from dlplatform.train._startup import describe

if TYPE_CHECKING:
    from dlplatform.client import Platform
    from dlplatform.train.spec import TrainingJob

app = typer.Typer(no_args_is_help=True, help="Training jobs on the cluster (Ray Train).")

_JOB_COLUMNS = ["id", "status", "owner", "dataset", "model", "workers", "queue", "model_version",
                "created_at"]  # fmt: skip


def _row(job: TrainingJob) -> dict[str, Any]:
    run = job.run
    return {
        "id": run.id,
        "status": run.status.value,
        "owner": run.owner,
        "dataset": job.spec.dataset,
        "model": job.spec.model,
        "workers": job.spec.workers,
        "queue": job.queue_position or "",
        "model_version": job.model_version or "",
        "created_at": run.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "error": run.error or "",
        "waiting_reason": job.waiting_reason or "",
    }


def _wait(p: Platform, job_id: str, epochs: int) -> TrainingJob:
    """Follow a job until it is final: a line per status change and per new epoch row, and a
    progress bar of epochs on stderr. Returns the final job."""
    from rich.console import Console  # with the next: only --wait draws (`dlp --help` stays light)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # see above

    from dlplatform.train.spec import epoch_table  # `dlp --help` loads no spec module

    state: dict[str, Any] = {"shown": 0, "status": "", "job": None}
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} epochs"),
        TimeElapsedColumn(), transient=True, console=Console(stderr=True),
    ) as bar:  # fmt: skip
        task = bar.add_task(f"{job_id} QUEUED", total=epochs)

        def update(job: TrainingJob, points: list[Any]) -> None:
            state["job"] = job
            rows = epoch_table(points)
            if job.status != state["status"]:
                state["status"] = job.status
                extra = (
                    f" (#{job.queue_position}: {job.waiting_reason})" if job.queue_position else ""
                )
                bar.console.print(f"{job_id}: {job.status}{extra}", style="dim")
            for row in rows[state["shown"] :]:
                bar.console.print(_epoch_line(row))
            state["shown"] = max(state["shown"], len(rows))
            done = len({int(r["epoch"]) for r in rows})
            bar.update(task, completed=min(done, epochs),
                       description=f"{job_id} {job.status}{_step_progress(points)}")  # fmt: skip

        p.training.get(job_id).wait(on_update=update)
    final: TrainingJob = state["job"]  # the last update saw the final state
    return final


def _step_progress(points: list[Any]) -> str:
    """The latest step-level progress (``step/...`` points) as a short text, "" when none."""
    latest: dict[str, Any] = {}
    for point in points:
        if point.key.startswith("step/") and (
            point.key not in latest or point.timestamp >= latest[point.key].timestamp
        ):
            latest[point.key] = point
    if "step/loss" not in latest:
        return ""
    text = f" step {latest['step/loss'].step} loss={latest['step/loss'].value:.4g}"
    if "step/samples_per_s" in latest:
        text += f" {latest['step/samples_per_s'].value:,.0f} samples/s"
    return text


def _epoch_line(row: dict[str, float]) -> str:
    parts = [f"epoch {int(row['epoch'])}"]
    for key in ("loss", "val_loss", "val_accuracy", "val_rmse", "throughput_samples_per_s",
                "epoch_time_s", "restarts"):  # fmt: skip
        if key in row:
            parts.append(f"{key}={row[key]:.4g}")
    return " ".join(parts)


@app.command("submit")
@handle_errors
def submit(
    dataset: str = opts.DatasetOpt,
    label: str = opts.LabelOpt,
    model: str = opts.ModelOpt,
    feature: list[str] = opts.FeatureOpt,
    param: list[str] = opts.ParamOpt,
    workers: int = opts.workers_opt(2, "Ray Train workers."),
    gpu: bool | None = typer.Option(
        None, "--gpu/--no-gpu", help="Default: GPUs if the cluster has them."
    ),
    epochs: int = opts.epochs_opt(3),
    batch_size: int = opts.BatchSizeOpt,
    lr: float = opts.LrOpt,
    seed: int = opts.SeedOpt,
    validation_fraction: float = opts.ValidationFractionOpt,
    max_failures: int = typer.Option(1, "--max-failures"),
    priority: int = opts.PriorityOpt,
    model_name: str | None = opts.ModelNameOpt,
    tag: list[str] = typer.Option([], "--tag"),
    wait: bool = typer.Option(False, "--wait", help="Follow the job and show per-epoch metrics."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Queue a training job on a dataset version."""
    spec = opts.training_spec(
        dataset=dataset, label=label, model=model, feature=feature, param=param,
        workers=workers, use_gpu=gpu, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
        validation_fraction=validation_fraction, max_failures=max_failures, priority=priority,
        model_name=model_name, tags=tuple(tag),
    )  # fmt: skip
    p = _common.platform(home)
    job = p.training.submit(spec).status()
    if not wait:
        emit(job if as_json else _row(job), as_json)
        return
    print(f"submitted {job.id} ({job.spec.dataset}, {job.spec.model}, {job.spec.workers} workers)",
          file=sys.stderr)  # fmt: skip
    final = _wait(p, job.id, spec.epochs)
    emit(final if as_json else _row(final), as_json)
    if final.run.status.value != "SUCCEEDED":
        raise typer.Exit(1)


@app.command("list")
@handle_errors
def list_(
    status: list[str] = typer.Option([], "--status", help="QUEUED, RUNNING, SUCCEEDED, ..."),
    limit: int = typer.Option(50, "--limit"),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Training jobs, newest first, with queue positions."""
    p = _common.platform(home)
    jobs = p.training.list(status=[s.upper() for s in status] or None, limit=limit)
    emit(jobs if as_json else [_row(j) for j in jobs], as_json, columns=_JOB_COLUMNS, title="jobs")


@app.command("status")
@handle_errors
def status(
    job_id: str = typer.Argument(..., help="Job (run) id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One job: state, queue position and reason, error, registered model version."""
    job = _common.platform(home).training.get(job_id).status()
    emit(job if as_json else _row(job), as_json)


@app.command("show")
@handle_errors
def show(
    job_id: str = typer.Argument(..., help="Job (run) id."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """One job in full: its state, the startup breakdown (where the time from submit to the
    first training step went) and its last epoch's metrics."""
    handle = _common.platform(home).training.get(job_id)
    job = handle.status()
    if as_json:
        emit(job, True)
        return
    emit(_row(job), False)
    if job.startup:
        stages = [{"stage": name, "seconds": f"{secs:.2f}", "what": describe(name)}
                  for name, secs in job.startup.items() if name != "total"]  # fmt: skip
        stages.append({"stage": "total", "seconds": f"{job.startup['total']:.2f}",
                       "what": "submit to the first training step"})  # fmt: skip
        emit(stages, False, columns=["stage", "seconds", "what"], title="startup")
    rows = handle.epochs()
    if rows:
        print(_epoch_line(rows[-1]))


@app.command("reproduce")
@handle_errors
def reproduce(
    job_id: str = typer.Argument(..., help="The ended job (run) to re-run."),
    allow_code_change: bool = typer.Option(
        False, "--allow-code-change", help="Run it even if the installed code differs (recorded)."
    ),
    wait: bool = typer.Option(False, "--wait", help="Follow it, then compare the metrics."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Re-run a job exactly (its dataset commit, seed, spec and code) and, with --wait, compare
    its per-epoch metrics with the original's: identical on CPU, within a tolerance on GPU.
    Exits 1 when they differ, naming the first difference."""
    p = _common.platform(home)
    again = p.training.get(job_id).reproduce(allow_code_change=allow_code_change)
    job = again.status()
    if not wait:
        emit(job if as_json else _row(job), as_json)
        return
    print(f"submitted {job.id}, a re-run of {job_id}", file=sys.stderr)
    _wait(p, job.id, job.spec.epochs)
    result = again.reproduction()
    if as_json:
        emit(result, True)
    else:
        print(_reproduction_line(result))
    if result.status not in ("identical", "within_tolerance"):
        raise typer.Exit(1)


def _reproduction_line(r: Any) -> str:
    head = f"{r.reproduction} reproduces {r.original}: {r.status}"
    if r.status == "failed":
        return f"{head} ({r.reason})"
    line = f"{head} over {r.epochs} epochs, {len(r.keys)} metrics"
    if r.tolerance:
        line += f" (relative tolerance {r.tolerance:g})"
    if r.first_difference is not None:
        d = r.first_difference
        line += f"; first difference: epoch {d.epoch} {d.key} {d.original} vs {d.reproduced}"
    return line + ("; the code differed (allowed)" if r.code_changed else "")


@app.command("cancel")
@handle_errors
def cancel(
    job_id: str = typer.Argument(...), home: str | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """Cancel a queued or running job (your own, or any as admin)."""
    job = _common.platform(home).training.get(job_id).cancel()
    emit(job if as_json else _row(job), as_json)


@app.command("metrics")
@handle_errors
def metrics(
    job_id: str = typer.Argument(...), home: str | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """Per-epoch metrics (one row per epoch)."""
    rows = _common.platform(home).training.get(job_id).epochs()
    columns = ["epoch", *sorted({k for r in rows for k in r} - {"epoch"})]
    emit([{k: (f"{v:.5g}" if not as_json else v) for k, v in r.items()} for r in rows],
         as_json, columns=columns, title="metrics")  # fmt: skip


@app.command("logs")
@handle_errors
def logs(
    job_id: str = typer.Argument(...),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing until the job ends."),
    home: str | None = HomeOpt,
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print JSON: one object per chunk ({text, offset, next_offset, final}), one per line.",
    ),
) -> None:
    """The job driver's output (Ray Job logs), read a bounded chunk at a time."""
    handle = _common.platform(home).training.get(job_id)
    for chunk in handle.follow_logs(follow=follow):
        sys.stdout.write(chunk.model_dump_json() + "\n" if as_json else chunk.text)
        sys.stdout.flush()
