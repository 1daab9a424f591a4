"""A finished workflow step's output, as stored (the client decodes and verifies it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from dlplatform import workflows
from dlplatform.api.deps import Ctx

router = APIRouter(tags=["workflows"])
RunIdPath = Annotated[str, Path(max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
_MEDIA = {"parquet": "application/vnd.apache.parquet", "json": "application/json",
          "record": "application/json"}  # fmt: skip


@router.get(
    "/workflows/runs/{run_id}/steps/{step_id}/output",
    response_class=Response,
    responses={200: {"content": {m: {"schema": {"type": "string", "format": "binary"}}
                                 for m in sorted(set(_MEDIA.values()))},
                     "description": "The output's bytes: Parquet for a table, JSON otherwise. "
                     "Headers: X-DLP-Output-Format (parquet|json|record), X-DLP-Output-Type "
                     "(the record type), X-DLP-Sha256 (of the body)."}},
)  # fmt: skip
def read_step_output(run_id: RunIdPath, step_id: RunIdPath, ctx: Ctx) -> Response:
    """The output of a SUCCEEDED step (409 for a pickled output: those stay on the cluster)."""
    ref, data = workflows.read_step_output(ctx.backend, ctx.principal, run_id, step_id)
    fmt = str(ref["format"])
    headers = {"X-DLP-Output-Format": fmt, "X-DLP-Sha256": str(ref["sha256"])}
    if ref.get("type"):
        headers["X-DLP-Output-Type"] = str(ref["type"])
    return Response(content=data, media_type=_MEDIA.get(fmt, "application/octet-stream"),
                    headers=headers)  # fmt: skip
