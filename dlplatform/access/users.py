"""Service functions for users and their tokens: create, list, disable, enable, change a
role; list, issue, revoke tokens. Every entry point (HTTP route, CLI command, SDK) calls these;
they authorize and audit through ``access.auth``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator, BaseModel, Field

from dlplatform.access.auth import (
    RESERVED_USER_NAMES,
    Permission,
    Principal,
    audit,
    authorize,
    issue_token,
)
from dlplatform.errors import Conflict, InvalidInput, NotFound
from dlplatform.metadata import Role, TokenInfo, User, check_name
from dlplatform.metadata.records import Name, utcnow

if TYPE_CHECKING:
    from dlplatform.context import Backend
    from dlplatform.metadata import MetadataStore

GroupName = Annotated[str, AfterValidator(check_name)]
_TOKEN_ID = re.compile(r"^[0-9a-f]{12}$")
MAX_TOKEN_DAYS = 3650


class UserSpec(BaseModel, frozen=True, extra="forbid"):
    """A user to create."""

    name: Name = Field(description="Lowercase name, 1-63 characters of a-z 0-9 . _ -")
    role: Role
    groups: tuple[GroupName, ...] = Field(default=(), max_length=32, description="Access groups")


class TokenRequest(BaseModel, frozen=True, extra="forbid"):
    """Options of a token to issue."""

    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_TOKEN_DAYS,
        description="Refuse the token from this many days after its creation (default: never).",
    )


class RoleChange(BaseModel, frozen=True, extra="forbid"):
    """A user's new role."""

    role: Role


class IssuedToken(BaseModel, frozen=True, extra="forbid"):
    """A freshly issued token. ``token`` is the secret: it is shown here once and never again."""

    token: str
    info: TokenInfo


class CreatedUser(BaseModel, frozen=True, extra="forbid"):
    """A new user and its first token (the secret is shown once)."""

    user: User
    token: str
    info: TokenInfo


def _user_name(value: str) -> str:
    try:
        return check_name(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _self_or_admin(store: MetadataStore, principal: Principal, user: str) -> None:
    """Users manage their own tokens; managing anyone else's needs ``users.manage``."""
    if principal.name != user:
        authorize(store, principal, Permission.USERS_MANAGE, f"user:{user}")


def create_user(backend: Backend, principal: Principal, spec: UserSpec) -> CreatedUser:
    """Create a user with its first token (admin only).

    Raises:
        PermissionDenied: the caller lacks ``users.manage``.
        InvalidInput: the name is reserved (``RESERVED_USER_NAMES``).
        AlreadyExists: a user with that name exists.
    """
    store = backend.store
    target = f"user:{spec.name}"
    authorize(store, principal, Permission.USERS_MANAGE, target)
    if spec.name in RESERVED_USER_NAMES:
        raise InvalidInput(
            f"user name {spec.name!r} is reserved for the platform's own principals "
            f"({', '.join(sorted(RESERVED_USER_NAMES))}): choose another name"
        )
    user = store.create_user(
        User(name=spec.name, role=spec.role, groups=spec.groups, created_at=utcnow())
    )
    secret, info = issue_token(store, user.name)
    audit(store, principal, "users.create", target, f"role={spec.role.value} token={info.id}")
    return CreatedUser(user=user, token=secret, info=info)


def list_users(backend: Backend, principal: Principal) -> list[User]:
    """Every user (admin only)."""
    authorize(backend.store, principal, Permission.USERS_MANAGE, "users")
    return backend.store.list_users()


def disable_user(backend: Backend, principal: Principal, name: str) -> User:
    """Disable a user (admin only; audited). Every token of theirs, run tokens included, is
    refused from now on (by another gateway replica after at most its ``auth_cache_ttl_s``), and
    their workflow triggers stop firing. Disabling a disabled user is harmless.

    Raises:
        InvalidInput: a bad name, or the caller names themselves.
        PermissionDenied: the caller lacks ``users.manage``.
        NotFound: no such user.
        Conflict: the user is the last enabled admin.
    """
    return _change_user(backend, principal, name, "users.disable", disabled=True)


def enable_user(backend: Backend, principal: Principal, name: str) -> User:
    """Enable a disabled user again (admin only; audited): their tokens that are neither revoked
    nor expired work again. Enabling an enabled user is harmless.

    Raises:
        InvalidInput, PermissionDenied, NotFound: as ``disable_user``.
    """
    return _change_user(backend, principal, name, "users.enable", disabled=False)


def set_user_role(backend: Backend, principal: Principal, name: str, role: Role | str) -> User:
    """Give a user another role (admin only; audited); it applies to their next request (on
    another gateway replica after at most its ``auth_cache_ttl_s``).

    Raises:
        InvalidInput: a bad name or role.
        PermissionDenied: the caller lacks ``users.manage``.
        NotFound: no such user.
        Conflict: the user is the last enabled admin and ``role`` is not admin.
    """
    try:
        new_role = Role(role)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {str(role)[:40]!r}: expected one of {roles}") from None
    return _change_user(backend, principal, name, "users.set_role", role=new_role)


def _change_user(
    backend: Backend,
    principal: Principal,
    name: str,
    action: str,
    *,
    role: Role | None = None,
    disabled: bool | None = None,
) -> User:
    store = backend.store
    name = _user_name(name)
    target = f"user:{name}"
    authorize(store, principal, Permission.USERS_MANAGE, target)
    if disabled and name == principal.name:
        store.append_audit(principal.name, action, target, "denied", "may not disable oneself")
        raise InvalidInput(f"{name} may not disable themselves: ask another admin")
    before = store.get_user(name)
    try:
        user = store.update_user(name, role=role, disabled=disabled)
    except Conflict as exc:
        store.append_audit(principal.name, action, target, "denied", exc.message)
        raise
    if role is not None:
        detail = f"role {before.role.value} -> {user.role.value}"
    else:
        detail = "disabled" if user.disabled else "enabled"
        if before.disabled == user.disabled:
            detail += " already"
    audit(store, principal, action, target, detail)
    return user


def list_tokens(backend: Backend, principal: Principal, user: str) -> list[TokenInfo]:
    """The tokens of ``user`` without their secrets (the user itself, or an admin), the run
    tokens of the user's jobs included, each with its ``run_id`` and ``expires_at``."""
    store = backend.store
    user = _user_name(user)
    _self_or_admin(store, principal, user)
    store.get_user(user)
    return store.list_tokens(user)


def create_token(
    backend: Backend, principal: Principal, user: str, *, expires_in_days: int | None = None
) -> IssuedToken:
    """Issue another token for ``user`` (the user itself, or an admin; audited). With
    ``expires_in_days`` it is refused from that many days on; without, it lasts until revoked.

    Raises:
        InvalidInput: a bad name, or ``expires_in_days`` not a whole number from 1 to
            ``MAX_TOKEN_DAYS``.
    """
    store = backend.store
    user = _user_name(user)
    if expires_in_days is not None and (
        isinstance(expires_in_days, bool)
        or not isinstance(expires_in_days, int)
        or not 1 <= expires_in_days <= MAX_TOKEN_DAYS
    ):
        raise InvalidInput(
            f"expires_in_days must be a whole number of days from 1 to {MAX_TOKEN_DAYS}, "
            f"got {str(expires_in_days)[:40]}"
        )
    _self_or_admin(store, principal, user)
    expires_at = None if expires_in_days is None else utcnow() + timedelta(days=expires_in_days)
    secret, info = issue_token(store, store.get_user(user).name, expires_at=expires_at)
    detail = f"token={info.id}"
    if expires_at is not None:
        detail += f" expires_at={expires_at.isoformat(timespec='seconds')}"
    audit(store, principal, "tokens.create", f"user:{user}", detail)
    return IssuedToken(token=secret, info=info)


def revoke_token(backend: Backend, principal: Principal, token_id: str) -> TokenInfo:
    """Revoke a token by id (its owner, or an admin). Revoking twice is harmless.

    Raises:
        InvalidInput: ``token_id`` is not a token id.
        NotFound: no such token (also for another user's token when the caller is no admin,
            so ids cannot be probed).
    """
    store = backend.store
    if not isinstance(token_id, str) or not _TOKEN_ID.fullmatch(token_id):
        raise InvalidInput(f"invalid token id {str(token_id)[:40]!r}: expected 12 hex digits")
    owner = next((t.user for t in store.list_tokens() if t.id == token_id), None)
    if owner is None or (owner != principal.name and not principal.can(Permission.USERS_MANAGE)):
        if owner is not None:
            store.append_audit(
                principal.name, "tokens.revoke", f"token:{token_id}", "denied", "not the owner"
            )
        raise NotFound(f"token {token_id!r} does not exist")
    info = store.revoke_token(token_id)
    audit(store, principal, "tokens.revoke", f"token:{token_id}", f"user={owner}")
    return info
