"""Top-level commands: ``dlp up``, ``down``, ``status``, ``audit``, ``lineage`` and ``metadata export``.

``up``, ``down`` and ``status`` start and inspect local processes (Ray, the platform's actors);
the others are clients of the gateway.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Literal

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import (
    HomeOpt,
    JsonOpt,
    console,
    emit,
    fail,
    handle_errors,
    human_bytes,
    quiet_ray,
    settings_for,
)
from dlplatform.errors import DLPlatformError, IntegrityError, InvalidInput
from dlplatform.metadata.records import check_entity

# Members of the metadata archive: ``<table>.parquet``, nothing else (no folders, no dots).
_MEMBER = re.compile(r"[a-z][a-z0-9_]{0,62}\.parquet")
_COPY_CHUNK = 1 << 20

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
    from dlplatform import runtime  # Ray: only for the commands that start processes

    settings = settings_for(home, ray_address=address, port=port)

    def progress(message: str) -> None:
        # Called first once the database passed its check and Ray is imported, before Ray is
        # started or joined: from here Ray's own lines go to the noise log, not the terminal.
        quiet_ray(settings)
        if not as_json:
            _progress(message)

    info = runtime.up(settings, progress=progress)
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
    from dlplatform import runtime  # Ray: only for the commands that start processes

    settings = settings_for(home)
    if runtime.read_cluster(settings) is not None:  # Ray is joined only when something runs
        quiet_ray(settings)
    result = runtime.down(settings, progress=None if as_json else _progress)
    if as_json:
        emit(result, True)
    else:
        print(result.message)


@handle_errors
def status(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Show the cluster, the platform's actors and apps, and their health."""
    from dlplatform import runtime  # Ray: only for the commands that start processes

    settings = settings_for(home)
    if runtime.read_cluster(settings) is not None:  # Ray is joined only when something runs
        quiet_ray(settings)
    info = runtime.status(settings)
    if as_json:
        emit(info, True)
        return
    if not info.running:
        print(f"not running under {info.home}")
        remote = _configured_platform()
        if remote is not None:
            print(remote)
        return
    shown = info.model_dump(exclude={"apps"})
    shown["resources"] = human_resources(info.resources)
    emit(shown, False)
    emit([a.model_dump() for a in info.apps], False, title="Serve applications")


def _configured_platform() -> str | None:
    """A line about the platform this shell's commands talk to (``--url``, ``DLP_URL`` or a
    profile) when it is not a local one: whether it answers, and as whom. None when none is
    configured: ``status`` is about the local home, and that was said already."""
    # heavy: httpx, kept off `dlp --help`
    import httpx

    from dlplatform.client import profiles

    try:
        target = profiles.resolve(_common.TARGET["url"], None, _common.TARGET["profile"])
    except DLPlatformError:
        return None
    if target.url_source.startswith("local platform"):
        return None
    where = f"commands here use {target.url} (from {target.url_source}):"
    try:
        health = httpx.get(f"{target.url}/api/v1/healthz", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"{where} it does not answer ({type(exc).__name__})"
    if target.token is None:
        return f"{where} it answers ({health.get('status')}); no token for it (`dlp login`)"
    with _common.platform() as p:
        try:
            me = p.whoami()
        except DLPlatformError as exc:
            return (
                f"{where} it answers ({health.get('status')}) but refuses the token: {exc.message}"
            )
    role = getattr(me.role, "value", me.role)
    return f"{where} it answers ({health.get('status')}), signed in as {me.name} ({role})"


def human_resources(resources: dict[str, float]) -> str:
    """Ray's resources as people read them: memory in GiB (Ray counts bytes), counts without
    a trailing .0, e.g. ``CPU 2, memory 7.6 GiB, object_store_memory 3.8 GiB``."""
    parts = []
    for key, value in sorted(resources.items()):
        if "memory" in key:
            parts.append(f"{key} {human_bytes(value)}")
        else:
            parts.append(f"{key} {value:g}")
    return ", ".join(parts)


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
    if outcome is not None and outcome not in ("ok", "denied", "error"):
        fail(f"--outcome must be ok, denied or error, not {outcome!r}", 2)
    p = _common.platform(home)
    entries = p.audit.list(
        actor=actor, action=action, outcome=outcome, limit=limit, offset=offset,  # type: ignore[arg-type]
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
    if up_ and down_:
        fail("give --up or --down, not both", 2)
    direction: Literal["up", "down"] = "down" if down_ else "up"
    try:
        check_entity(entity)  # the gateway checks it too; this names every kind, offline
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    p = _common.platform(home)
    nodes = p.lineage.query(entity, direction, depth)
    emit(nodes, as_json, columns=["depth", "entity", "relation", "via"], title="lineage nodes")


@metadata_app.command("export")
@handle_errors
def export(
    directory: Path = typer.Argument(..., help="Directory for <table>.parquet files."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download every metadata table as DIR/<table>.parquet (admin; token hashes are left out)."""
    out = directory.expanduser().resolve()
    if out.exists() and not out.is_dir():
        fail(f"{directory} exists and is not a directory")
    p = _common.platform(home)
    # The ZIP is spooled to a temporary file: zipfile needs to seek to its directory at the end.
    with tempfile.TemporaryFile() as archive:
        with p.http.stream("GET", "metadata/export", timeout_s=600.0) as response:
            for chunk in response.iter_bytes(_COPY_CHUNK):
                archive.write(chunk)
        archive.seek(0)
        written = _extract_tables(archive, out)
    emit({"directory": str(directory), "files": written}, as_json)


def _extract_tables(archive: IO[bytes], out: Path) -> list[str]:
    """Write the archive's ``<table>.parquet`` members into ``out``; refuse the whole archive,
    writing nothing, if any member is anything else (a path, a link, a folder, a duplicate)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"the metadata export is not a ZIP archive ({exc})") from None
    with zf:
        members = zf.infolist()
        names = [m.filename for m in members]
        for m in members:
            is_link = (m.external_attr >> 28) == 0xA  # S_IFLNK in the Unix mode bits
            if not _MEMBER.fullmatch(m.filename) or m.is_dir() or is_link:
                raise IntegrityError(
                    f"refusing the metadata export: unexpected member {m.filename[:100]!r}"
                )
        if len(set(names)) != len(names):
            raise IntegrityError("refusing the metadata export: a member appears twice")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for m in members:
            target = out / m.filename
            tmp = out / f".{m.filename}.tmp"
            try:
                with zf.open(m) as src, tmp.open("wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)  # zipfile checks each CRC
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            tmp.replace(target)
            written.append(str(target))
    return written


def register(app: typer.Typer) -> None:
    app.command("up")(up)
    app.command("down")(down)
    app.command("status")(status)
    app.command("audit")(audit)
    app.command("lineage")(lineage)
    app.add_typer(metadata_app, name="metadata")
