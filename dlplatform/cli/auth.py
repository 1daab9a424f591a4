"""``dlp login``, ``dlp logout`` and ``dlp config show``: which platform the CLI talks to, as whom.

A login checks the token against the gateway (``GET /api/v1/whoami``) and stores URL, token and
user name as a profile in ``<config dir>/profiles.json`` (mode 0600; ``$DLP_CONFIG_DIR``
overrides the directory, see ``dlplatform.client.profiles``), which becomes the active profile.
``config show`` prints the settings in effect and where each came from, with the token masked,
and lists the profiles (there is no separate ``profiles`` command).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, fail, handle_errors
from dlplatform.errors import DLPlatformError

config_app = typer.Typer(
    no_args_is_help=True, help="The CLI's settings: platform, token, profiles."
)

LOGIN_TIMEOUT_S = 10.0


def _read_token(token: str | None) -> str:
    """``--token``, else one line from stdin when it is not a terminal, else a hidden prompt."""
    if token is None:
        if sys.stdin.isatty():
            token = typer.prompt("Token", hide_input=True)
        else:
            token = sys.stdin.readline()
    token = (token or "").strip()
    if not token:
        fail("no token given (use --token, a prompt, or pipe it on stdin)")
    return token


@handle_errors
def login(
    url: str = typer.Argument(..., help="The gateway, e.g. https://dlp.example.com"),
    token: str | None = typer.Option(
        None, "--token", help="The token (default: a hidden prompt, or stdin when piped)."
    ),
    profile: str | None = typer.Option(
        None, "--profile", help="Store it under this profile name (default: `default`)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Check a token against a gateway and store both as the active profile."""
    # The client (httpx) loads only for the commands that talk to a gateway.
    from dlplatform.client import HttpClient, Platform, profiles

    clean_url = profiles.check_url(url)
    name = profiles.check_profile_name(profile or _common.TARGET["profile"] or "default")
    secret = _read_token(token)
    try:
        http = HttpClient(clean_url, secret, timeout_s=LOGIN_TIMEOUT_S, retries=1)
        with Platform(http) as p:
            who = p.whoami()
    except DLPlatformError as exc:
        message = exc.message if clean_url in exc.message else f"{clean_url}: {exc.message}"
        fail(f"login failed: {message}")
    path = profiles.save_profile(
        name, profiles.Profile(url=clean_url, token=secret, user=who.name), activate=True
    )
    if as_json:
        emit({"url": clean_url, "user": who.name, "role": who.role, "groups": who.groups,
              "profile": name, "profile_file": str(path)}, True)  # fmt: skip
    else:
        print(f"logged in to {clean_url} as {who.name} ({who.role.value})")
    # DLP_TOKEN wins even when empty (see profiles.resolve); an empty DLP_URL is ignored
    for var, is_set in (("DLP_URL", bool(os.environ.get("DLP_URL"))),
                        ("DLP_TOKEN", "DLP_TOKEN" in os.environ)):  # fmt: skip
        if is_set:
            _common.console.print(f"note: {var} is set and takes precedence over the profile")


@handle_errors
def logout(
    profile: str | None = typer.Option(
        None, "--profile", help="The profile to forget (default: the active one)."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Forget a profile and its token (the token stays valid: `dlp users revoke` ends it)."""
    from dlplatform.client import profiles  # heavy: httpx, kept off `dlp --help`

    name = profile or _common.TARGET["profile"] or profiles.read_profiles().active
    if name is None:
        fail(f"not logged in: no active profile in {profiles.profiles_path()}")
    removed = profiles.remove_profile(name)
    if as_json:
        emit({"profile": name, "url": removed.url, "user": removed.user}, True)
    else:
        print(f"logged out of {removed.url} (profile {name})")


def _source_of(env: dict[str, str], var: str, option: str | None = None) -> str:
    if option is not None:
        return option
    return var if env.get(var) else "default"


@config_app.command("show")
@handle_errors
def show(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """The settings in effect and where each comes from (the token masked), and the profiles."""
    from dlplatform.client import profiles  # heavy: httpx, kept off `dlp --help`

    env = dict(os.environ)
    if home is not None:
        env["DLP_HOME"] = home
    stored = profiles.read_profiles(env)
    settings: dict[str, Any] = {}
    try:
        target = profiles.resolve(_common.TARGET["url"], None, _common.TARGET["profile"], env)
        url_source = "--url" if target.url_source == "argument" else target.url_source
        settings |= {"url": target.url, "url_source": url_source,
                     "token": profiles.mask(target.token), "token_source": target.token_source,
                     "profile": target.profile}  # fmt: skip
    except DLPlatformError as exc:
        settings |= {"url": None, "url_source": "none", "token": "-", "token_source": "none",
                     "profile": None, "problem": exc.message}  # fmt: skip
    xdg = "XDG_CONFIG_HOME" if env.get("XDG_CONFIG_HOME") else "default"
    settings |= {
        "active_profile": stored.active,
        "profile_file": str(profiles.profiles_path(env)),
        "profile_file_source": "DLP_CONFIG_DIR" if env.get("DLP_CONFIG_DIR") else xdg,
        "home": str(profiles.local_home(env)),
        "home_source": _source_of(env, "DLP_HOME", "--home" if home is not None else None),
        "profiles": [
            {
                "name": name,
                "url": p.url,
                "user": p.user,
                "token": profiles.mask(p.token),
                "active": name == stored.active,
            }
            for name, p in sorted(stored.profiles.items())
        ],
    }
    if as_json:
        emit(settings, True)
        return
    for key in ("url", "token", "profile", "active_profile", "profile_file", "home"):
        source = settings.get(f"{key}_source")
        value = settings[key] if settings[key] is not None else "-"
        print(f"{key + ':':16}{value}" + (f"   ({source})" if source else ""))
    if "problem" in settings:
        print(f"{'problem:':16}{settings['problem']}")
    emit(settings["profiles"], False, columns=["name", "url", "user", "token", "active"],
         title="profiles")  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.add_typer(config_app, name="config")
