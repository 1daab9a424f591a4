"""The backup of the running platform (admin): ``POST /admin/backup``, a tar stream."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from dlplatform import backups
from dlplatform.api.deps import Ctx
from dlplatform.metadata.backup import TAR_MEDIA_TYPE

router = APIRouter(tags=["metadata"])


@router.post(
    "/admin/backup",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {TAR_MEDIA_TYPE: {}},
            "description": "A tar stream: `metadata.duckdb`, with `with_artifacts` the "
            "artifacts under `artifacts/objects/`, and `manifest.json` last.",
        }
    },
)
def backup(
    ctx: Ctx,
    with_artifacts: Annotated[
        bool, Query(description="Copy the artifacts too, not only list them.")
    ] = False,
) -> StreamingResponse:
    """A consistent backup of the metadata database and a manifest of every artifact (admin;
    audited). The database is copied at once; the stream is built as it is sent, and a stream
    cut off before `manifest.json` is not a backup (`dlp backup` keeps nothing of it)."""
    chunks = backups.backup_stream(ctx.backend, ctx.principal, with_artifacts=with_artifacts)
    headers = {"Content-Disposition": 'attachment; filename="dlplatform-backup.tar"'}
    return StreamingResponse(chunks, media_type=TAR_MEDIA_TYPE, headers=headers)
