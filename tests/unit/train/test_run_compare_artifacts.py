"""Comparing runs and reading the files of runs and model versions, in-process through the real
gateway app, DuckDB and artifact store (``/api/v1/runs/compare``, ``.../artifacts``): the SDK's
DataFrame, streamed and hash-checked downloads, bad paths, unknown ids, damaged stored files."""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dlplatform.access import issue_token
from dlplatform.context import Backend
from dlplatform.errors import AlreadyExists, IntegrityError, InvalidInput, NotFound
from dlplatform.metadata import ModelVersion, Role, User
from dlplatform.metadata.records import utcnow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"
BIG = 2 * 1024 * 1024 + 123  # more than two of the store's 1 MiB chunks


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _damage(backend: Backend, sha256: str, at: float = 0.5) -> None:
    """Flip one bit of a stored object (its size stays the same)."""
    path = Path(backend.artifacts.path_for(sha256))
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * at)] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(raw))


def _runs_with_files(p: Any, tmp_path: Path) -> tuple[str, str]:
    notes, big = tmp_path / "notes.txt", tmp_path / "big.bin"
    notes.write_text("hello\n")
    big.write_bytes(bytes(range(256)) * (BIG // 256) + b"x" * (BIG % 256))
    with p.runs.start(name="a", params={"lr": 0.01, "opt": "adam"}) as a:
        a.log_metrics({"loss": 0.5, "val_accuracy": 0.9, "odd": math.nan}, step=3)
        a.log_artifact(notes)
        a.log_artifact(big, "data/big.bin")
    with p.runs.start(name="b", params={"lr": 0.1, "opt": "adam", "extra": 1}) as b:
        b.log_metrics({"loss": 0.5, "val_accuracy": 0.8, "odd": math.nan}, step=3)
    return a.id, b.id


def test_compare_as_a_dataframe_the_api_and_its_limits(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str, tmp_path: Path
) -> None:
    p = http_platform(admin_token)
    a, b = _runs_with_files(p, tmp_path)
    frame = p.runs.compare([a, b])
    assert list(frame.columns) == [a, b, "differs"]
    assert list(frame.index) == ["params.extra", "params.lr", "params.opt", "metrics.loss",
                                 "metrics.odd", "metrics.val_accuracy"]  # fmt: skip
    assert frame.loc["params.lr", a] == "0.01" and frame.loc["params.extra", a] is None
    assert frame.loc["metrics.val_accuracy", b] == 0.8
    # NaN equals NaN; a key one run lacks differs
    assert frame["differs"].to_dict() == {
        "params.extra": True, "params.lr": True, "params.opt": False, "metrics.loss": False,
        "metrics.odd": False, "metrics.val_accuracy": True,
    }  # fmt: skip
    only = p.runs.compare([b, a], only_differing=True)
    assert list(only.columns) == [b, a, "differs"] and bool(only["differs"].all())
    assert list(only.index) == ["params.extra", "params.lr", "metrics.val_accuracy"]

    joined = client.get(f"{API}/runs/compare", params={"ids": f"{a},{b},{a}"},
                        headers=_auth(admin_token))  # fmt: skip
    assert joined.status_code == 200, joined.text
    body = joined.json()
    assert [v["run"]["id"] for v in body["runs"]] == [a, b]
    assert body["differing"] == ["params.extra", "params.lr", "metrics.val_accuracy"]
    assert body["runs"][0]["metrics"]["odd"] == "NaN"
    unknown = client.get(f"{API}/runs/compare", params={"ids": [a, "run-nope"]},
                         headers=_auth(admin_token))  # fmt: skip
    assert unknown.status_code == 404 and "run-nope" in unknown.json()["message"]
    many = client.get(f"{API}/runs/compare", params={"ids": ",".join(f"r{i}" for i in range(51))},
                      headers=_auth(admin_token))  # fmt: skip
    assert many.status_code == 422 and "at most 50" in many.json()["message"]
    assert client.get(f"{API}/runs/compare", headers=_auth(admin_token)).status_code == 422
    assert client.get(f"{API}/runs/compare", params={"ids": a}).status_code == 401
    with pytest.raises(NotFound, match="run-nope"):
        p.runs.compare([a, "run-nope"])


def test_run_files_are_listed_and_downloaded_checked(
    backend: Backend, client: TestClient, http_platform: Callable[[str], Any], admin_token: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    a, b = _runs_with_files(p, tmp_path)
    listed = client.get(f"{API}/runs/{a}/artifacts", headers=_auth(admin_token))
    assert listed.status_code == 200
    assert [(f["path"], f["size_bytes"], f["media_type"]) for f in listed.json()] == [
        ("data/big.bin", BIG, "application/octet-stream"), ("notes.txt", 6, "text/plain")]  # fmt: skip
    assert listed.json()[1]["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert p.runs.artifacts(b) == []

    got = client.get(f"{API}/runs/{a}/artifacts/notes.txt", headers=_auth(admin_token))
    assert got.status_code == 200 and got.content == b"hello\n"
    assert got.headers["content-type"].startswith("text/plain")
    assert got.headers["X-DLP-SHA256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert got.headers["content-length"] == "6"
    assert "attachment" in got.headers["content-disposition"]
    assert got.headers["x-content-type-options"] == "nosniff"

    out = p.runs.download_artifact(a, "data/big.bin", tmp_path / "dl")
    assert out == tmp_path / "dl" and out.read_bytes() == (tmp_path / "big.bin").read_bytes()
    (tmp_path / "into").mkdir()
    assert (
        p.runs.download_artifact(a, "notes.txt", tmp_path / "into") == tmp_path / "into/notes.txt"
    )
    with p.runs.start(name="live") as live:
        live.log_artifact(tmp_path / "notes.txt", "n.txt")
        assert [f.path for f in live.artifacts()] == ["n.txt"]
        assert live.download_artifact("n.txt", tmp_path / "n.txt").read_text() == "hello\n"
    audited = backend.store.list_audit(action="run.read_artifact")
    assert {e.detail for e in audited} >= {"notes.txt", "data/big.bin", "n.txt"}


def test_paths_outside_a_run_are_refused(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str, tmp_path: Path
) -> None:
    p = http_platform(admin_token)
    with p.runs.start(name="files") as run:
        run.log_artifact(_file(tmp_path))
    for path in ("%2e%2e/%2e%2e/etc/passwd", "a/%2E%2E/b", "a%5Cb", "/etc/passwd", "a//b",
                 "..%2F..%2Fetc%2Fpasswd"):  # fmt: skip
        reply = client.get(f"{API}/runs/{run.id}/artifacts/{path}", headers=_auth(admin_token))
        assert reply.status_code in (404, 422), (path, reply.text)
        assert reply.headers["content-type"] == "application/json", path
        assert "root:" not in reply.text
    dots = client.get(f"{API}/runs/{run.id}/artifacts/a%2F%2E%2E%2Fnotes.txt",
                      headers=_auth(admin_token))  # fmt: skip
    assert dots.status_code == 422 and "'..'" in dots.json()["message"]


def _file(tmp_path: Path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    return f


def test_bad_requests_for_run_files(
    backend: Backend, client: TestClient, http_platform: Callable[[str], Any], admin_token: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    with p.runs.start(name="files") as run:
        run.log_artifact(_file(tmp_path))
    auth = _auth(admin_token)
    assert client.get(f"{API}/runs/run-nope/artifacts", headers=auth).status_code == 404
    assert client.get(f"{API}/runs/run-nope/artifacts/notes.txt", headers=auth).status_code == 404
    missing = client.get(f"{API}/runs/{run.id}/artifacts/other.txt", headers=auth)
    assert missing.status_code == 404 and "other.txt" in missing.json()["message"]
    with pytest.raises(InvalidInput):
        p.runs.download_artifact(run.id, "../notes.txt", tmp_path / "x")
    with pytest.raises(NotFound):
        p.runs.download_artifact("run-nope", "notes.txt", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    backend.store.create_user(User(name="app1", role=Role.APP, created_at=utcnow()))
    app_token = issue_token(backend.store, "app1")[0]
    for url in (f"{API}/runs/{run.id}/artifacts", f"{API}/runs/{run.id}/artifacts/notes.txt"):
        assert client.get(url, headers=_auth(app_token)).status_code == 403


def test_a_damaged_run_file_is_never_served_as_good(
    backend: Backend, lenient_client: TestClient, http_platform: Callable[[str], Any],
    admin_token: str, tmp_path: Path,
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    a, _ = _runs_with_files(p, tmp_path)
    files = {f.path: f for f in p.runs.artifacts(a)}
    _damage(backend, files["notes.txt"].sha256)
    _damage(backend, files["data/big.bin"].sha256, at=0.9)  # in its last chunk
    small = lenient_client.get(f"{API}/runs/{a}/artifacts/notes.txt", headers=_auth(admin_token))
    assert small.status_code == 500 and small.json()["error"] == "integrity_error"
    big = lenient_client.get(f"{API}/runs/{a}/artifacts/data/big.bin", headers=_auth(admin_token))
    assert big.status_code == 200  # the stream had started: it is cut before its last chunk
    assert len(big.content) < BIG and int(big.headers["content-length"]) == BIG
    for path in ("notes.txt", "data/big.bin"):
        with pytest.raises(IntegrityError):
            p.runs.download_artifact(a, path, tmp_path / "out" / "f")
    assert list((tmp_path / "out").iterdir()) == []  # no partial file left behind


def _version(backend: Backend, name: str, files: dict[str, bytes], tmp_path: Path) -> ModelVersion:
    """A registered version whose artifact directory holds ``files`` (as the registry stores a
    model: a manifest of weights.pt and model.json)."""
    src = tmp_path / f"src-{name}"
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    ref = backend.artifacts.put_dir(src)
    version = ModelVersion(model=name, version=0, run_id=None, artifact_sha256=ref.sha256,
                           signature_json="{}", created_at=utcnow())  # fmt: skip
    return backend.store.add_model_version(version, owner="admin")


def test_model_version_files_are_listed_and_downloaded_all_or_nothing(
    backend: Backend, client: TestClient, http_platform: Callable[[str], Any], admin_token: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    files = {"weights.pt": b"w" * 1000, "model.json": b'{"format": "dlplatform.model/1"}'}
    _version(backend, "m", files, tmp_path)
    backend.store.set_alias("m", "production", 1, by="admin")
    p = http_platform(admin_token)
    listed = client.get(f"{API}/models/m/versions/production/artifacts", headers=_auth(admin_token))
    assert listed.status_code == 200, listed.text
    assert [(f["path"], f["size_bytes"], f["media_type"]) for f in listed.json()] == [
        ("model.json", 32, "application/json"), ("weights.pt", 1000, "application/octet-stream")]  # fmt: skip
    got = client.get(f"{API}/models/m/versions/1/artifacts/model.json", headers=_auth(admin_token))
    assert got.content == files["model.json"]
    assert got.headers["X-DLP-SHA256"] == hashlib.sha256(files["model.json"]).hexdigest()
    for bad in ("..%2Fweights.pt", "%2e%2e", "nope.txt", "/weights.pt"):
        reply = client.get(f"{API}/models/m/versions/1/artifacts/{bad}", headers=_auth(admin_token))
        assert reply.status_code in (404, 422), (bad, reply.text)
    assert client.get(f"{API}/models/m/versions/9/artifacts", headers=_auth(admin_token)
                      ).status_code == 404  # fmt: skip

    written = p.models.download("m@production", tmp_path / "m1")
    assert sorted(f.name for f in written) == ["model.json", "weights.pt"]
    assert (tmp_path / "m1/weights.pt").read_bytes() == files["weights.pt"]
    with pytest.raises(AlreadyExists, match="not empty"):
        p.models.download("m", tmp_path / "m1")
    (tmp_path / "m1/weights.pt").write_bytes(b"old")
    p.models.download("m", tmp_path / "m1", force=True)
    assert (tmp_path / "m1/weights.pt").read_bytes() == files["weights.pt"]
    assert "model.download" in {e.action for e in backend.store.list_audit(action="model.download")}

    _damage(backend, hashlib.sha256(files["weights.pt"]).hexdigest())
    with pytest.raises(IntegrityError):
        p.models.download("m@1", tmp_path / "m2")
    assert not (tmp_path / "m2").exists()
    assert [x.name for x in tmp_path.iterdir() if x.name.startswith(".m2")] == []


def test_a_listed_path_that_would_leave_the_directory_is_refused() -> None:
    """The client checks the paths a gateway lists before it builds a local path from one."""
    from dlplatform.client._files import safe_parts

    for bad in ("../x", "/etc/passwd", "a/../../b", "a\\b", "", "a//b", "."):
        with pytest.raises(InvalidInput):
            safe_parts(bad)
    assert safe_parts("sub/dir/f.bin") == ("sub", "dir", "f.bin")
