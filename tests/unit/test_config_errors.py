"""Settings from env vars and a config file, their validation, and the typed error tree."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from dlplatform.config import Settings, load_settings
from dlplatform.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    DLPlatformError,
    InvalidInput,
    NotFound,
    SchemaMismatch,
    error_for_code,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DLP_* variable of the machine running the tests leaks in; HOME is a temp dir."""
    import os

    for key in list(os.environ):
        if key.startswith("DLP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))


def test_defaults_derive_from_home(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path / "h")
    assert s.home == (tmp_path / "h").resolve()
    assert s.metadata_path == s.home / "metadata.duckdb"
    assert s.artifact_root_uri == str(s.home / "artifacts")
    assert s.namespace == "dlplatform"
    assert s.metric_flush_interval_s == 1.0


def test_default_home_is_under_user_home(tmp_path: Path) -> None:
    assert load_settings().home == (tmp_path / "user-home" / ".dlplatform").resolve()


def test_env_vars(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLP_HOME", str(tmp_path / "from-env"))
    monkeypatch.setenv("DLP_PORT", "9001")
    monkeypatch.setenv("DLP_ARTIFACT_ROOT", "s3://bucket/prefix")
    s = load_settings()
    assert s.home == (tmp_path / "from-env").resolve()
    assert s.port == 9001
    assert s.artifact_root_uri == "s3://bucket/prefix"
    assert load_settings(port=9002).port == 9002  # explicit arguments beat the environment


def test_config_file_and_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "dlp.yaml"
    cfg.write_text(
        f"home: {tmp_path / 'from-file'}\nport: 7000\nmax_request_bytes: 4096\nnamespace: team-a\n"
    )
    monkeypatch.setenv("DLP_CONFIG_FILE", str(cfg))
    s = load_settings()
    assert s.home == (tmp_path / "from-file").resolve()
    assert (s.port, s.max_request_bytes, s.namespace) == (7000, 4096, "team-a")
    monkeypatch.setenv("DLP_PORT", "7001")
    assert load_settings().port == 7001  # env beats the file
    assert load_settings(port=7002).port == 7002  # arguments beat both


def test_config_file_in_home_is_read(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "config.yaml").write_text("metric_flush_interval_s: 0.25\n")
    assert load_settings(home=home).metric_flush_interval_s == 0.25


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("port", 0),
        ("port", "eighty"),
        ("max_request_bytes", 10),
        ("metric_flush_interval_s", 0),
        ("metric_flush_interval_s", 3600),
    ],
)
def test_invalid_values_name_the_setting(tmp_path: Path, setting: str, value: object) -> None:
    with pytest.raises(InvalidInput, match=setting):
        load_settings(home=tmp_path, **{setting: value})


def test_invalid_env_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DLP_PORT", "70000")
    with pytest.raises(InvalidInput, match="port"):
        load_settings(home=tmp_path)


@pytest.mark.parametrize("root", ["ftp://host/x", "http://host/x", "hdfs://nn/x"])
def test_unknown_artifact_scheme_rejected(tmp_path: Path, root: str) -> None:
    with pytest.raises(InvalidInput, match=r"artifact_root.*scheme"):
        load_settings(home=tmp_path, artifact_root=root)


@pytest.mark.parametrize("root", ["file:///tmp/a", "s3://b/p", "gs://b/p", "/plain/path"])
def test_known_artifact_roots_accepted(tmp_path: Path, root: str) -> None:
    assert load_settings(home=tmp_path, artifact_root=root).artifact_root_uri == root


def test_bad_config_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DLP_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(InvalidInput, match="does not exist"):
        load_settings()
    bad = tmp_path / "bad.yaml"
    bad.write_text("port: [unclosed\n")
    monkeypatch.setenv("DLP_CONFIG_FILE", str(bad))
    with pytest.raises(InvalidInput, match="cannot read config file"):
        load_settings()
    bad.write_text("- a\n- b\n")
    with pytest.raises(InvalidInput, match="mapping"):
        load_settings()
    bad.write_text("prot: 80\n")  # a typo is an error, not silently ignored
    with pytest.raises(InvalidInput, match="prot"):
        load_settings()


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    with pytest.raises(Exception, match="frozen"):
        s.port = 1  # type: ignore[misc]
    assert isinstance(s, Settings)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "status", "code"),
    [
        (InvalidInput, 422, "invalid_input"),
        (SchemaMismatch, 422, "schema_mismatch"),
        (NotFound, 404, "not_found"),
        (AlreadyExists, 409, "already_exists"),
        (Conflict, 409, "conflict"),
        (BackendUnavailable, 503, "unavailable"),
    ],
)
def test_error_codes_round_trip(cls: type[DLPlatformError], status: int, code: str) -> None:
    err = cls("dataset 'x' does not exist")
    assert (err.http_status, err.code) == (status, code)
    back = error_for_code(err.code, err.message)
    assert type(back) is cls and back.message == err.message
    unpickled = pickle.loads(pickle.dumps(err))
    assert type(unpickled) is cls and str(unpickled) == err.message


def test_unknown_error_code_gives_the_base_class() -> None:
    err = error_for_code("no_such_code", "boom")
    assert type(err) is DLPlatformError and err.http_status == 500
