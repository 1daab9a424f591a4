"""Runs tracked from any code over HTTP (``p.runs``, ``/api/v1/runs``), in-process with the real
gateway app and DuckDB: buffering, ending, lineage, bad input, permissions, models."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from dlplatform import data
from dlplatform.access import SYSTEM, issue_token
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, PermissionDenied
from dlplatform.metadata import Role, User
from dlplatform.metadata.records import utcnow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"


def _user(backend: Backend, name: str, role: Role) -> str:
    backend.store.create_user(User(name=name, role=role, created_at=utcnow()))
    return issue_token(backend.store, name)[0]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def digits(backend: Backend) -> str:
    """A dataset version: ``digits@<commit>``."""
    data.create_dataset(backend, SYSTEM, "digits")
    commit = data.push(backend, SYSTEM, "digits", pa.table({"x": [1.0, 2.0], "y": [0, 1]}))
    return f"digits@{commit.id}"


def _wait_for(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_tracked_run_from_start_to_end(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str, digits: str
) -> None:
    p = http_platform(admin_token)
    with p.runs.start(name="sweep-1", params={"lr": 0.01, "opt": "adam"}, tags={"team": "vision"},
                      dataset=digits) as run:  # fmt: skip
        assert run.view.run.kind == "tracked" and run.view.run.status.value == "RUNNING"
        for step in range(5):
            run.log_metric("loss", 1.0 / (step + 1), step)
        run.log_metrics({"val_accuracy": 0.9, "val_loss": 0.3}, step=4)
        run.log_metric("loss", 99.0, 2)  # an earlier step logged late: not the final value
        run.log_params({"epochs": 5})
        run.set_tags({"stage": "dev"})
    got = p.runs.get(run.id)
    assert got.run.status.value == "SUCCEEDED" and got.run.ended_at is not None
    assert got.metrics == {"loss": 0.2, "val_accuracy": 0.9, "val_loss": 0.3}
    assert got.params == {"epochs": "5", "lr": "0.01", "opt": "adam"}
    assert got.tags == {"stage": "dev", "team": "vision"}
    assert got.dataset == digits
    assert len(p.runs.metrics(run.id, "loss")) == 6
    edges = backend.store.upstream(f"run:{run.id}", 1)
    assert [(e.entity, e.relation) for e in edges] == [
        (f"commit:{digits.split('@')[1]}", "trained_on")
    ]


def test_an_exception_ends_the_run_failed(
    http_platform: Callable[[str], Any], admin_token: str
) -> None:
    p = http_platform(admin_token)
    with pytest.raises(ZeroDivisionError), p.runs.start(name="boom") as run:
        run.log_metric("loss", 1.0)
        _ = 1 / 0
    got = p.runs.get(run.id)
    assert got.run.status.value == "FAILED" and "ZeroDivisionError" in (got.run.error or "")
    assert got.metrics == {"loss": 1.0}  # what was buffered was sent before it ended


def test_points_are_buffered_and_flushed_in_the_background(
    http_platform: Callable[[str], Any], admin_token: str
) -> None:
    p = http_platform(admin_token)
    held = p.runs.start(name="held", flush_interval_s=3600)
    for i in range(1000):
        held.log_metric("loss", float(i), i)
    assert p.runs.get(held.id).metrics == {}  # nothing sent by the calls themselves
    assert held.flush() == 1000
    assert p.runs.get(held.id).metrics == {"loss": 999.0}
    held.end()
    ticking = p.runs.start(name="ticking", flush_interval_s=0.1)
    ticking.log_metrics({"a": 1.0, "b": 2.0}, step=3)
    _wait_for(lambda: p.runs.get(ticking.id).metrics == {"a": 1.0, "b": 2.0})
    ticking.end()


def test_logging_to_an_ended_run_is_409(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    p = http_platform(admin_token)
    run = p.runs.start(name="done")
    run.end()
    base = f"{API}/runs/{run.id}"
    body = {"keys": ["loss"], "values": [1.0]}
    for path, payload in [
        ("metrics", body), ("params", {"params": {"a": 1}}), ("tags", {"tags": {"a": "b"}}),
        ("end", {"status": "FAILED"}),
    ]:  # fmt: skip
        reply = client.post(f"{base}/{path}", json=payload, headers=_auth(admin_token))
        assert reply.status_code == 409, (path, reply.text)
        assert "has ended" in reply.json()["message"]
    with pytest.raises(Conflict):
        run.log_metric("loss", 1.0)
    reply = client.post(f"{base}/artifacts", params={"path": "a.txt"}, content=b"x",
                        headers=_auth(admin_token))  # fmt: skip
    assert reply.status_code == 409


def test_nan_and_infinite_values_are_stored_and_shown(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    p = http_platform(admin_token)
    with p.runs.start(name="odd") as run:
        run.log_metrics({"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "ok": 1.0})
    shown = client.get(f"{API}/runs/{run.id}", headers=_auth(admin_token))
    assert shown.status_code == 200
    assert shown.json()["metrics"] == {"inf": "Infinity", "nan": "NaN", "ninf": "-Infinity",
                                       "ok": 1.0}  # fmt: skip
    points = client.get(f"{API}/runs/{run.id}/metrics", headers=_auth(admin_token))
    assert points.status_code == 200 and {x["value"] for x in points.json()} >= {"NaN"}
    got = p.runs.get(run.id).metrics
    assert math.isnan(got["nan"]) and got["inf"] == math.inf and got["ninf"] == -math.inf
    listed = client.get(f"{API}/runs", headers=_auth(admin_token))
    assert listed.status_code == 200
    # a NaN final value matches no comparison; infinity compares as the largest number
    assert p.runs.list("metrics.nan > 0") == [] and p.runs.list("metrics.nan < 0") == []
    assert [v.run.id for v in p.runs.list("metrics.inf > 1e308")] == [run.id]


def test_a_10000_point_call(client: TestClient, http_platform: Callable[[str], Any],
                            admin_token: str) -> None:  # fmt: skip
    run = http_platform(admin_token).runs.start(name="big")
    n = 10_000
    body = {"keys": ["loss"] * n, "values": [float(i) for i in range(n)], "steps": list(range(n))}
    reply = client.post(f"{API}/runs/{run.id}/metrics", json=body, headers=_auth(admin_token))
    assert reply.status_code == 201 and reply.json()["count"] == n
    run.log_metrics({f"k{i}": float(i) for i in range(n)}, step=1)  # one call, several requests
    assert run.flush() == n
    view = run.end()
    assert view.metrics["loss"] == n - 1 and len(view.metrics) == n + 1


@pytest.mark.parametrize(
    "path", ["../escape", "a/../../b", "/etc/passwd", "a//b", ".", "a\\b", "%2e%2e/x", ""]
)
def test_artifact_paths_outside_the_run_are_refused(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str, path: str
) -> None:
    run = http_platform(admin_token).runs.start(name="files")
    reply = client.post(f"{API}/runs/{run.id}/artifacts", params={"path": path}, content=b"x",
                        headers=_auth(admin_token))  # fmt: skip
    assert reply.status_code == 422, reply.text
    run.end()


def test_artifacts_are_stored_and_listed(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str, tmp_path: Any
) -> None:
    local = tmp_path / "notes.txt"
    local.write_text("hello")
    with http_platform(admin_token).runs.start(name="files") as run:
        first = run.log_artifact(local)
        run.log_artifact(local, "reports/2026/notes.txt")
        with pytest.raises(InvalidInput):
            run.log_artifact(local, "../notes.txt")
    assert first.path == "notes.txt" and first.size_bytes == 5
    listed = http_platform(admin_token).runs.get(run.id).artifacts
    assert [a.path for a in listed] == ["notes.txt", "reports/2026/notes.txt"]
    assert backend.artifacts.get_bytes(first.sha256) == b"hello"


def test_who_may_start_log_and_read(
    backend: Backend, client: TestClient, http_platform: Callable[[str], Any], admin_token: str
) -> None:
    alice = _user(backend, "alice", Role.DATA_SCIENTIST)
    bob = _user(backend, "bob", Role.DATA_SCIENTIST)
    vic = _user(backend, "vic", Role.VIEWER)
    with pytest.raises(PermissionDenied):
        http_platform(vic).runs.start(name="nope")
    run = http_platform(alice).runs.start(name="mine")
    base = f"{API}/runs/{run.id}"
    for path, payload in [("metrics", {"keys": ["a"], "values": [1.0]}),
                          ("params", {"params": {"a": 1}}), ("end", {"status": "SUCCEEDED"})]:  # fmt: skip
        reply = client.post(f"{base}/{path}", json=payload, headers=_auth(bob))
        assert reply.status_code == 403, (path, reply.text)
    assert client.post(f"{base}/artifacts", params={"path": "a"}, content=b"x",
                       headers=_auth(bob)).status_code == 403  # fmt: skip
    assert client.post(f"{base}/metrics", json={"keys": ["a"], "values": [2.0]},
                       headers=_auth(admin_token)).status_code == 201  # fmt: skip
    assert [v.run.id for v in http_platform(vic).runs.list()] == [run.id]  # viewers read
    denied = backend.store.list_audit(actor="bob", outcome="denied")
    assert {e.action for e in denied} >= {"metrics.log", "run.log_params", "run.end"}
    run.end()


def test_a_logged_model_is_a_registry_version_with_lineage(
    backend: Backend, client: TestClient, http_platform: Callable[[str], Any], admin_token: str,
    digits: str,
) -> None:  # fmt: skip
    import torch

    from dlplatform.models import ModelSignature

    p = http_platform(admin_token)
    signature = ModelSignature(kind="tabular", features=("x",), dtypes=("double",),
                               input_shape=(1,), task="classification", label="y",
                               classes=(0, 1))  # fmt: skip
    with p.runs.start(name="with-model", dataset=digits) as run:
        run.log_metric("val_accuracy", 0.75, 1)
        version = run.log_model(torch.nn.Linear(1, 2), signature, name="digits-linear")
        reply = client.post(f"{API}/runs/{run.id}/artifacts", params={"path": "bad.pt"},
                            content=b"not a state dict", headers=_auth(admin_token))  # fmt: skip
        bad = client.post(f"{API}/runs/{run.id}/model", headers=_auth(admin_token), json={
            "name": "digits-linear", "weights": "bad.pt", "signature": signature.model_dump()})  # fmt: skip
        assert reply.status_code == 201 and bad.status_code == 422, bad.text
    assert (version.model, version.version, version.run_id) == ("digits-linear", 1, run.id)
    assert version.dataset_commit == digits.split("@")[1]
    assert '"val_accuracy": 0.75' in version.metrics_json
    down = backend.store.downstream(f"run:{run.id}", 1)
    assert [(n.entity, n.relation) for n in down] == [("model_version:digits-linear@1", "produced")]
    state = torch.load(
        backend.artifacts.get_dir(version.artifact_sha256, backend.settings.home / "m")
        / "weights.pt",
        weights_only=True,
    )
    assert set(state) == {"weight", "bias"}


def _sweep(p: Any) -> list[str]:
    ids = []
    for i, lr in enumerate([0.001, 0.003, 0.01, 0.03]):
        with p.runs.start(name=f"s{i}", params={"lr": lr},
                          tags={"team": "vision" if i % 2 else "nlp"}) as run:  # fmt: skip
            run.log_metric("val_accuracy", 0.5 + i / 10, 1)
        ids.append(run.id)
    return ids


def test_search_over_http_sdk_and_cli(
    client: TestClient, http_platform: Callable[[str], Any], admin_token: str,
    run: Callable[..., Any],
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    ids = _sweep(p)
    found = p.runs.search('params.lr < 0.02 and metrics.val_accuracy > 0.55 and tags.team = "vision"',
                          order_by="metrics.val_accuracy DESC")  # fmt: skip
    assert list(found["run_id"]) == [ids[1]]
    frame = p.runs.search(order_by="metrics.val_accuracy DESC", max_results=3)
    assert list(frame["run_id"]) == ids[::-1][:3]
    assert {"params.lr", "metrics.val_accuracy", "tags.team", "status"} <= set(frame.columns)
    assert frame["metrics.val_accuracy"].tolist() == [0.8, 0.7, 0.6]
    page = client.get(f"{API}/runs", params={"order_by": "params.lr", "limit": 2, "offset": 1},
                      headers=_auth(admin_token))  # fmt: skip
    assert [v["run"]["id"] for v in page.json()] == ids[1:3]
    assert page.headers["X-Total-Count"] == "4"
    assert p.runs.list("metrics.no_such_key > 0") == []
    bad = client.get(f"{API}/runs", params={"filter": "params.lr <> and x"},
                     headers=_auth(admin_token))  # fmt: skip
    assert bad.status_code == 422 and "position 13 ('and')" in bad.json()["message"]
    with pytest.raises(InvalidInput, match="position 10"):
        p.runs.list("metrics.a ~ 1")
    out = run("runs", "list", "--filter", 'tags.team = "nlp"', "--sort", "metrics.val_accuracy",
              "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    import json

    assert [v["run"]["id"] for v in json.loads(out.stdout)] == [ids[0], ids[2]]
    table = run("runs", "list", "--sort", "metrics.val_accuracy DESC", "--limit", "1", "--filter",
                'params.lr > 0.02')  # fmt: skip
    assert table.exit_code == 0 and ids[3] in table.stdout
    shown = run("runs", "show", ids[0])
    assert shown.exit_code == 0 and "val_accuracy" in shown.stdout
    failed = run("runs", "list", "--filter", "status = 1")
    assert failed.exit_code == 1 and "position 9" in failed.stderr


def test_closing_the_client_ends_its_open_runs_first(
    http_platform: Callable[[str], object], admin_token: str
) -> None:
    p = http_platform(admin_token)
    run = p.runs.start(name="left-open")  # type: ignore[attr-defined]
    run.log_metric("loss", 0.5, 0)
    p.close()  # type: ignore[attr-defined]
    again = http_platform(admin_token).runs.get(run.id)  # type: ignore[attr-defined]
    assert again.run.status.value == "SUCCEEDED"
    assert again.metrics == {"loss": 0.5}
