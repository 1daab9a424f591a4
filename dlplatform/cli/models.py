"""``dlp models``: the model registry (versions, aliases, promotion).

A client of the gateway (``p.models``): nothing here imports Ray, torch or a service module.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors

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
    emit(_common.platform(home).models.list(), as_json, columns=["name", "owner", "created_at"],
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
