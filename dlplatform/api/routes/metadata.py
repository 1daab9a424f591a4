"""The metadata export (admin): every metadata table as Parquet, in one ZIP download."""

from __future__ import annotations

import shutil

from fastapi import APIRouter
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from dlplatform import access
from dlplatform.api.deps import Ctx

router = APIRouter(tags=["metadata"])


@router.get(
    "/metadata/export",
    response_class=FileResponse,
    responses={
        200: {
            "content": {"application/zip": {}},
            "description": "A ZIP archive holding one `<table>.parquet` per metadata table.",
        }
    },
)
def export_metadata(ctx: Ctx) -> FileResponse:
    """Download every metadata table as ``<table>.parquet`` in ``dlplatform-metadata.zip``
    (admin; audited; token hashes are left out). The archive is built in a temporary directory
    on the gateway's disk, streamed from there and deleted once the response is sent."""
    archive = access.export_metadata_archive(ctx.backend, ctx.principal)
    return FileResponse(
        archive,
        media_type="application/zip",
        filename=access.METADATA_ARCHIVE,
        background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True),
    )
