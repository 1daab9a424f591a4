"""``dlp login``, ``logout`` and ``config show`` against a real gateway on a local socket.

The gateway is ``create_app`` over the test's DuckDB store, served by uvicorn on 127.0.0.1 in a
thread (a real socket, as a user's login goes); profiles go to a fresh ``DLP_CONFIG_DIR``.
"""

from __future__ import annotations

import json
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.cli import _common
from dlplatform.cli import app as dlp
from dlplatform.context import Backend
from dlplatform.metadata import Role


@pytest.fixture
def gateway(backend: Backend) -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of the gateway app, served until the test ends."""
    from dlplatform.api.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = uvicorn.Config(create_app(backend), host="127.0.0.1", port=port,
                            log_level="warning", ws="none", lifespan="on")  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``dlp`` with its own config dir and home, and nothing from the environment."""
    monkeypatch.setitem(_common.TARGET, "url", None)
    monkeypatch.setitem(_common.TARGET, "profile", None)
    # None: unset (an empty DLP_TOKEN would mean "no token", without falling back to the profile)
    env = {"DLP_CONFIG_DIR": str(tmp_path / "config"), "DLP_HOME": str(tmp_path / "home"),
           "DLP_URL": None, "DLP_TOKEN": None, "DLP_PROFILE": None, "XDG_CONFIG_HOME": None}  # fmt: skip
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(dlp, list(args), env=env, input=stdin)

    invoke.profiles = tmp_path / "config" / "profiles.json"  # type: ignore[attr-defined]
    return invoke


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_login_stores_a_private_profile_that_later_commands_use(  # type: ignore[no-untyped-def]
    cli, gateway: str, admin_token: str
) -> None:
    r = cli("login", gateway, "--token", admin_token)
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"logged in to {gateway} as admin (admin)"
    path: Path = cli.profiles
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["active"] == "default"
    assert stored["profiles"]["default"] == {"url": gateway, "token": admin_token, "user": "admin"}

    listed = cli("users", "list", "--json")  # no --url, no DLP_TOKEN: the profile
    assert listed.exit_code == 0, listed.output
    assert [u["name"] for u in json.loads(listed.stdout)] == ["admin"]

    shown = cli("config", "show", "--json")
    assert shown.exit_code == 0, shown.output
    assert admin_token not in shown.stdout
    config = json.loads(shown.stdout)
    assert config["url"] == gateway and config["url_source"] == "profile default"
    assert config["token_source"] == "profile default"
    assert config["token"] == admin_token[:12] + "…"
    assert config["profile"] == "default" and config["active_profile"] == "default"
    assert config["profile_file"] == str(path) and config["profile_file_source"] == "DLP_CONFIG_DIR"
    assert config["profiles"] == [{"name": "default", "url": gateway, "user": "admin",
                                   "token": admin_token[:12] + "…", "active": True}]  # fmt: skip
    plain = cli("config", "show")
    assert plain.exit_code == 0 and admin_token not in plain.stdout
    assert "(profile default)" in plain.stdout

    out = cli("logout")
    assert out.exit_code == 0, out.output
    assert out.stdout.strip() == f"logged out of {gateway} (profile default)"
    assert json.loads(path.read_text()) == {"profiles": {}}
    again = cli("logout")
    assert again.exit_code == 1 and "not logged in" in _one_line(again.stderr)


def test_login_reads_a_piped_token_into_a_named_profile(  # type: ignore[no-untyped-def]
    cli, gateway: str, backend: Backend
) -> None:
    token = access.create_user(backend, access.SYSTEM, UserSpec(name="rae", role=Role.RESEARCHER))
    r = cli("login", gateway, "--profile", "lab", "--json", stdin=token.token + "\n")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["user"] == "rae" and answer["role"] == "researcher" and answer["profile"] == "lab"
    shown = json.loads(cli("config", "show", "--json").stdout)
    assert shown["active_profile"] == "lab" and shown["url_source"] == "profile lab"
    assert cli("logout", "--profile", "lab").exit_code == 0
    assert cli("logout", "--profile", "lab").exit_code == 1


def test_wrong_token_or_unreachable_url_stores_nothing(  # type: ignore[no-untyped-def]
    cli, gateway: str
) -> None:
    r = cli("login", gateway, "--token", "dlp_not-a-real-token")
    assert r.exit_code == 1
    line = _one_line(r.stderr)
    assert line.startswith("error: login failed") and gateway in line
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = cli("login", dead, "--token", "dlp_whatever")
    assert r.exit_code == 1 and dead in _one_line(r.stderr)
    r = cli("login", "ftp://nowhere", "--token", "dlp_whatever")
    assert r.exit_code == 1 and "invalid platform URL" in _one_line(r.stderr)
    assert not cli.profiles.exists()


def test_config_show_without_a_platform_says_why(cli) -> None:  # type: ignore[no-untyped-def]
    r = cli("config", "show", "--json")
    assert r.exit_code == 0, r.output
    shown = json.loads(r.stdout)
    assert shown["url"] is None and shown["token"] == "-" and "dlp login" in shown["problem"]
    assert shown["home_source"] == "DLP_HOME" and shown["profiles"] == []


def test_status_without_a_local_platform_says_which_one_commands_use(  # type: ignore[no-untyped-def]
    cli, gateway: str, admin_token: str
) -> None:
    """``dlp status`` is about the local home; with a platform configured elsewhere it also
    says which one the other commands use, whether it answers, and as whom."""
    bare = cli("status")
    assert bare.exit_code == 0 and bare.stdout.strip().startswith("not running under")
    assert len(bare.stdout.strip().splitlines()) == 1  # nothing configured: nothing more to say
    assert cli("login", gateway, "--token", admin_token).exit_code == 0
    r = cli("status")
    assert r.exit_code == 0, r.output
    local, remote = r.stdout.strip().splitlines()
    assert local.startswith("not running under")
    assert remote == f"commands here use {gateway} (from profile default): it answers (ok), " \
        "signed in as admin (admin)"  # fmt: skip
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = cli("--url", dead, "status")
    assert r.exit_code == 0 and r.stdout.strip().endswith("it does not answer (ConnectError)")
