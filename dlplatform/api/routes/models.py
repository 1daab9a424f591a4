"""The model registry: models, versions, aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from dlplatform.api.deps import Ctx
from dlplatform.api.downloads import FILE_RESPONSES, file_response
from dlplatform.metadata import AliasEvent, ArtifactFile, ModelSummary, ModelVersion
from dlplatform.models import registry

router = APIRouter(tags=["models"])


class AliasRequest(BaseModel, frozen=True, extra="forbid"):
    version: int = Field(ge=1, description="The version the alias should point at.")


@router.get("/models")
def list_models(ctx: Ctx) -> list[ModelSummary]:
    """Models by name, each with its newest version number (``latest_version``)."""
    return registry.list_models(ctx.backend, ctx.principal)


@router.get("/models/{name}/versions")
def list_versions(name: str, ctx: Ctx) -> list[ModelVersion]:
    return registry.list_versions(ctx.backend, ctx.principal, name)


@router.get("/models/{name}/versions/{version}")
def get_version(name: str, version: str, ctx: Ctx) -> ModelVersion:
    """A version by number, or by alias (``/models/m/versions/production``)."""
    return registry.get_version(ctx.backend, ctx.principal, name, version)


@router.post("/models/{name}/aliases/{alias}")
def set_alias(name: str, alias: str, body: AliasRequest, ctx: Ctx) -> AliasEvent:
    """Point ``alias`` at a version (``promote``); the move is kept in the alias history."""
    return registry.promote(ctx.backend, ctx.principal, name, body.version, alias)


@router.get("/models/{name}/aliases")
def alias_history(name: str, ctx: Ctx) -> list[AliasEvent]:
    return registry.alias_history(ctx.backend, ctx.principal, name)


@router.get(
    "/models/{name}/versions/{version}/objects/{sha256}",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {
        "schema": {"type": "string", "format": "binary"}}},
        "description": "The object's bytes (header X-DLP-Sha256)."}},
)  # fmt: skip
def read_model_object(
    name: str,
    version: str,
    sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    ctx: Ctx,
) -> Response:
    """One object of a version's weights-only artifact: the manifest (the version's
    ``artifact_sha256``) or a file it lists. ``p.models.load()`` fetches and verifies them."""
    data = registry.read_model_object(ctx.backend, ctx.principal, name, version, sha256)
    return Response(data, media_type="application/octet-stream", headers={"X-DLP-Sha256": sha256})


@router.get("/models/{name}/versions/{version}/artifacts")
def list_artifacts(name: str, version: str, ctx: Ctx) -> list[ArtifactFile]:
    """The files of a version (by number or alias): ``weights.pt`` (the state dict) and
    ``model.json`` (format, model config, signature, builder), with sizes and sha256."""
    return registry.list_version_artifacts(ctx.backend, ctx.principal, name, version)


@router.get(
    "/models/{name}/versions/{version}/artifacts/{path:path}",
    response_class=StreamingResponse,
    responses=FILE_RESPONSES,
)
def read_artifact(name: str, version: str, path: str, ctx: Ctx) -> StreamingResponse:
    """One file of a version, streamed and checked against its sha256 on the way (header
    ``X-DLP-SHA256``); only a path the version lists is served. The download is audited."""
    found = registry.open_version_artifact(ctx.backend, ctx.principal, name, version, path)
    return file_response(*found)
