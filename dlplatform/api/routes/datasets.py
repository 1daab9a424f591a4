"""Datasets, commits (streamed uploads), rollback and samples."""

from __future__ import annotations

import base64
import contextlib
import math
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dlplatform import data
from dlplatform.api.deps import Ctx
from dlplatform.api.uploads import stage_body
from dlplatform.data.spec import (
    ARROW_STREAM_MEDIA_TYPE,
    COMMIT_HEADER,
    PARQUET_PARTS_MEDIA_TYPE,
    ROW_COUNT_HEADER,
    VERSION_HASH_HEADER,
    ReadGrant,
)
from dlplatform.errors import InvalidInput
from dlplatform.metadata import Commit, CommitMode, Dataset, DatasetType
from dlplatform.metadata.records import Name

router = APIRouter(tags=["datasets"])
_SUFFIX = re.compile(r"[a-z0-9]{1,10}")

_CONTENT_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/json-lines": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/vnd.apache.arrow.file": "arrow",
    "application/vnd.apache.arrow.stream": "arrow",
}


class FieldSpec(BaseModel, frozen=True, extra="forbid"):
    name: str = Field(min_length=1, max_length=256)
    type: str = Field(description="Arrow type name: int64, float32, string, timestamp[us], ...")
    nullable: bool = True


class DatasetSpec(BaseModel, frozen=True, extra="forbid"):
    """A dataset to create."""

    name: Name
    description: str = Field(default="", max_length=10_000)
    type: DatasetType = DatasetType.TABULAR
    tags: tuple[str, ...] = Field(default=(), max_length=64)
    groups: tuple[Name, ...] = Field(default=(), max_length=32)
    schema_: list[FieldSpec] | None = Field(default=None, alias="schema")


class RollbackSpec(BaseModel, frozen=True, extra="forbid"):
    commit: str = Field(min_length=1, max_length=128)
    message: str = Field(default="", max_length=10_000)


class SampleRows(BaseModel, frozen=True, extra="forbid"):
    commit: str
    columns: list[str]
    rows: list[dict[str, Any]]


@router.post("/datasets", status_code=201)
def create_dataset(spec: DatasetSpec, ctx: Ctx) -> Dataset:
    """Create a dataset (``dataset.write``); ``schema`` optionally fixes its columns."""
    schema = [f.model_dump() for f in spec.schema_] if spec.schema_ is not None else None
    return data.create_dataset(
        ctx.backend,
        ctx.principal,
        spec.name,
        description=spec.description,
        type=spec.type,
        tags=spec.tags,
        groups=spec.groups,
        schema=schema,
    )


@router.get("/datasets")
def list_datasets(ctx: Ctx) -> list[Dataset]:
    return data.list_datasets(ctx.backend, ctx.principal)


@router.get("/datasets/{name}")
def get_dataset(name: str, ctx: Ctx) -> Dataset:
    return data.get_dataset(ctx.backend, ctx.principal, name)


@router.delete("/datasets/{name}")
def delete_dataset(name: str, ctx: Ctx) -> Dataset:
    """Soft delete; the data stays until ``gc`` finds nothing referencing it."""
    return data.delete_dataset(ctx.backend, ctx.principal, name)


def _format_of(request: Request, fmt: str | None, filename: str | None) -> str | None:
    if fmt:
        return fmt
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype.startswith("multipart/"):
        raise InvalidInput("send the file as the raw request body, not as a multipart form")
    if ctype in _CONTENT_TYPES:
        return _CONTENT_TYPES[ctype]
    if filename:
        return Path(filename).suffix.lower().lstrip(".") or None
    return None


async def _stage_body(request: Request, directory: Path, limit: int, fmt: str | None) -> Path:
    suffix = f".{fmt}" if fmt and _SUFFIX.fullmatch(fmt) else ""
    return await stage_body(request, directory, limit, suffix)


@router.post(
    "/datasets/{name}/commits",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                m: {"schema": {"type": "string", "format": "binary"}}
                for m in (
                    "application/octet-stream",
                    "text/csv",
                    "application/vnd.apache.parquet",
                    "application/x-ndjson",
                    "application/vnd.apache.arrow.stream",
                )
            },
        }
    },
)
async def push(
    name: str,
    request: Request,
    ctx: Ctx,
    mode: CommitMode = CommitMode.APPEND,
    message: Annotated[str, Query(max_length=10_000)] = "",
    parent: str | None = None,
    format: str | None = None,
    filename: Annotated[str | None, Query(max_length=255)] = None,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> Commit:
    """Push the raw request body (Parquet, CSV, JSON lines or Arrow IPC) as a new commit.

    The format comes from ``format``, the Content-Type, the ``filename``'s extension or the
    content. The body is streamed to a staging file and counted against ``max_upload_bytes``.
    A retry with the ``Idempotency-Key`` of an earlier push of the caller to this dataset is
    answered 201 with that push's commit, without the body being read.
    """
    backend, principal = ctx.backend, ctx.principal
    done = await run_in_threadpool(
        data.find_pushed_commit, backend, principal, name, idempotency_key
    )
    if done is not None:
        return done
    fmt = _format_of(request, format, filename)
    staged = await _stage_body(
        request, backend.settings.home / "uploads", backend.settings.max_upload_bytes, fmt
    )
    try:
        return await run_in_threadpool(
            data.push,
            backend,
            principal,
            name,
            staged,
            mode=mode,
            message=message,
            parent=parent,
            format=fmt or None,
            idempotency_key=idempotency_key,
        )
    finally:
        with contextlib.suppress(OSError):
            staged.unlink()


@router.get("/datasets/{name}/commits")
def list_commits(
    name: str,
    ctx: Ctx,
    response: Response,
    limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> list[Commit]:
    """The dataset's commits, newest first, one page; the total is in ``X-Total-Count``."""
    commits, total = data.list_commits_page(
        ctx.backend, ctx.principal, name, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return commits


@router.get("/datasets/{name}/commits/{commit}")
def get_commit(name: str, commit: str, ctx: Ctx) -> Commit:
    """One commit with its parts (``head`` names the current head)."""
    return data.get_commit(ctx.backend, ctx.principal, name, None if commit == "head" else commit)


@router.post("/datasets/{name}/rollback", status_code=201)
def rollback(name: str, spec: RollbackSpec, ctx: Ctx) -> Commit:
    """A new head commit with the content of ``commit``."""
    return data.rollback(ctx.backend, ctx.principal, name, spec.commit, message=spec.message)


@router.get("/datasets/{name}/commits/{commit}/sample")
def sample(
    name: str,
    commit: str,
    ctx: Ctx,
    n: Annotated[int, Query(ge=1, le=10_000)] = 10,
    seed: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
) -> SampleRows:
    """``n`` rows drawn from the commit (deterministic by ``seed``); the read is audited."""
    ref = _ref(name, commit)
    table = data.read_sample(ctx.backend, ctx.principal, ref, n, seed=seed)
    commit_id = data.parse_ref(ref)[1] or data.get_dataset(ctx.backend, ctx.principal, name).head
    rows = [{k: _jsonable(v) for k, v in r.items()} for r in table.to_pylist()]
    return SampleRows(commit=commit_id or "", columns=table.column_names, rows=rows)


@router.get(
    "/datasets/{name}/commits/{commit}/arrow",
    response_class=StreamingResponse,
    responses={200: {"content": {ARROW_STREAM_MEDIA_TYPE: {}}}},
)
def open_arrow_stream(
    name: str,
    commit: str,
    ctx: Ctx,
    columns: Annotated[list[str] | None, Query(max_length=10_000)] = None,
) -> StreamingResponse:
    """The commit's rows (all, or ``columns``) as an Arrow IPC stream, sent part by part.

    Headers name the commit, its row count and version hash. A part found damaged on the way
    cuts the response off (no end-of-stream marker); the read is audited.
    """
    found, chunks = data.open_arrow_stream(ctx.backend, ctx.principal, _ref(name, commit), columns)
    headers = {
        COMMIT_HEADER: found.id,
        ROW_COUNT_HEADER: str(found.row_count),
        VERSION_HASH_HEADER: found.version_hash,
    }
    return StreamingResponse(chunks, media_type=ARROW_STREAM_MEDIA_TYPE, headers=headers)


@router.get(
    "/datasets/{name}/commits/{commit}/parquet",
    response_class=StreamingResponse,
    responses={200: {"content": {PARQUET_PARTS_MEDIA_TYPE: {}}}},
)
def open_parts_stream(name: str, commit: str, ctx: Ctx) -> StreamingResponse:
    """The whole commit as its Parquet parts, byte for byte, one after another in the commit's
    order (``Commit.parts`` gives each part's size and sha256; the reader verifies them).

    The fast way to download a whole commit: the gateway decodes nothing. ``Content-Length`` is
    the parts' total, so a cut-off download is detectable; the read is audited.
    """
    found, chunks = data.open_parts_stream(ctx.backend, ctx.principal, _ref(name, commit))
    headers = {
        COMMIT_HEADER: found.id,
        ROW_COUNT_HEADER: str(found.row_count),
        VERSION_HASH_HEADER: found.version_hash,
        "Content-Length": str(sum(p.size_bytes for p in found.parts)),
    }
    return StreamingResponse(chunks, media_type=PARQUET_PARTS_MEDIA_TYPE, headers=headers)


@router.get("/datasets/{name}/commits/{commit}/parts")
def grant_read(name: str, commit: str, ctx: Ctx) -> ReadGrant:
    """The URIs of the commit's Parquet parts, for readers on the cluster; the read is audited."""
    return data.grant_read(ctx.backend, ctx.principal, _ref(name, commit))


def _ref(name: str, commit: str) -> str:
    return name if commit == "head" else f"{name}@{commit}"


def _jsonable(value: Any) -> Any:
    """NaN/inf become null and bytes base64, so every sample is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
