"""Top-level commands: ``dlp up``, ``down``, ``status``, ``audit``, ``lineage`` and ``metadata export``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer

from dlplatform.cli._common import (
    HomeOpt,
    JsonOpt,
    console,
    emit,
    fail,
    handle_errors,
    platform,
    settings_for,
)

metadata_app = typer.Typer(no_args_is_help=True, help="The metadata store: export its tables.")


def _progress(message: str) -> None:
    console.print(f"[dim]{message}...[/dim]")


@handle_errors
def up(
    home: str | None = HomeOpt,
    address: str | None = typer.Option(
        None, "--address", help="Join this Ray cluster instead of starting a local head."
    ),
    port: int | None = typer.Option(
        None, "--port", help="HTTP port of the gateway (default 8000)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Start a local Ray head (or join a cluster) and deploy the platform. Harmless when up."""
    from dlplatform import runtime

    settings = settings_for(home, ray_address=address, port=port)
    info = runtime.up(settings, progress=None if as_json else _progress)
    if as_json:
        emit(info, True)
        return
    print(f"API:       {info.api_url}")
    print(f"UI:        {info.ui_url}")
    print(f"dashboard: {info.dashboard_url or '-'}   (internal: never expose it)")
    print(f"token:     {info.token_file}")
    print(
        f'try:       curl -H "Authorization: Bearer $(cat {info.token_file})" {info.api_url}/whoami'
    )


@handle_errors
def down(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Stop what `dlp up` started under this home (and nothing else)."""
    from dlplatform import runtime

    result = runtime.down(settings_for(home), progress=None if as_json else _progress)
    if as_json:
        emit(result, True)
    else:
        print(result.message)


@handle_errors
def status(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Show the cluster, the platform's actors and apps, and their health."""
    from dlplatform import runtime

    info = runtime.status(settings_for(home))
    if as_json:
        emit(info, True)
        return
    if not info.running:
        print(f"not running under {info.home}")
        return
    emit(info.model_dump(exclude={"apps"}), False)
    emit([a.model_dump() for a in info.apps], False, title="Serve applications")


@handle_errors
def audit(
    home: str | None = HomeOpt,
    actor: str | None = typer.Option(None, "--actor", help="Only entries by this user."),
    action: str | None = typer.Option(
        None, "--action", help="Only this action, e.g. users.create."
    ),
    outcome: str | None = typer.Option(None, "--outcome", help="ok, denied or error."),
    limit: int = typer.Option(50, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonOpt,
) -> None:
    """Read the audit log, newest first (admin)."""
    from dlplatform.access import read_audit

    if outcome is not None and outcome not in ("ok", "denied", "error"):
        fail(f"--outcome must be ok, denied or error, not {outcome!r}", 2)
    p = platform(home)
    entries = read_audit(
        p.backend, p.principal, actor=actor, action=action, outcome=outcome,  # type: ignore[arg-type]
        limit=limit, offset=offset,
    )  # fmt: skip
    emit(entries, as_json, columns=["at", "actor", "action", "target", "outcome", "detail"],
         title="audit entries")  # fmt: skip


@handle_errors
def lineage(
    entity: str = typer.Argument(..., help="KIND:ID, e.g. commit:c-1a2b or model_version:m@3"),
    up_: bool = typer.Option(False, "--up", help="What it came from (the default)."),
    down_: bool = typer.Option(False, "--down", help="What came from it."),
    depth: int | None = typer.Option(None, "--depth", min=1, max=64),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Walk the lineage graph from an entity."""
    from dlplatform.lineage import query_lineage

    if up_ and down_:
        fail("give --up or --down, not both", 2)
    direction: Literal["up", "down"] = "down" if down_ else "up"
    p = platform(home)
    nodes = query_lineage(p.backend, p.principal, entity, direction=direction, depth=depth)
    emit(nodes, as_json, columns=["depth", "entity", "relation", "via"], title="lineage nodes")


@metadata_app.command("export")
@handle_errors
def export(
    directory: Path = typer.Argument(..., help="Directory for <table>.parquet files."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Export every metadata table to Parquet (admin; token hashes are left out)."""
    from dlplatform.access import export_metadata

    p = platform(home)
    written = export_metadata(p.backend, p.principal, str(directory.expanduser().resolve()))
    emit({"directory": str(directory), "files": written}, as_json)


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("audit")(audit)
    app.command("lineage")(lineage)
    app.add_typer(metadata_app, name="metadata")
