"""``dlp models``: the model registry (versions, aliases, promotion).

A client of the gateway (``p.models``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import (
    HomeOpt,
    JsonOpt,
    emit,
    emit_files,
    handle_errors,
    human_bytes,
)

if TYPE_CHECKING:
    from dlplatform.metadata import ModelVersion

app = typer.Typer(no_args_is_help=True, help="Registered models, versions and aliases.")


def _version_row(mv: ModelVersion) -> dict[str, object]:
    metrics = json.loads(mv.metrics_json)
    return {
        "model": mv.model,
        "version": mv.version,
        "aliases": ",".join(mv.aliases),
        "run_id": mv.run_id or "",
        "dataset_commit": mv.dataset_commit or "",
        "val_accuracy": metrics.get("val_accuracy", ""),
        "val_loss": metrics.get("val_loss", ""),
        "created_at": mv.created_at.strftime("%Y-%m-%d %H:%M:%S"),
    }


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """Registered models."""
    emit(_common.platform(home).models.list(), as_json,
         columns=["name", "latest_version", "owner", "created_at"],
         title="models")  # fmt: skip


@app.command("show")
@handle_errors
def show(
    ref: str = typer.Argument(..., help="NAME (all versions) or NAME@VERSION / NAME@ALIAS."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A model's versions, or one version in full."""
    p = _common.platform(home)
    name, _, version = ref.partition("@")
    if not version:
        versions = p.models.versions(name)
        emit(versions if as_json else [_version_row(v) for v in versions], as_json,
             title="versions")  # fmt: skip
        return
    emit(p.models.get(name, version), as_json)


@app.command("promote")
@handle_errors
def promote(
    name: str = typer.Argument(...),
    version: str = typer.Argument(..., help="Version number (or an alias to copy)."),
    alias: str = typer.Option(..., "--alias", help="e.g. production, staging."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Point ALIAS at VERSION; the previous target is kept in the alias history."""
    event = _common.platform(home).models.promote(name, version, alias)
    if as_json:
        emit(event, True)
        return
    before = f" (was {event.previous_version})" if event.previous_version else ""
    print(f"{name}: {alias} -> version {event.version}{before}")


@app.command("history")
@handle_errors
def history(name: str = typer.Argument(...), home: str | None = HomeOpt,
            as_json: bool = JsonOpt) -> None:  # fmt: skip
    """Every alias move of a model."""
    emit(_common.platform(home).models.history(name), as_json, title="alias moves")


@app.command("artifacts")
@handle_errors
def artifacts(
    ref: str = typer.Argument(..., help="NAME@VERSION, NAME@ALIAS or NAME (the latest)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The files of a model version (weights.pt, model.json), with sizes and sha256."""
    files = _common.platform(home).models.artifacts(ref)
    emit_files(files, as_json, "files")


@app.command("download")
@handle_errors
def download(
    ref: str = typer.Argument(..., help="NAME@VERSION, NAME@ALIAS or NAME (the latest)."),
    directory: Path = typer.Argument(..., help="Directory for the files (new or empty)."),
    force: bool = typer.Option(False, "--force", help="Write into a non-empty directory."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download a model version's files, each checked against its sha256; all or nothing."""
    written = _common.platform(home).models.download(ref, directory, force=force)
    rows = [{"file": str(f), "size_bytes": f.stat().st_size} for f in written]
    if as_json:
        emit(rows, True)
        return
    for row in rows:
        print(f"wrote {row['file']} ({human_bytes(int(row['size_bytes']))})")
