"""``dlp backup`` and ``dlp restore``: a consistent backup of a platform, and a new home rebuilt
from one.

``backup`` goes through the gateway whenever there is a platform to talk to (``--url``,
``DLP_URL``, a profile, or a platform running under the home), and reads the home's files when
its platform is stopped. ``restore`` writes a new home on this machine, from files only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, settings_for
from dlplatform.errors import BackendUnavailable, Unauthenticated

if TYPE_CHECKING:
    from dlplatform.metadata.backup import BackupManifest

_CHUNK = 1 << 20


def _through_gateway(home: str | None) -> bool:
    """Whether the platform to back up answers over HTTP: it runs under the home, or the
    command names another one (``--url``, ``DLP_URL``, a profile)."""
    # heavy: httpx (the client) and the runtime (0.2 s), kept off `dlp --help`
    from dlplatform.client import profiles
    from dlplatform.runtime import is_running

    if is_running(settings_for(home)):
        return True
    env = dict(os.environ)
    if home is not None:
        env["DLP_HOME"] = home
    try:
        target = profiles.resolve(_common.TARGET["url"], None, _common.TARGET["profile"], env)
    except Unauthenticated:  # no URL, no profile, nothing running here
        return False
    return not target.url_source.startswith("local platform")


def _backup_over_http(home: str | None, target: Path, with_artifacts: bool) -> BackupManifest:
    # heavy: httpx, and DuckDB with pyarrow, kept off `dlp --help`
    import httpx

    from dlplatform.metadata.backup import from_tar, write_backup

    p = _common.platform(home)
    params = {"with_artifacts": with_artifacts}
    try:
        with p.http.stream("POST", "admin/backup", params=params, timeout_s=600.0) as response:
            return write_backup(from_tar(response.iter_bytes(_CHUNK)), target)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(
            f"the backup stream from {p.url} broke off ({exc}); nothing of it was kept"
        ) from None


@handle_errors
def backup(
    directory: Path = typer.Argument(..., help="A new or empty directory for the backup."),
    home: str | None = HomeOpt,
    with_artifacts: bool = typer.Option(
        False, "--with-artifacts", help="Copy the artifacts too (default: list and hash them)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Back up the metadata (a consistent snapshot) and a manifest of every artifact (admin).

    Through the gateway while the platform runs; from the home's files while it is stopped.
    """
    from dlplatform.metadata.backup import check_backup_target  # DuckDB: this command only

    target = check_backup_target(directory)
    if _through_gateway(home):
        via = "gateway"
        manifest = _backup_over_http(home, target, with_artifacts)
    else:
        from dlplatform import backups  # DuckDB, pyarrow: this command only

        via = "files"
        manifest = backups.backup_home(settings_for(home), target, with_artifacts=with_artifacts)
    summary = {
        "directory": str(target),
        "via": via,
        "schema_version": manifest.schema_version,
        "database_bytes": manifest.metadata.size_bytes,
        "artifacts": len(manifest.artifacts),
        "artifacts_copied": manifest.has_artifacts,
        "artifact_root": manifest.artifact_root,
    }
    emit(summary, as_json)


@handle_errors
def restore(
    directory: Path = typer.Argument(..., help="A backup made by `dlp backup`."),
    home: str = typer.Option(
        ..., "--home", help="The home to rebuild: new, or without a metadata database."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Rebuild a platform home from a backup, verifying every artifact's sha256.

    Artifacts are copied into the home's artifact root when the backup holds them, otherwise
    checked where the artifact root (DLP_ARTIFACT_ROOT, the home's config.yaml) has them.
    """
    from dlplatform import backups  # DuckDB, pyarrow: this command only

    settings = settings_for(home)
    report = backups.restore_home(settings, directory)
    emit(report, as_json)
    if not as_json:
        print(f"start it with: dlp up --home {settings.home}")


def register(app: typer.Typer) -> None:
    app.command("backup")(backup)
    app.command("restore")(restore)
