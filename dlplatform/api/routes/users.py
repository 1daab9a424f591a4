"""Users and tokens. Secrets appear once, in the reply that creates them."""

from __future__ import annotations

from fastapi import APIRouter, Request

from dlplatform import access
from dlplatform.access import CreatedUser, IssuedToken, UserSpec
from dlplatform.api.deps import Ctx
from dlplatform.metadata import TokenInfo, User

router = APIRouter(tags=["users"])


@router.post("/users", status_code=201)
def create_user(spec: UserSpec, ctx: Ctx) -> CreatedUser:
    """Create a user (admin); the reply holds its first token, shown only this once."""
    return access.create_user(ctx.backend, ctx.principal, spec)


@router.get("/users")
def list_users(ctx: Ctx) -> list[User]:
    return access.list_users(ctx.backend, ctx.principal)


@router.get("/users/{name}/tokens")
def list_tokens(name: str, ctx: Ctx) -> list[TokenInfo]:
    """A user's tokens without secrets (the user itself, or an admin)."""
    return access.list_tokens(ctx.backend, ctx.principal, name)


@router.post("/users/{name}/tokens", status_code=201)
def create_token(name: str, ctx: Ctx) -> IssuedToken:
    """Issue another token for a user; the secret is shown only this once."""
    return access.create_token(ctx.backend, ctx.principal, name)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, ctx: Ctx, request: Request) -> TokenInfo:
    info = access.revoke_token(ctx.backend, ctx.principal, token_id)
    request.app.state.auth_cache.clear()  # effective at once here (other replicas: its TTL)
    return info
