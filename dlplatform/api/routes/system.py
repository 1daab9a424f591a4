"""Health and identity."""

from __future__ import annotations

from fastapi import APIRouter

from dlplatform.access import Principal
from dlplatform.api.deps import BackendDep, Ctx

router = APIRouter(tags=["system"])


@router.get("/healthz")
def healthz(backend: BackendDep) -> dict[str, str]:
    """Liveness without auth: the gateway answers and the metadata store responds."""
    return {"status": "ok", "metadata": backend.store.ping()}


@router.get("/whoami")
def whoami(ctx: Ctx) -> Principal:
    return ctx.principal
