"""``dlp usage`` (what each user, run, deployment or dataset held) and ``dlp quotas`` (the
limits the training scheduler enforces).

A client of the gateway (``p.usage``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

from typing import Any

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, human_bytes

app = typer.Typer(no_args_is_help=True, help="Per-user and per-group quotas (admins set them).")

_BY_HELP = "Group by user, run, deployment or dataset."
_SINCE_HELP = "Start of the window: a span before now (7d, 12h, 30m) or an ISO time."


def _duration(seconds: float) -> str:
    """Resource time as people read it: ``0``, ``12.5 s``, ``7.3 min``, ``4.21 h`` (a short job's
    CPU time is not a row of 0.00 hours)."""
    if seconds <= 0:
        return "0"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def usage(
    by: str = typer.Option("user", "--by", help=_BY_HELP),
    since: str = typer.Option("7d", "--since", help=_SINCE_HELP),
    until: str | None = typer.Option(None, "--until", help="End of the window (default: now)."),
    bucket: str | None = typer.Option(
        None, "--bucket", help="Time-series bucket, e.g. 1h (--json shows the series)."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """CPU time, GPU time, wall time and peak memory held per user, run, deployment or dataset
    (admins see everyone's; others their own). --json adds the time series (in seconds)."""
    report = _common.platform(home).usage.report(by, since, until, bucket)  # type: ignore[arg-type]
    if as_json:
        emit(report, True)
        return
    rows: list[dict[str, Any]] = [
        {by: t.key, "cpu_time": _duration(t.cpu_seconds), "gpu_time": _duration(t.gpu_seconds),
         "wall_time": _duration(t.wall_seconds),
         "peak_mem": human_bytes(t.peak_mem_bytes) if t.peak_mem_bytes is not None else "-",
         "count": t.subjects}
        for t in report.totals
    ]  # fmt: skip
    span = f"{report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC"
    emit(rows, False, title=f"usage by {by}, {span}", ids=[by])


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Every quota (empty cells: no limit)."""
    quotas = _common.platform(home).usage.quotas()
    emit(quotas, as_json, columns=["scope", "name", "max_cpus", "max_gpus",
                                   "gpu_hours_per_day"], title="quotas", ids=["name"])  # fmt: skip


@app.command("set")
@handle_errors
def set_(
    scope: str = typer.Argument(..., help="user or group"),
    name: str = typer.Argument(..., help="The user or group."),
    cpus: float | None = typer.Option(None, "--cpus", help="Most CPUs held at once."),
    gpus: float | None = typer.Option(None, "--gpus", help="Most GPUs held at once."),
    gpu_hours: float | None = typer.Option(
        None, "--gpu-hours-per-day", help="GPU-hours in any 24 hours."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Set the quota of a user or group (admin); a limit left out is lifted."""
    client = _common.platform(home).usage
    quota = client.set_quota(scope, name, max_cpus=cpus, max_gpus=gpus,  # type: ignore[arg-type]
                             gpu_hours_per_day=gpu_hours)  # fmt: skip
    emit(quota, as_json)


@app.command("delete")
@handle_errors
def delete(
    scope: str = typer.Argument(..., help="user or group"),
    name: str = typer.Argument(..., help="The user or group."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Lift every limit of a user or group (admin)."""
    emit(_common.platform(home).usage.delete_quota(scope, name), as_json)  # type: ignore[arg-type]


def register(root: typer.Typer) -> None:
    root.command("usage")(handle_errors(usage))
