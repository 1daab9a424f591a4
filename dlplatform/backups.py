"""Backups and restores of a platform, for every entry point.

- ``backup_stream``: the backup of the running platform as a tar stream (the gateway's
  ``POST /admin/backup``; admin only, audited), taken through the metadata actor.
- ``backup_home``: the same backup of a stopped platform, taken from its home's files.
- ``restore_home``: a new home rebuilt from a backup, with a fresh admin token.

What a backup holds and how it is checked is in ``dlplatform.metadata.backup``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from dlplatform._privatedir import make_private_dir
from dlplatform.access import Permission, Principal, audit, authorize, issue_token
from dlplatform.errors import AlreadyExists, Conflict, NotFound
from dlplatform.metadata import Role
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.backup import (
    MANIFEST_FILE,
    BackupManifest,
    Member,
    RestoreReport,
    backup_members,
    check_backup_target,
    check_database,
    restore_backup,
    to_tar,
    write_backup,
)
from dlplatform.metadata.store import MetadataStore
from dlplatform.runtime import is_running, write_admin_token

if TYPE_CHECKING:
    from dlplatform.config import Settings
    from dlplatform.context import Backend

ACTION = "metadata.backup"


def _summary(manifest: BackupManifest) -> str:
    copies = "with copies" if manifest.has_artifacts else "listed, not copied"
    return (
        f"database of {manifest.metadata.size_bytes} bytes (schema {manifest.schema_version}), "
        f"{len(manifest.artifacts)} artifacts {copies}"
    )


def backup_stream(
    backend: Backend, principal: Principal, *, with_artifacts: bool = False
) -> Iterator[bytes]:
    """The running platform's backup as one tar stream (``metadata.backup.to_tar``); admin only.

    The database snapshot is taken before this returns, so a refusal or a failed snapshot is an
    error answer, not a cut stream. A backup that went through is audited with its size; one
    that failed on the way is audited as an error.
    """
    store = backend.store
    authorize(store, principal, Permission.AUDIT_VIEW, "metadata")
    members = backup_members(store, backend.artifacts, with_artifacts=with_artifacts)
    return _audited(store, principal, members)


def _audited(
    store: MetadataStore, principal: Principal, members: Iterator[Member]
) -> Iterator[bytes]:
    manifests: list[BackupManifest] = []

    def remember(found: Iterator[Member]) -> Iterator[Member]:
        for member in found:
            if member.name == MANIFEST_FILE:
                data = b"".join(member.chunks)
                manifests.append(BackupManifest.model_validate_json(data))
                member = Member(member.name, member.size_bytes, iter([data]))
            yield member

    try:
        yield from to_tar(remember(members))
    except (Exception, GeneratorExit) as exc:
        reason = "the client went away" if isinstance(exc, GeneratorExit) else str(exc)
        with contextlib.suppress(Exception):  # never hide why the backup failed
            store.append_audit(principal.name, ACTION, "metadata", "error", reason[:500])
        raise
    audit(store, principal, ACTION, "metadata", _summary(manifests[0]))


def backup_home(
    settings: Settings, directory: str | Path, *, with_artifacts: bool
) -> BackupManifest:
    """Back up a stopped platform from its home's files into ``directory`` (new or empty).

    Raises:
        Conflict: a platform runs under the home (back it up through its gateway).
        NotFound: the home has no metadata database.
        InvalidInput: ``directory`` is not new or empty, or not writable.
        IntegrityError: the database or an artifact is damaged.
    """
    if is_running(settings):
        raise Conflict(
            f"a platform runs under {settings.home}: back it up through its gateway "
            "(`dlp backup` does when it can reach it)"
        )
    path = settings.metadata_path
    if not path.is_file():
        raise NotFound(f"no metadata database at {path}: nothing to back up")
    check_backup_target(directory)
    check_database(path)
    store = MetadataStore(path)
    try:
        members = backup_members(
            store, ArtifactStore.from_settings(settings), with_artifacts=with_artifacts
        )
        manifest = write_backup(members, directory)
        store.append_audit("system", ACTION, "metadata", "ok", f"offline: {_summary(manifest)}")
    finally:
        store.close()
    return manifest


def _an_admin(store: MetadataStore) -> str | None:
    """The enabled admin a restored home's token is for: ``admin`` if it is one, else the
    first by name."""
    admins = sorted(u.name for u in store.list_users() if u.role == Role.ADMIN and not u.disabled)
    return "admin" if "admin" in admins else next(iter(admins), None)


def restore_home(settings: Settings, directory: str | Path) -> RestoreReport:
    """Rebuild the platform home of ``settings`` from the backup in ``directory``.

    The home must have no metadata database and no running platform. Artifacts go to the
    home's artifact root (``settings.artifact_root_uri``): copied from the backup when it holds
    them, else verified where they are. An enabled admin of the backup gets a new token in
    ``<home>/admin.token`` (the old tokens keep working). On any failure the home is left as it
    was (a home this call created is removed).

    Raises:
        Conflict: a platform runs under the home.
        AlreadyExists: the home has a metadata database.
        NotFound, InvalidInput, IntegrityError: see ``metadata.backup.restore_backup``.
    """
    home = settings.home
    if is_running(settings):
        raise Conflict(
            f"a platform runs under {home}: restore into a new home (--home), not a running one"
        )
    if settings.metadata_path.exists():
        raise AlreadyExists(
            f"{home} already has a metadata database ({settings.metadata_path.name}): "
            "restore into a new home"
        )
    created = not home.exists()
    secrets: list[str] = []

    def on_open(store: MetadataStore) -> None:
        store.append_audit("system", "metadata.restore", "metadata", "ok", f"from {directory}")
        admin = _an_admin(store)
        if admin is not None:
            secret, _ = issue_token(store, admin)
            secrets.append(secret)
            store.append_audit("system", "tokens.create", f"user:{admin}", "ok", "restore")

    try:
        make_private_dir(home)
        artifacts = ArtifactStore.from_settings(settings)
        report = restore_backup(directory, settings.metadata_path, artifacts, on_open=on_open)
    except BaseException:
        if created:
            shutil.rmtree(home, ignore_errors=True)
        raise
    if not secrets:
        return report
    write_admin_token(settings, secrets[0])
    return report.model_copy(update={"admin_token_file": str(settings.admin_token_path)})
