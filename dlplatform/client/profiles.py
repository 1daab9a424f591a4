"""Where the SDK and CLI find the platform: the URL and token, and where each came from.

Order (highest first), like ``gh`` and kube contexts:

- URL: the argument, ``DLP_URL``, the profile (the argument, ``DLP_PROFILE``, else the active
  one), else the platform running under the local home (``DLP_HOME`` or ``~/.dlplatform``).
- token: the argument, ``DLP_TOKEN``, the profile's token (when its URL is the one in use), the
  local admin token file (when the URL is the local platform's). A ``DLP_TOKEN`` that is set but
  empty (what a job the platform runs for nobody in particular gets) means no token: never a
  fall back to the admin's file.

Profiles live in ``<config dir>/profiles.json`` (mode 0600): ``$DLP_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/dlplatform``, else ``~/.config/dlplatform``. This module reads the environment
itself rather than through ``Settings``: it is the client's only configuration, and it must stay
light (a ``dlp`` command answers in well under a second).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from dlplatform.errors import InvalidInput, NotFound, Unauthenticated

_PROFILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
DEFAULT_PROFILE = "default"


class Profile(BaseModel, frozen=True, extra="forbid"):
    url: str
    token: str | None = None
    user: str | None = Field(default=None, description="Who the token belongs to (at login).")


class ProfileFile(BaseModel, frozen=True, extra="forbid"):
    active: str | None = None
    profiles: dict[str, Profile] = {}


@dataclass(frozen=True)
class Target:
    """The resolved platform: URL and token with the source of each (for ``dlp config show``)."""

    url: str
    url_source: str
    token: str | None
    token_source: str
    profile: str | None


def config_dir(env: dict[str, str] | None = None) -> Path:
    env = dict(os.environ) if env is None else env
    if env.get("DLP_CONFIG_DIR"):
        return Path(env["DLP_CONFIG_DIR"]).expanduser()
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "dlplatform"


def profiles_path(env: dict[str, str] | None = None) -> Path:
    return config_dir(env) / "profiles.json"


def check_profile_name(name: str) -> str:
    if not _PROFILE_NAME.fullmatch(name):
        raise InvalidInput(f"invalid profile name {name[:70]!r}: use letters, digits, . _ -")
    return name


def check_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash, or InvalidInput."""
    clean = url.strip().rstrip("/")
    if clean.endswith("/api/v1"):
        clean = clean[: -len("/api/v1")]
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", clean):
        raise InvalidInput(f"invalid platform URL {url[:200]!r}: expected http(s)://HOST[:PORT]")
    return clean


def read_profiles(env: dict[str, str] | None = None) -> ProfileFile:
    path = profiles_path(env)
    try:
        return ProfileFile.model_validate_json(path.read_text())
    except FileNotFoundError:
        return ProfileFile()
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def write_profiles(profiles: ProfileFile, env: dict[str, str] | None = None) -> Path:
    """Write the profile file atomically, readable by its owner only (0600, dir 0700)."""
    path = profiles_path(env)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(profiles.model_dump_json(indent=2, exclude_none=True))
    os.chmod(tmp, 0o600)
    tmp.replace(path)
    return path


def save_profile(name: str, profile: Profile, *, activate: bool = True,
                 env: dict[str, str] | None = None) -> Path:  # fmt: skip
    current = read_profiles(env)
    profiles = {**current.profiles, check_profile_name(name): profile}
    active = name if activate or current.active is None else current.active
    return write_profiles(ProfileFile(active=active, profiles=profiles), env)


def remove_profile(name: str, env: dict[str, str] | None = None) -> Profile:
    """Forget a profile (its token with it). Raises NotFound."""
    current = read_profiles(env)
    if name not in current.profiles:
        raise NotFound(f"no profile {name!r} in {profiles_path(env)}")
    removed = current.profiles[name]
    rest = {k: v for k, v in current.profiles.items() if k != name}
    active = current.active if current.active != name else None
    write_profiles(ProfileFile(active=active, profiles=rest), env)
    return removed


def local_home(env: dict[str, str]) -> Path:
    return Path(env.get("DLP_HOME") or Path.home() / ".dlplatform").expanduser()


def _local_platform(home: Path) -> str | None:
    """The URL of the platform ``dlp up`` recorded under ``home`` (``cluster.json``), or None."""
    try:
        record: dict[str, Any] = json.loads((home / "cluster.json").read_text())
    except (OSError, ValueError):
        return None
    host = str(record.get("api_host") or "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    port = record.get("api_port")
    return f"http://{host}:{port}" if isinstance(port, int) else None


def resolve(
    url: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    env: dict[str, str] | None = None,
) -> Target:
    """Find the platform and the caller's token (see the module docstring for the order).

    Raises:
        InvalidInput: a malformed URL or unknown profile.
        BackendUnavailable-free: nothing is contacted here.
        Unauthenticated: no platform found to connect to.
    """
    env = dict(os.environ) if env is None else env
    profiles = read_profiles(env)
    profile_name = profile or env.get("DLP_PROFILE") or None
    if profile_name is not None and profile_name not in profiles.profiles:
        raise InvalidInput(f"no profile {profile_name!r}; create it with `dlp login URL --profile "
                           f"{profile_name}`")  # fmt: skip
    chosen_name = profile_name or profiles.active
    chosen = profiles.profiles.get(chosen_name) if chosen_name else None
    home = local_home(env)

    if url:
        resolved_url, url_source = check_url(url), "argument"
    elif env.get("DLP_URL"):
        resolved_url, url_source = check_url(env["DLP_URL"]), "DLP_URL"
    elif chosen is not None:
        resolved_url, url_source = chosen.url, f"profile {chosen_name}"
    else:
        local = _local_platform(home)
        if local is None:
            raise Unauthenticated(
                "no platform to talk to: set DLP_URL (and DLP_TOKEN), run `dlp login URL`, or "
                f"start one here with `dlp up` (nothing runs under {home})"
            )
        resolved_url, url_source = local, f"local platform ({home / 'cluster.json'})"

    admin_file = home / "admin.token"
    if token:
        secret, token_source = token, "argument"
    elif "DLP_TOKEN" in env:  # set, even empty (a job of the platform's own): no fallback
        secret, token_source = env["DLP_TOKEN"] or None, "DLP_TOKEN"
    elif chosen is not None and chosen.token and chosen.url == resolved_url:
        secret, token_source = chosen.token, f"profile {chosen_name}"
    elif resolved_url == _local_platform(home) and admin_file.is_file():
        secret, token_source = admin_file.read_text().strip(), f"admin token file ({admin_file})"
    else:
        secret, token_source = None, "none"
    used_profile = chosen_name if chosen is not None and (
        url_source.startswith("profile") or token_source.startswith("profile")
    ) else None  # fmt: skip
    return Target(resolved_url, url_source, secret, token_source, used_profile)


def mask(secret: str | None) -> str:
    """A token as shown to people: its public prefix, never the secret part."""
    if not secret:
        return "-"
    return f"{secret[:12]}…" if len(secret) > 16 else "****"
