"""``dlp datasets`` over HTTP: the CLI's client talks to the in-process gateway (real routes,
real DuckDB store) as the admin, or as the owner of another token."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dlplatform import access
from dlplatform.access import UserSpec
from dlplatform.cli import app as dlp
from dlplatform.context import Backend
from dlplatform.metadata import Role


@pytest.fixture
def run(cli_as: Callable[[str], None], admin_token: str):  # type: ignore[no-untyped-def]
    runner = CliRunner()

    def invoke(*args: str, token: str | None = None):  # type: ignore[no-untyped-def]
        cli_as(token or admin_token)
        return runner.invoke(dlp, ["datasets", *args])

    return invoke


def _token(backend: Backend, name: str, role: Role) -> str:
    return access.create_user(backend, access.SYSTEM, UserSpec(name=name, role=role)).token


def test_cli_flow(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps([{"name": "x", "type": "int64"}, {"name": "name", "type": "string"}])
    )
    r = run("create", "sales", "--description", "daily", "--schema", str(schema), "--tag", "t1")
    assert r.exit_code == 0, r.output
    csv = tmp_path / "a.csv"
    csv.write_text("x,name\n1,a\n2,b\n")
    pq.write_table(pa.table({"x": [3, 4], "name": ["c", "d"]}), tmp_path / "b.parquet")
    r = run("push", "sales", str(csv), str(tmp_path / "b.parquet"), "-m", "two files", "--json")
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout)
    assert first["row_count"] == 4
    r = run("push", "sales", str(csv), "--mode", "overwrite")
    assert r.exit_code == 0 and "committed" in r.stdout
    r = run("commits", "sales", "--json")
    assert [c["row_count"] for c in json.loads(r.stdout)] == [2, 4]
    r = run("show", f"sales@{first['id']}")
    assert r.exit_code == 0, r.output
    assert "column statistics" in r.stdout and "name" in r.stdout
    r = run("show", "sales", "--json")
    shown = json.loads(r.stdout)
    assert shown["stats"]["columns"][0]["max"] == 2.0
    r = run("rollback", "sales", first["id"], "--json")
    assert json.loads(r.stdout)["version_hash"] == first["version_hash"]
    r = run("sample", "sales", "-n", "3", "--json")
    assert len(json.loads(r.stdout)) == 3
    r = run("export", "sales", str(tmp_path / "out"))
    assert r.exit_code == 0, r.output
    assert sum(pq.read_table(f).num_rows for f in (tmp_path / "out").glob("*.parquet")) == 4
    r = run("list", "--json")
    assert [d["name"] for d in json.loads(r.stdout)] == ["sales"]
    r = run("delete", "sales")
    assert r.exit_code == 0
    r = run("gc", "--min-age-s", "0", "--json")
    assert json.loads(r.stdout)["purged_datasets"] == ["sales"]


def test_cli_errors_are_one_line(run, backend: Backend, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("create", "logs")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    r = run("push", "logs", str(bad))
    assert r.exit_code == 1 and "line 3" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("show", "logs@ffffffffffffffff")
    assert r.exit_code == 1 and "does not exist" in r.stderr
    r = run("push", "logs", str(tmp_path / "missing.csv"))
    assert r.exit_code == 1 and "not a file" in r.stderr
    # The export is a download (``dataset.read``); a viewer may look at the dataset, not read it.
    good = tmp_path / "good.csv"
    good.write_text("a,b\n1,2\n")
    assert run("push", "logs", str(good)).exit_code == 0
    viewer = _token(backend, "vera", Role.VIEWER)
    r = run("export", "logs", str(tmp_path / "o"), token=viewer)
    assert r.exit_code == 1 and "dataset.read" in r.stderr
