"""Service functions for the audit log and the metadata export: ``read_audit``,
``export_metadata``, ``export_metadata_archive`` (admin only; each read is audited).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pyarrow.parquet as pq

from dlplatform.access.auth import Permission, Principal, audit, authorize
from dlplatform.errors import InvalidInput
from dlplatform.metadata import AuditEntry
from dlplatform.metadata.records import check_page
from dlplatform.metadata.store import EXPORTED_TABLES

if TYPE_CHECKING:
    from dlplatform.context import Backend

MAX_AUDIT_PAGE = 1000


def read_audit(
    backend: Backend,
    principal: Principal,
    *,
    actor: str | None = None,
    action: str | None = None,
    outcome: Literal["ok", "denied", "error"] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[AuditEntry]:
    """Audit entries, newest first, filtered and paginated (admin only). The read is audited."""
    check_page(limit, offset, MAX_AUDIT_PAGE)
    if outcome is not None and outcome not in ("ok", "denied", "error"):
        raise InvalidInput(f"outcome must be ok, denied or error, got {str(outcome)[:20]!r}")
    store = backend.store
    authorize(store, principal, Permission.AUDIT_VIEW, "audit_log")
    entries = store.list_audit(
        actor=actor, action=action, outcome=outcome, limit=limit, offset=offset
    )
    audit(store, principal, "audit.view", "audit_log", f"returned {len(entries)} entries")
    return entries


def export_metadata(backend: Backend, principal: Principal, directory: str) -> list[str]:
    """Write every metadata table to ``<directory>/<table>.parquet`` (admin only; audited).

    ``directory`` is a path on the machine of the metadata actor (the head node). Token hashes
    are never exported.
    """
    store = backend.store
    authorize(store, principal, Permission.AUDIT_VIEW, "metadata")
    written = [str(p) for p in store.export_parquet(directory)]
    audit(store, principal, "metadata.export", "metadata", f"{len(written)} tables to {directory}")
    return written


METADATA_ARCHIVE = "dlplatform-metadata.zip"
"""File name of the archive ``export_metadata_archive`` builds (and the gateway's download)."""


def export_metadata_archive(backend: Backend, principal: Principal) -> Path:
    """Every metadata table as ``<table>.parquet`` in one ZIP archive (admin only; audited).

    The archive is built on this process's disk (the gateway's node, which need not be the
    metadata actor's): the tables come through the store one at a time. It lies alone in a fresh
    temporary directory that the caller deletes (``path.parent``) when done; on error nothing is
    left behind. Member names are the table names only. Token hashes are never exported.
    """
    store = backend.store
    authorize(store, principal, Permission.AUDIT_VIEW, "metadata")
    workdir = Path(tempfile.mkdtemp(prefix="dlp-metadata-export-"))
    try:
        archive = workdir / METADATA_ARCHIVE
        # Parquet is compressed already: store the members instead of deflating them again.
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for table in EXPORTED_TABLES:
                part = workdir / f"{table}.parquet"
                pq.write_table(store.export_table(table), part)
                zf.write(part, arcname=part.name)
                part.unlink()
        size = archive.stat().st_size
        detail = f"{len(EXPORTED_TABLES)} tables as a zip archive of {size} bytes"
        audit(store, principal, "metadata.export", "metadata", detail)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return archive
