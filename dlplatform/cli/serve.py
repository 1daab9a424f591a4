"""``dlp serve``: deploy model versions on Ray Serve, list, undeploy, split traffic."""

from __future__ import annotations

import typer

from dlplatform.cli._common import HomeOpt, JsonOpt, emit, fail, handle_errors, platform

app = typer.Typer(no_args_is_help=True, help="Model deployments on Ray Serve (POST /models/NAME).")


def _row(info: object) -> dict[str, object]:
    from dlplatform.serve import DeploymentInfo

    assert isinstance(info, DeploymentInfo)
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
    from pydantic import ValidationError

    from dlplatform.serve import DeploymentSpec
    from dlplatform.serve import deploy as deploy_model

    options = {
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "max_batch_size": max_batch_size,
        "batch_wait_timeout_s": batch_wait_timeout_s,
        "max_rows": max_rows,
        "shared": shared,
        "allow_anonymous": allow_anonymous,
    }
    options = {k: v for k, v in options.items() if v is not None}
    if "min_replicas" in options and "max_replicas" not in options:
        options["max_replicas"] = max(options["min_replicas"], 1)
    try:
        spec = DeploymentSpec(**options)
    except ValidationError as exc:
        fail("; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors()))
        return
    p = platform(home)
    info = deploy_model(p.backend, p.principal, ref, spec)
    if as_json:
        emit(info, True)
        return
    print(f"{info.name}: version {info.version} serving at POST {info.route} ({info.status})")


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Deployments with status, replicas, batching and request metrics."""
    from dlplatform.serve import list_deployments

    p = platform(home)
    infos = list_deployments(p.backend, p.principal)
    emit(infos if as_json else [_row(i) for i in infos], as_json, title="deployments")


@app.command("undeploy")
@handle_errors
def undeploy(
    name: str = typer.Argument(...), home: str | None = HomeOpt, as_json: bool = JsonOpt
) -> None:
    """Stop serving NAME."""
    from dlplatform.serve import undeploy as undeploy_model

    p = platform(home)
    record = undeploy_model(p.backend, p.principal, name)
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
    from dlplatform.serve import set_traffic

    weights: dict[str, int] = {}
    for item in split:
        version, sep, weight = item.partition("=")
        if not sep or not version.strip().isdigit() or not weight.strip().isdigit():
            fail(f"bad split {item!r}: use VERSION=WEIGHT, e.g. 3=90")
        weights[version.strip()] = int(weight)
    p = platform(home)
    info = set_traffic(p.backend, p.principal, name, weights)
    if as_json:
        emit(info, True)
        return
    shown = " ".join(f"v{v}={w}%" for v, w in info.traffic.items())
    print(f"{name}: traffic {shown} ({info.status})")
