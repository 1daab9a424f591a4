"""Health and identity."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from dlplatform.access import Principal
from dlplatform.api.deps import BackendDep, Ctx

router = APIRouter(tags=["system"])


class Health(BaseModel, frozen=True, extra="forbid"):
    """The answer of ``GET /healthz``."""

    status: str = Field(description="`ok` whenever the gateway answers.")
    metadata: str = Field(description="What the metadata store's ping answered (`ok`).")


@router.get("/healthz")
def healthz(backend: BackendDep) -> Health:
    """Liveness without auth: the gateway answers and the metadata store responds."""
    return Health(status="ok", metadata=backend.store.ping())


@router.get("/whoami")
def whoami(ctx: Ctx) -> Principal:
    return ctx.principal
