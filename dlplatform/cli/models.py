"""``dlp models``: the model registry (versions, aliases, promotion)."""

from __future__ import annotations

import json

import typer

from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, platform

app = typer.Typer(no_args_is_help=True, help="Registered models, versions and aliases.")


def _version_row(mv: object) -> dict[str, object]:
    from dlplatform.metadata import ModelVersion

    assert isinstance(mv, ModelVersion)
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
    from dlplatform.train import list_models

    p = platform(home)
    emit(list_models(p.backend, p.principal), as_json, columns=["name", "owner", "created_at"],
         title="models")  # fmt: skip


@app.command("show")
@handle_errors
def show(
    ref: str = typer.Argument(..., help="NAME (all versions) or NAME@VERSION / NAME@ALIAS."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A model's versions, or one version in full."""
    from dlplatform.train import get_version, list_versions

    p = platform(home)
    name, _, version = ref.partition("@")
    if not version:
        versions = list_versions(p.backend, p.principal, name)
        emit(versions if as_json else [_version_row(v) for v in versions], as_json,
             title="versions")  # fmt: skip
        return
    emit(get_version(p.backend, p.principal, name, version), as_json)


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
    from dlplatform.train import promote as promote_version

    p = platform(home)
    event = promote_version(p.backend, p.principal, name, version, alias)
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
    from dlplatform.train import alias_history

    p = platform(home)
    emit(alias_history(p.backend, p.principal, name), as_json, title="alias moves")
