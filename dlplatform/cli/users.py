"""``dlp users``: create, list, disable and enable users, change roles; issue and revoke tokens."""

from __future__ import annotations

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, parse_model
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
    from dlplatform.access import UserSpec  # heavy: access (30 ms of `dlp --help`)

    spec = parse_model(UserSpec, name=name, role=role, groups=tuple(group))  # before connecting
    p = _common.platform(home)
    created = p.users.create(spec.name, spec.role, spec.groups)
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
    p = _common.platform(home)
    emit(p.users.list(), as_json,
         columns=["name", "role", "groups", "created_at", "disabled", "disabled_at"],
         title="users")  # fmt: skip


@app.command("disable")
@handle_errors
def disable(
    name: str = typer.Argument(..., help="User name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Disable a user (admin): their tokens stop working at once, their triggers stop firing."""
    p = _common.platform(home)
    emit(p.users.disable(name), as_json)


@app.command("enable")
@handle_errors
def enable(
    name: str = typer.Argument(..., help="User name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Enable a disabled user again (admin)."""
    p = _common.platform(home)
    emit(p.users.enable(name), as_json)


@app.command("set-role")
@handle_errors
def set_role(
    name: str = typer.Argument(..., help="User name."),
    role: Role = typer.Argument(
        ..., help="admin, data-engineer, data-scientist, researcher, app or viewer."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Give a user another role (admin; the last admin keeps theirs)."""
    p = _common.platform(home)
    emit(p.users.set_role(name, role), as_json)


@app.command("tokens")
@handle_errors
def tokens(
    name: str = typer.Argument(..., help="User name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List a user's tokens (ids and prefixes, never the secrets), run tokens with their run."""
    p = _common.platform(home)
    emit(p.users.tokens(name), as_json,
         columns=["id", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at",
                  "run_id"],
         title="tokens")  # fmt: skip


@app.command("token")
@handle_errors
def token(
    name: str = typer.Argument(..., help="User name."),
    expires_in_days: int | None = typer.Option(
        None, "--expires-in-days", help="The token stops working after this many days (1-3650)."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Issue another token for a user; prints it once."""
    from dlplatform.access import TokenRequest  # heavy: access (30 ms of `dlp --help`)

    spec = parse_model(TokenRequest, expires_in_days=expires_in_days)  # before connecting
    p = _common.platform(home)
    issued = p.users.create_token(name, expires_in_days=spec.expires_in_days)
    if as_json:
        emit(issued, True)
        return
    until = (
        f", expires {issued.info.expires_at:%Y-%m-%d %H:%M} UTC" if issued.info.expires_at else ""
    )
    print(f"token id {issued.info.id}{until} (shown once, store it now):")
    print(issued.token)


@app.command("revoke")
@handle_errors
def revoke(
    token_id: str = typer.Argument(..., help="Token id (see `dlp users tokens NAME`)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Revoke a token; it stops working at once."""
    p = _common.platform(home)
    info = p.users.revoke_token(token_id)
    emit(info, as_json)
