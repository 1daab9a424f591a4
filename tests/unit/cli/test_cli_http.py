"""``dlp users``, ``audit``, ``lineage``, ``metadata export``, ``predict`` and ``batch-predict``
as clients of the gateway: the in-process app over a real DuckDB store (``cli_as``), or a fake
gateway (httpx's MockTransport) for answers the app cannot give without Ray."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from dlplatform.cli import _common
from dlplatform.cli import app as dlp
from dlplatform.client import HttpClient, Platform
from dlplatform.metadata import LineageEdge, MetadataStore
from dlplatform.metadata.store import EXPORTED_TABLES


def _fake_gateway(
    monkeypatch: pytest.MonkeyPatch, handler: Callable[[httpx.Request], httpx.Response]
) -> None:
    http = HttpClient("http://gw.test", "dlp_t", transport=httpx.MockTransport(handler), retries=0)
    monkeypatch.setattr(_common, "platform", lambda home=None, **_: Platform(http))


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


def test_users_and_audit(run) -> None:  # type: ignore[no-untyped-def]
    r = run("users", "create", "bob", "--role", "viewer", "--group", "sales", "--json")
    assert r.exit_code == 0, r.output
    created = json.loads(r.stdout)
    assert created["user"]["name"] == "bob" and created["user"]["groups"] == ["sales"]
    assert created["token"].startswith("dlp_")
    r = run("users", "create", "carl", "--role", "researcher")
    assert r.exit_code == 0 and "shown once" in r.stdout
    r = run("users", "list", "--json")
    assert [u["name"] for u in json.loads(r.stdout)] == ["admin", "bob", "carl"]
    r = run("users", "token", "bob", "--json")
    second = json.loads(r.stdout)["info"]["id"]
    r = run("users", "tokens", "bob", "--json")
    assert len(json.loads(r.stdout)) == 2 and "token_hash" not in r.stdout
    r = run("users", "revoke", second, "--json")
    assert json.loads(r.stdout)["revoked_at"] is not None
    r = run("users", "list", token=created["token"])  # bob is a viewer
    assert "users.manage" in _error_line(r) or "permission" in _error_line(r).lower()
    r = run("users", "create", "bob", "--role", "viewer")
    assert "already exists" in _error_line(r)

    r = run("audit", "--action", "users.create", "--json")
    assert r.exit_code == 0, r.output
    assert [e["target"] for e in json.loads(r.stdout)][:2] == ["user:carl", "user:bob"]
    r = run("audit", "--outcome", "denied", "--limit", "5")
    assert r.exit_code == 0 and "bob" in r.stdout


def test_lineage(run, store: MetadataStore) -> None:  # type: ignore[no-untyped-def]
    store.add_edges([
        LineageEdge(src="commit:c-1", dst="run:r-1", relation="trained_on"),
        LineageEdge(src="run:r-1", dst="model_version:m@1", relation="produced"),
    ])  # fmt: skip
    r = run("lineage", "model_version:m@1", "--json")
    assert r.exit_code == 0, r.output
    assert [(n["entity"], n["depth"]) for n in json.loads(r.stdout)] == [
        ("run:r-1", 1), ("commit:c-1", 2)
    ]  # fmt: skip
    r = run("lineage", "commit:c-1", "--down", "--depth", "1", "--json")
    assert [n["entity"] for n in json.loads(r.stdout)] == ["run:r-1"]
    r = run("lineage", "commit:c-1", "--down")
    assert r.exit_code == 0 and "run:r-1" in r.stdout
    line = _error_line(run("lineage", "model_version:no-such-model@99"))
    assert "model_version:no-such-model@99 does not exist" in line
    assert "invalid entity 'table:x'" in _error_line(run("lineage", "table:x"))


def test_metadata_export_writes_each_table(run, tmp_path: Path, backend) -> None:  # type: ignore[no-untyped-def]
    from dlplatform import access
    from dlplatform.access import UserSpec
    from dlplatform.metadata import Role

    out = tmp_path / "meta"
    r = run("metadata", "export", str(out), "--json")
    assert r.exit_code == 0, r.output
    answer = json.loads(r.stdout)
    assert answer["directory"] == str(out)
    assert sorted(Path(f).name for f in answer["files"]) == sorted(
        f"{t}.parquet" for t in EXPORTED_TABLES
    )
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{t}.parquet" for t in EXPORTED_TABLES)
    users = pq.read_table(out / "users.parquet")
    assert users.column("name").to_pylist() == ["admin"]
    assert "token_hash" not in pq.read_table(out / "tokens.parquet").column_names

    viewer = access.create_user(backend, access.SYSTEM, UserSpec(name="vic", role=Role.VIEWER))
    assert _error_line(run("metadata", "export", str(tmp_path / "v"), token=viewer.token))
    assert not (tmp_path / "v").exists()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.mark.parametrize(
    "bad",
    ["../evil.parquet", "/etc/evil.parquet", "sub/users.parquet", "users.csv", ".hidden.parquet",
     "users.parquet/"],
)  # fmt: skip
def test_metadata_export_refuses_unexpected_members(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bad: str
) -> None:
    archive = _zip({"users.parquet": b"PAR1", bad: b"x"})
    _fake_gateway(monkeypatch, lambda request: httpx.Response(200, content=archive))
    out = tmp_path / "meta"
    r = CliRunner().invoke(dlp, ["metadata", "export", str(out)])
    assert "refusing the metadata export" in _error_line(r)
    assert not out.exists() and not (tmp_path / "evil.parquet").exists()


def test_metadata_export_refuses_a_non_zip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_gateway(monkeypatch, lambda request: httpx.Response(200, content=b"<html>"))
    r = CliRunner().invoke(dlp, ["metadata", "export", str(tmp_path / "m")])
    assert "not a ZIP archive" in _error_line(r)


def test_predict_posts_the_rows_to_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = {"outputs": [1, 0], "model": "m", "version": 3, "request_id": "req-1"}
        return httpx.Response(200, json=answer)

    _fake_gateway(monkeypatch, handler)
    r = CliRunner().invoke(dlp, ["predict", "m", "--input", '{"inputs": [[1, 2], [3, 4]]}',
                                 "--json"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"outputs": [1, 0], "model": "m", "version": 3,
                                    "request_id": "req-1"}  # fmt: skip
    assert seen[0].method == "POST" and seen[0].url.path == "/models/m"
    assert json.loads(seen[0].content) == {"inputs": [[1, 2], [3, 4]]}
    bad = CliRunner().invoke(dlp, ["predict", "m", "--input", "[[1,"])
    assert "not valid JSON" in _error_line(bad)


def test_predict_without_a_deployment_is_one_line(run) -> None:  # type: ignore[no-untyped-def]
    # The in-process gateway serves no /models routes (Serve does): its bare 404, in one line.
    assert _error_line(run("predict", "ghost", "--input", "[[1.0]]"))


def test_batch_predict(run, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    r = run("batch-predict", "ghost", "d", "--output", "o")
    assert "ghost" in _error_line(r)

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/batch-predictions"
        body = json.loads(request.content)
        assert body == {"model": "m@2", "dataset": "d@c1", "output": "o", "workers": 3}
        return httpx.Response(201, json={
            "model": "m", "version": 2, "input_dataset": "d", "input_commit": "c1",
            "output_dataset": "o", "output_commit": "c2", "rows": 10, "seconds": 1.5})  # fmt: skip

    _fake_gateway(monkeypatch, handler)
    r = CliRunner().invoke(dlp, ["batch-predict", "m@2", "d@c1", "--output", "o", "--workers", "3"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "10 predictions of m@2 on d@c1 -> o@c2 (1.5 s)"
    r = CliRunner().invoke(dlp, ["batch-predict", "m@2", "d@c1", "--output", "o", "--workers",
                                 "3", "--json"])  # fmt: skip
    assert json.loads(r.stdout)["output_commit"] == "c2"
