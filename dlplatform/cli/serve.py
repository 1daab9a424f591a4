"""``dlp serve``: deploy model versions on Ray Serve, list, undeploy, split traffic, roll out.

A client of the gateway (``p.serving``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, fail, handle_errors
from dlplatform.errors import InvalidInput

if TYPE_CHECKING:
    from dlplatform.serve.spec import DeploymentInfo, RolloutStatus

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
    from dlplatform.serve.spec import check_traffic  # heavy: its models (30 ms of `dlp --help`)

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


def _print_rollout(info: RolloutStatus) -> None:
    steps = " -> ".join(f"{s}%" for s in info.spec.steps)
    print(f"{info.deployment}: rollout {info.id} of v{info.to_version} over v{info.from_version} "
          f"({steps}): {info.status} at step {info.percent}%")  # fmt: skip
    if info.reason:
        print(f"  reason: {info.reason}")
    for e in info.events:
        decision = f" [{e.decision}]" if e.decision else ""
        print(f"  {e.seq:>3} {e.at[:19]} {e.kind:<8} {e.percent:>3}%{decision} {e.message}")
        for check in e.numbers.get("checks", []):
            print(f"        {check['name']}: {check['verdict']} ({check['detail']})")


@app.command("rollout")
@handle_errors
def rollout(
    name: str = typer.Argument(..., help="The deployment, or `status` or `abort` followed by it."),
    version: str = typer.Argument(
        ..., help="The version to roll out (the deployment, after `status` or `abort`)."
    ),
    steps: str = typer.Option(None, "--steps", help="Percents per step, e.g. 5,25,50,100."),
    min_dwell_s: float = typer.Option(None, "--min-dwell-s", help="Shortest step (60 s)."),
    min_requests: int = typer.Option(None, "--min-requests", help="Requests per step (100)."),
    min_labels: int = typer.Option(None, "--min-labels", help="Labelled rows per step (0)."),
    alpha: float = typer.Option(None, "--alpha", help="Significance level of rate tests (0.05)."),
    min_samples: int = typer.Option(None, "--min-samples", help="Samples a test needs (100)."),
    latency_tolerance: float = typer.Option(
        None, "--latency-tolerance", help="Allowed relative rise of p99 latency (0.2)."
    ),
    latency_slack_ms: float = typer.Option(
        None, "--latency-slack-ms", help="Allowed absolute rise of p99 latency (1 ms)."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Roll VERSION out to NAME in judged steps (`dlp serve rollout status NAME`: its progress;
    `dlp serve rollout abort NAME`: stop it, all traffic back on the version it started from)."""
    platform = _common.platform
    if name in ("status", "abort"):
        serving = platform(home).serving
        status = (serving.rollout_status if name == "status" else serving.abort_rollout)(version)
        if as_json:
            emit(status, True)
        else:
            _print_rollout(status)
        return
    if not version.isdigit():
        fail(f"bad version {version!r}: use a version number, e.g. 4")
    from dlplatform.serve.spec import rollout_spec  # heavy: its models (30 ms of `dlp --help`)

    percents: list[int] | None = None
    if steps is not None:
        parts = [p.strip() for p in steps.split(",")]
        if not all(p.isdigit() for p in parts):
            fail(f"bad --steps {steps!r}: use percents, e.g. 5,25,50,100")
        percents = [int(p) for p in parts]
    options = {"steps": percents, "min_dwell_s": min_dwell_s, "min_requests": min_requests,
               "min_labels": min_labels, "alpha": alpha, "min_samples": min_samples,
               "latency_tolerance": latency_tolerance, "latency_slack_ms": latency_slack_ms}  # fmt: skip
    rollout_spec(**options)  # a bad option fails here, before connecting
    started = platform(home).serving.rollout(name, int(version), **options)
    if as_json:
        emit(started, True)
        return
    _print_rollout(started)
