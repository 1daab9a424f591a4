"""``dlp users disable/enable/set-role`` and ``dlp users token --expires-in-days`` through the
in-process gateway (#18, finding 14)."""

from __future__ import annotations

import json


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_disable_enable_set_role_and_expiring_tokens(run) -> None:  # type: ignore[no-untyped-def]
    created = json.loads(run("users", "create", "bob", "--role", "viewer", "--json").stdout)
    bob = created["token"]
    assert run("users", "tokens", "bob", token=bob).exit_code == 0  # self-service
    r = run("users", "disable", "bob", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["disabled"] is True
    assert "user is disabled" in _error_line(run("users", "tokens", "bob", token=bob))
    r = run("users", "enable", "bob", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["disabled"] is False
    r = run("users", "set-role", "bob", "researcher", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["role"] == "researcher"

    r = run("users", "token", "bob", "--expires-in-days", "30", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["info"]["expires_at"] is not None
    r = run("users", "token", "bob", "--expires-in-days", "30")
    assert r.exit_code == 0 and ", expires 20" in r.stdout
    tokens = json.loads(run("users", "tokens", "bob", "--json").stdout)
    assert [t["expires_at"] is not None for t in tokens] == [False, True, True]
    assert tokens[0]["last_used_at"] is not None  # bob's first token was used above

    assert "expires_in_days" in _error_line(run("users", "token", "bob", "--expires-in-days", "0"))
    assert "may not disable themselves" in _error_line(run("users", "disable", "admin"))
    assert "last enabled admin" in _error_line(run("users", "set-role", "admin", "viewer"))
    assert "users.manage" in _error_line(run("users", "disable", "admin", token=bob))
    r = run("users", "set-role", "bob", "root")
    assert r.exit_code == 2  # a usage error: typer names the allowed roles
