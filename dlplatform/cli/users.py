"""``dlp users``: create users, list them and their tokens, revoke tokens."""

from __future__ import annotations

import typer

from dlplatform.access import (
    UserSpec,
    create_token,
    create_user,
    list_tokens,
    list_users,
    revoke_token,
)
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, parse_model, platform
from dlplatform.metadata import Role

app = typer.Typer(no_args_is_help=True, help="Users, roles and tokens.")


@app.command("create")
@handle_errors
def create(
    name: str = typer.Argument(..., help="Lowercase user name."),
    role: Role = typer.Option(
        ..., "--role", help="admin, data-engineer, data-scientist, researcher, app or viewer."
    ),
    group: list[str] = typer.Option([], "--group", help="Access group (repeatable)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create a user; prints its token once (it cannot be shown again)."""
    spec = parse_model(UserSpec, name=name, role=role, groups=tuple(group))
    p = platform(home)
    created = create_user(p.backend, p.principal, spec)
    if as_json:
        emit(created, True)
        return
    print(
        f"created user {created.user.name} ({created.user.role.value}); token id {created.info.id}"
    )
    print("token (shown once, store it now):")
    print(created.token)


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List users (admin)."""
    p = platform(home)
    emit(list_users(p.backend, p.principal), as_json,
         columns=["name", "role", "groups", "created_at", "disabled"], title="users")  # fmt: skip


@app.command("tokens")
@handle_errors
def tokens(
    name: str = typer.Argument(..., help="User name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List a user's tokens (ids and prefixes, never the secrets)."""
    p = platform(home)
    emit(list_tokens(p.backend, p.principal, name), as_json,
         columns=["id", "prefix", "created_at", "revoked_at"], title="tokens")  # fmt: skip


@app.command("token")
@handle_errors
def token(
    name: str = typer.Argument(..., help="User name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Issue another token for a user; prints it once."""
    p = platform(home)
    issued = create_token(p.backend, p.principal, name)
    if as_json:
        emit(issued, True)
        return
    print(f"token id {issued.info.id} (shown once, store it now):")
    print(issued.token)


@app.command("revoke")
@handle_errors
def revoke(
    token_id: str = typer.Argument(..., help="Token id (see `dlp users tokens NAME`)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Revoke a token; it stops working at once."""
    p = platform(home)
    info = revoke_token(p.backend, p.principal, token_id)
    emit(info, as_json)
