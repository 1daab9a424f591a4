"""``dlp backup``, ``dlp restore`` and ``dlp up`` on a damaged database, in-process: a stopped
home read from its files, or the gateway app over a real DuckDB store (``run``/``cli_as``)."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fixtures_client import CLIENT_BASE
from typer.testing import CliRunner

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.cli import app as dlp
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.metadata import MetadataStore, Role
from dlplatform.metadata.backup import MANIFEST_FILE, METADATA_FILE, read_manifest
from dlplatform.metadata.records import utcnow
from dlplatform.runtime import CLUSTER_FILE, ClusterRecord

Result = Any


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """``dlp`` in-process with no platform from the environment or a profile of whoever runs
    the tests."""
    for var in ("DLP_URL", "DLP_PROFILE", "DLP_TOKEN", "RAY_ADDRESS", "DLP_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DLP_CONFIG_DIR", str(tmp_path / "config"))
    runner = CliRunner()
    return lambda *argv: runner.invoke(dlp, list(argv))


def _error_line(result: Result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    return str(lines[0])


@pytest.fixture
def populated(backend: Backend, admin_token: str) -> str:
    """A dataset commit, and a model's weights; returns the weights' sha256."""
    import pyarrow as pa

    from dlplatform import data
    from dlplatform.access import SYSTEM

    data.create_dataset(backend, SYSTEM, "d")
    data.push(backend, SYSTEM, "d", pa.table({"x": list(range(20))}))
    return backend.artifacts.put_bytes(b"weights").sha256


def test_backup_and_restore_of_a_stopped_platform(
    cli: Callable[..., Result], settings: Settings, populated: str, tmp_path: Path
) -> None:
    home = str(settings.home)
    r = cli("backup", str(tmp_path / "bk"), "--home", home, "--with-artifacts", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["via"] == "files" and summary["artifacts_copied"] is True
    assert summary["artifacts"] == len(read_manifest(tmp_path / "bk").artifacts) >= 2

    new = tmp_path / "new"
    r = cli("restore", str(tmp_path / "bk"), "--home", str(new))
    assert r.exit_code == 0, r.output
    assert f"dlp up --home {new}" in r.stdout
    assert (new / METADATA_FILE).is_file() and (new / "admin.token").is_file()
    assert (new / "artifacts" / "objects" / populated[:2] / populated).read_bytes() == b"weights"

    r = cli("restore", str(tmp_path / "bk"), "--home", str(new))
    assert "already has a metadata database" in _error_line(r)


def test_backup_refuses_a_non_empty_directory_and_a_home_without_database(
    cli: Callable[..., Result], settings: Settings, populated: str, tmp_path: Path
) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    r = cli("backup", str(full), "--home", str(settings.home))
    assert "is not empty" in _error_line(r)
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    r = cli("backup", str(tmp_path / "bk"), "--home", str(tmp_path / "nothing-here"))
    assert "no metadata database" in _error_line(r)
    assert not (tmp_path / "bk").exists()


def test_a_tampered_artifact_fails_the_restore_naming_it(
    cli: Callable[..., Result], settings: Settings, populated: str, tmp_path: Path
) -> None:
    r = cli("backup", str(tmp_path / "bk"), "--home", str(settings.home), "--with-artifacts")
    assert r.exit_code == 0, r.output
    path = f"objects/{populated[:2]}/{populated}"
    (tmp_path / "bk" / "artifacts" / path).write_bytes(b"tampered")
    new = tmp_path / "new"
    r = cli("restore", str(tmp_path / "bk"), "--home", str(new))
    assert f"artifact {path} in the backup does not match its manifest" in _error_line(r)
    assert not (new / METADATA_FILE).exists() and not new.exists()


def test_no_restore_into_a_home_where_a_platform_runs(
    cli: Callable[..., Result], settings: Settings, populated: str, tmp_path: Path
) -> None:
    r = cli("backup", str(tmp_path / "bk"), "--home", str(settings.home))
    assert r.exit_code == 0, r.output
    running = tmp_path / "running"
    running.mkdir()
    with socket.socket() as listener:  # what `dlp up --address` records: a reachable cluster
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        record = ClusterRecord(managed=False, address=f"127.0.0.1:{listener.getsockname()[1]}",
                               api_port=8000, started_at=utcnow())  # fmt: skip
        (running / CLUSTER_FILE).write_text(record.model_dump_json())
        r = cli("restore", str(tmp_path / "bk"), "--home", str(running))
        assert "a platform runs under" in _error_line(r)
    assert [p.name for p in running.iterdir()] == [CLUSTER_FILE]


# --- through the gateway ----------------------------------------------------------------------


@pytest.fixture
def gateway_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dlp`` talks to the platform at ``DLP_URL`` (the in-process app of ``cli_as``)."""
    monkeypatch.setenv("DLP_URL", CLIENT_BASE)
    monkeypatch.setenv("DLP_HOME", str(tmp_path / "client-home"))
    monkeypatch.setenv("DLP_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("DLP_PROFILE", raising=False)


@pytest.mark.usefixtures("gateway_env")
def test_backup_through_the_gateway_as_admin(
    run: Callable[..., Result], store: MetadataStore, populated: str, tmp_path: Path
) -> None:
    r = run("backup", str(tmp_path / "bk"), "--with-artifacts", "--json")
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    assert summary["via"] == "gateway" and summary["artifacts_copied"] is True
    manifest = read_manifest(tmp_path / "bk")
    assert populated in {e.sha256 for e in manifest.artifacts}
    assert sorted(p.name for p in (tmp_path / "bk").iterdir()) == [
        "artifacts",
        MANIFEST_FILE,
        METADATA_FILE,
    ]
    assert [e.outcome for e in store.list_audit(actor="admin", action="metadata.backup")] == ["ok"]

    r = run("restore", str(tmp_path / "bk"), "--home", str(tmp_path / "new"), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["copied"] == len(manifest.artifacts)


@pytest.mark.usefixtures("gateway_env")
def test_backup_through_the_gateway_is_refused_to_a_non_admin(
    run: Callable[..., Result], backend: Backend, tmp_path: Path
) -> None:
    token = access.create_user(
        backend, access.SYSTEM, UserSpec(name="dee", role=Role.DATA_ENGINEER)
    ).token
    r = run("backup", str(tmp_path / "bk"), token=token)
    assert "audit.view" in _error_line(r)
    assert not (tmp_path / "bk").exists()
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".bk")] == []


# --- dlp up on a damaged database -------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_up_on_a_damaged_database_points_at_restore_and_leaves_the_file(
    cli: Callable[..., Result], tmp_path: Path, damage: str
) -> None:
    home = tmp_path / "home"
    store = MetadataStore(home / METADATA_FILE)
    store._db.run("CREATE TABLE filler AS SELECT range AS i FROM range(100000)")
    store.close()
    path = home / METADATA_FILE
    if damage == "truncated":
        os.truncate(path, path.stat().st_size // 2)
    else:
        path.write_bytes(b"not a database, just bytes " * 1000)
    before = path.read_bytes()
    r = cli("up", "--home", str(home), "--port", "1")
    line = _error_line(r)
    assert "is damaged" in line and "dlp restore" in line and str(path) in line
    assert path.read_bytes() == before
    assert sorted(p.name for p in home.iterdir()) == [METADATA_FILE]  # nothing started
