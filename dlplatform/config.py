"""All configuration in one place: ``Settings``, read from ``DLP_*`` env vars and an optional file.

Precedence (highest first): explicit arguments, ``DLP_*`` environment variables, the TOML/YAML file
named by ``DLP_CONFIG_FILE`` (or ``<home>/config.yaml`` when it exists), defaults.
Library code never reads ``os.environ``; entry points build ``Settings`` once and pass it down.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dlplatform.errors import InvalidInput
from dlplatform.metadata.enums import Role

_MIB = 1024 * 1024
_LOOPBACK_OR_ANY = frozenset({"0.0.0.0", "127.0.0.1", "localhost", "::", "::1", "[::1]", ""})


class Settings(BaseSettings):
    """Platform configuration. Each field can be set as ``DLP_<NAME>``, e.g. ``DLP_HOME``."""

    model_config = SettingsConfigDict(env_prefix="DLP_", frozen=True, extra="forbid")

    home: Path = Field(
        default_factory=lambda: Path.home() / ".dlplatform",
        description="Platform home: metadata.duckdb, artifacts/, logs, tokens, Ray temp dir.",
    )
    artifact_root: str | None = Field(
        default=None,
        description="Artifact root URI (file://, plain path, s3://, gs://). Default <home>/artifacts.",
    )
    ray_address: str | None = Field(
        default=None, description="Ray cluster to join; None starts a local head under <home>."
    )
    namespace: str = Field(default="dlplatform", description="Ray namespace of the platform.")
    host: str = Field(default="127.0.0.1", description="Address the HTTP gateway binds to.")
    port: int = Field(default=8000, ge=1, le=65535, description="HTTP port of Serve.")
    allowed_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost", "[::1]"],
        description="Host header values the gateway accepts (DNS-rebinding guard).",
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Webhook targets allowed although they are loopback, link-local or private "
        "(host names, addresses or networks such as 10.20.0.0/16); others must be public "
        "http(s) hosts (see dlplatform.alerts).",
    )
    gateway_url: str | None = Field(
        default=None, description="Set: the SDK and CLI talk to this gateway URL."
    )
    token: str | None = Field(default=None, description="Bearer token of the caller (SDK/CLI).")
    auth_cache_ttl_s: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="How long the gateway remembers an accepted token (0: never); a token "
        "revoked through another gateway replica is refused at most this much later.",
    )
    code_run_roles: tuple[Role, ...] = Field(
        default=(Role.ADMIN, Role.DATA_SCIENTIST),
        description="Roles holding `code.run`: may train or tune user code (model='module:fn', "
        "model_factory, runtime_env). Admins always hold it. As an env var, a JSON list: "
        'DLP_CODE_RUN_ROLES=\'["admin", "data-scientist", "researcher"]\'.',
    )
    run_token_ttl_s: float = Field(
        default=7 * 24 * 3600.0,
        gt=0,
        description="Lifetime of the token a training or tuning job gets for its run; the token "
        "stops working earlier, as soon as the run ends.",
    )
    max_request_bytes: int = Field(
        default=1 * _MIB, ge=1024, description="Largest JSON request body the gateway accepts."
    )
    max_upload_bytes: int = Field(
        default=2048 * _MIB, ge=1024, description="Largest dataset upload the gateway accepts."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible store for s3:// roots."
    )
    max_tuning_trials: int = Field(
        default=256,
        ge=1,
        le=100_000,
        description="Most trials one tuning job may run (samples x the grid's size); a larger "
        "search is refused with 422.",
    )
    prediction_input_retention_days: float = Field(
        default=30.0,
        ge=0,
        description="Logged prediction inputs older than this are blanked (the request id, "
        "version, outputs and latency stay) by the metadata actor about once an hour; 0 keeps "
        "them forever.",
    )
    train_pool_size: int = Field(
        default=2,
        ge=0,
        le=64,
        description="Warm training workers the scheduler keeps started (torch imported): a job "
        "of a built-in model without a runtime_env, on CPUs, with at most this many workers "
        "and a version small enough to train in memory runs on them instead of a new Ray Job "
        "and Ray Train worker group; 0 turns the pool off.",
    )
    metric_flush_interval_s: float = Field(
        default=1.0, gt=0, le=60, description="How often buffered metrics are flushed."
    )
    fast_ingress: bool = Field(
        default=True,
        description="A head started by `dlp up` runs Serve's HAProxy ingress (on loopback, "
        "per home); false keeps Serve's default HTTP proxy.",
    )

    @field_validator("artifact_root")
    @classmethod
    def _root_has_known_scheme(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:
            return value
        scheme = value.split("://", 1)[0]
        if scheme not in {"file", "s3", "gs", "mock"}:
            raise ValueError(f"artifact root scheme {scheme!r} is not one of file, s3, gs")
        return value

    @model_validator(mode="after")
    def _home_is_absolute(self) -> Settings:
        object.__setattr__(self, "home", self.home.expanduser().resolve())
        return self

    @property
    def artifact_root_uri(self) -> str:
        """The artifact root, defaulting to ``<home>/artifacts``."""
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def internal_gateway_url(self) -> str:
        """The gateway's base URL as code on the cluster reaches it (a job's ``DLP_URL``).

        ``gateway_url`` when set; else loopback when the gateway binds a wildcard or loopback
        address (jobs' drivers run on the head, beside it); else ``http://<host>:<port>``.
        """
        if self.gateway_url:
            return self.gateway_url.rstrip("/")
        if self.host in _LOOPBACK_OR_ANY:
            return f"http://127.0.0.1:{self.port}"
        bare_ipv6 = ":" in self.host and not self.host.startswith("[")
        host = f"[{self.host}]" if bare_ipv6 else self.host
        return f"http://{host}:{self.port}"

    @property
    def metadata_path(self) -> Path:
        return self.home / "metadata.duckdb"

    @property
    def admin_token_path(self) -> Path:
        return self.home / "admin.token"

    @property
    def ray_temp_dir(self) -> Path:
        # Ray's unix socket paths must stay short (107 bytes); keep this shallow.
        return self.home / "ray"


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"config file {path} must hold a mapping of settings")
    return data


def load_settings(**overrides: Any) -> Settings:
    """Build ``Settings`` from the environment, the optional config file and ``overrides``.

    Raises:
        InvalidInput: a value is invalid; the message names the setting.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    file_values: dict[str, Any] = {}
    config_file = os.environ.get("DLP_CONFIG_FILE")
    home = overrides.get("home") or os.environ.get("DLP_HOME")
    candidate = Path(config_file) if config_file else None
    if candidate is None and home:
        candidate = Path(home).expanduser() / "config.yaml"
    elif candidate is None:
        candidate = Path.home() / ".dlplatform" / "config.yaml"
    if candidate.is_file():
        file_values = _read_config_file(candidate)
    elif config_file:
        raise InvalidInput(f"config file {config_file} does not exist")
    # env vars beat the file: drop file values that the environment sets
    for key in list(file_values):
        if f"DLP_{key.upper()}" in os.environ:
            file_values.pop(key)
    try:
        return Settings(**{**file_values, **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise InvalidInput(f"invalid settings: {problems}") from exc
