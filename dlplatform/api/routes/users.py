"""Users and tokens. Secrets appear once, in the reply that creates them.

A route that changes who a token stands for (revoke, disable, enable, a new role) clears this
gateway's ``AuthCache``, so the change applies to the next request here at once (another
replica sees it after at most ``auth_cache_ttl_s``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from dlplatform import access
from dlplatform.access import CreatedUser, IssuedToken, RoleChange, TokenRequest, UserSpec
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


@router.post("/users/{name}/disable")
def disable_user(name: str, ctx: Ctx, request: Request) -> User:
    """Disable a user (admin; not yourself, not the last admin): their tokens stop working."""
    user = access.disable_user(ctx.backend, ctx.principal, name)
    request.app.state.auth_cache.clear()
    return user


@router.post("/users/{name}/enable")
def enable_user(name: str, ctx: Ctx, request: Request) -> User:
    """Enable a disabled user again (admin)."""
    user = access.enable_user(ctx.backend, ctx.principal, name)
    request.app.state.auth_cache.clear()
    return user


@router.post("/users/{name}/role")
def set_user_role(name: str, change: RoleChange, ctx: Ctx, request: Request) -> User:
    """Give a user another role (admin; the last admin keeps theirs)."""
    user = access.set_user_role(ctx.backend, ctx.principal, name, change.role)
    request.app.state.auth_cache.clear()
    return user


@router.get("/users/{name}/tokens")
def list_tokens(name: str, ctx: Ctx) -> list[TokenInfo]:
    """A user's tokens without secrets (the user itself, or an admin), with ``last_used_at``
    (kept to the minute) and ``expires_at``."""
    return access.list_tokens(ctx.backend, ctx.principal, name)


@router.post("/users/{name}/tokens", status_code=201)
def create_token(name: str, ctx: Ctx, spec: TokenRequest | None = None) -> IssuedToken:
    """Issue another token for a user, optionally expiring after ``expires_in_days``; the
    secret is shown only this once."""
    days = spec.expires_in_days if spec is not None else None
    return access.create_token(ctx.backend, ctx.principal, name, expires_in_days=days)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(token_id: str, ctx: Ctx, request: Request) -> TokenInfo:
    info = access.revoke_token(ctx.backend, ctx.principal, token_id)
    request.app.state.auth_cache.clear()  # effective at once here (other replicas: its TTL)
    return info
