"""``dlp serve``: deploy model versions on Ray Serve, list, undeploy, split traffic.

A client of the gateway (``p.serving``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, fail, handle_errors
from dlplatform.errors import InvalidInput

if TYPE_CHECKING:
    from dlplatform.serve.spec import DeploymentInfo

app = typer.Typer(no_args_is_help=True, help="Model deployments on Ray Serve (POST /models/NAME).")


def _row(info: DeploymentInfo) -> dict[str, object]:
    m = info.metrics
    return {
        "name": info.name,
        "version": info.version,
        "traffic": " ".join(f"v{v}={w}%" for v, w in info.traffic.items()),
        "status": info.status,
        "replicas": f"{info.replicas} ({info.config.min_replicas}-{info.config.max_replicas})",
        "batch": f"{info.config.max_batch_size}/{info.config.batch_wait_timeout_s}s",
        "shared": "yes" if info.shared else "",
        "requests": int(m.get("requests", 0)),
        "errors": int(m.get("errors", 0)),
        "p50 ms": m.get("p50_ms", ""),
        "p99 ms": m.get("p99_ms", ""),
        "route": info.route,
    }


@app.command("deploy")
@handle_errors
def deploy(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or NAME@ALIAS (default: latest)."),
    min_replicas: int = typer.Option(None, "--min-replicas", help="Autoscaling floor (default 1)."),
    max_replicas: int = typer.Option(
        None, "--max-replicas", help="Autoscaling ceiling (default 1)."
    ),
    max_batch_size: int = typer.Option(
        None, "--max-batch-size", help="Requests per model call (32)."
    ),
    batch_wait_timeout_s: float = typer.Option(None, "--batch-wait-s", help="Batch fill wait (0)."),
    max_rows: int = typer.Option(None, "--max-rows", help="Rows per request (1024)."),
    shared: bool = typer.Option(False, "--shared", help="Serve on the shared multiplexed app."),
    allow_anonymous: bool = typer.Option(False, "--allow-anonymous", help="No token needed."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Serve a model version at POST /models/NAME (a deployed model rolls over without downtime)."""
    # The HTTP client (httpx) loads only for commands that talk to the platform.
    from dlplatform.serve.spec import deployment_spec

    options = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "max_batch_size": max_batch_size,
        "batch_wait_timeout_s": batch_wait_timeout_s,
        "max_rows": max_rows,
        "shared": shared,
        "allow_anonymous": allow_anonymous,
    }
    deployment_spec(**options)  # a bad option fails here, before connecting
    info = _common.platform(home).serving.deploy(ref, **options)
    if as_json:
        emit(info, True)
        return
    print(f"{info.name}: version {info.version} serving at POST {info.route} ({info.status})")


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Deployments with status, replicas, batching and request metrics."""
    infos = _common.platform(home).serving.list()
    emit(infos if as_json else [_row(i) for i in infos], as_json, title="deployments")


@app.command("undeploy")
@handle_errors
def undeploy(
    name: str = typer.Argument(...), home: str | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """Stop serving NAME."""
    record = _common.platform(home).serving.undeploy(name)
    if as_json:
        emit(record, True)
        return
    print(f"{name}: undeployed (was version {record.version})")


@app.command("traffic")
@handle_errors
def traffic(
    name: str = typer.Argument(...),
    split: list[str] = typer.Argument(..., help="VERSION=WEIGHT..., e.g. 3=90 4=10 (sum 100)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Split requests between versions (canary, A/B); every response names its version."""
    weights: dict[str, int] = {}
    for item in split:
        version, sep, weight = item.partition("=")
        if not sep or not version.strip().isdigit() or not weight.strip().isdigit():
            fail(f"bad split {item!r}: use VERSION=WEIGHT, e.g. 3=90")
        weights[version.strip()] = int(weight)
    from dlplatform.serve.spec import check_traffic

    try:
        check_traffic(weights)  # the gateway's check, here so a bad split fails before connecting
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    info = _common.platform(home).serving.traffic(name, weights)
    if as_json:
        emit(info, True)
        return
    shown = " ".join(f"v{v}={w}%" for v, w in info.traffic.items())
    print(f"{name}: traffic {shown} ({info.status})")
