"""The SDK's HTTP client against the in-process gateway (real DuckDB store, real FastAPI app).

The transport is Starlette's in-process one, so every call goes through the real routes, auth,
error mapping and JSON (de)serialization; only the socket is skipped.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dlplatform.api.app import create_app
from dlplatform.client import HttpClient, Platform
from dlplatform.context import Backend
from dlplatform.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from dlplatform.metadata import Run
from dlplatform.metadata.records import utcnow
from dlplatform.train import TrainingJobSpec

with warnings.catch_warnings():  # starlette prefers httpx2; the client is on httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def transport(backend: Backend) -> Iterator[httpx.BaseTransport]:
    with TestClient(create_app(backend), base_url=BASE) as tc:
        yield tc._transport


def _platform(transport: httpx.BaseTransport, token: str | None) -> Platform:
    return Platform(HttpClient(BASE, token, transport=transport, retries=0))


def test_datasets_round_trip_over_http(
    transport: httpx.BaseTransport, admin_token: str, tmp_path: Path
) -> None:
    p = _platform(transport, admin_token)
    assert p.whoami().name == "admin"
    ds = p.datasets.create("sales", description="daily sales")
    csv = tmp_path / "day1.csv"
    csv.write_text("x,y\n1,2\n3,4\n")
    c1 = ds.push(csv, message="csv")
    assert c1.row_count == 2 and ds.dataset.head == c1.id
    table = pa.table({"x": [5, 6, 7], "y": [8, 9, 10]})
    c2 = ds.push(table, message="arrow")
    part = tmp_path / "day3.parquet"
    pq.write_table(pa.table({"x": [11], "y": [12]}), part)
    c3 = ds.push(part)
    assert [c.id for c in ds.commits()] == [c3.id, c2.id, c1.id]
    assert [d.name for d in p.datasets.list()] == ["sales"]
    got = p.datasets.resolve(f"sales@{c2.id}").to_arrow()
    assert sorted(got.column("x").to_pylist()) == [1, 3, 5, 6, 7]
    head = ds.get().to_pandas()
    assert sorted(head["y"].tolist()) == [2, 4, 8, 9, 10, 12]
    assert ds.get().to_arrow(columns=["y"]).column_names == ["y"]
    assert ds.get(c1.id).sample(1).num_rows == 1
    back = ds.rollback(c1.id)
    assert ds.get(back.id).to_arrow().num_rows == 2


def test_push_retried_with_the_same_key_makes_one_commit(
    transport: httpx.BaseTransport, admin_token: str
) -> None:
    p = _platform(transport, admin_token)
    ds = p.datasets.create("once")
    table = pa.table({"a": [1, 2]})
    first = ds.push(table, idempotency_key="push-1")
    again = ds.push(table, idempotency_key="push-1")
    assert again.id == first.id
    assert len(ds.commits()) == 1


def test_errors_come_back_typed(transport: httpx.BaseTransport, admin_token: str) -> None:
    p = _platform(transport, admin_token)
    with pytest.raises(NotFound, match="nope"):
        p.datasets.get("nope")
    p.datasets.create("dup")
    with pytest.raises(AlreadyExists):
        p.datasets.create("dup")
    with pytest.raises(InvalidInput):
        p.datasets.create("Bad Name")
    viewer = p.users.create("vic", "viewer")
    with pytest.raises(PermissionDenied):
        _platform(transport, viewer.token).datasets.create("mine")
    with pytest.raises(Unauthenticated):
        _platform(transport, "dlp_000000000000_wrong").datasets.list()
    p.users.revoke_token(viewer.info.id)
    with pytest.raises(Unauthenticated):
        _platform(transport, viewer.token).datasets.list()


def test_unreachable_url_is_one_clear_error() -> None:
    http = HttpClient("http://127.0.0.1:9", "t", retries=1, backoff_s=0.01)
    with pytest.raises(
        BackendUnavailable, match=r"cannot reach the platform at http://127.0.0.1:9"
    ):
        Platform(http).datasets.list()


def test_idempotent_calls_are_retried_and_posts_are_not() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return httpx.Response(503, text="restarting")
        return httpx.Response(200, json=[])

    http = HttpClient(BASE, "t", transport=httpx.MockTransport(handler), backoff_s=0.001)
    assert Platform(http).datasets.list() == []
    assert calls == ["GET", "GET", "GET"]
    calls.clear()
    with pytest.raises(BackendUnavailable, match="503"):
        Platform(http).users.create("x", "viewer")
    assert calls == ["POST"]


def test_cut_off_download_raises(admin_token: str, backend: Backend) -> None:
    """A stream that ends early, or runs long, is an error, never a short table."""
    from dlplatform.errors import IntegrityError

    with TestClient(create_app(backend), base_url=BASE) as tc:
        real = tc._transport
        p = _platform(real, admin_token)
        ds = p.datasets.create("cut")
        ds.push(pa.table({"v": list(range(50_000))}))
        ds.push(pa.table({"v": list(range(50_000, 60_000))}))
        version = ds.get()
        assert len(version.commit.parts) == 2

        def altered(change: Any) -> Platform:
            def handler(request: httpx.Request) -> httpx.Response:
                answer = real.handle_request(request)
                if request.url.path.rsplit("/", 1)[-1] not in ("arrow", "parquet"):
                    return answer
                body = httpx.ByteStream(change(answer.read()))  # streamed, as from a socket
                return httpx.Response(200, headers=answer.headers, stream=body)

            transport = httpx.MockTransport(handler)
            return Platform(HttpClient(BASE, admin_token, transport=transport))

        assert version.to_arrow().num_rows == 60_000
        for whole in (lambda raw: raw[: len(raw) // 2], lambda raw: raw[:-1]):
            cut = altered(whole).datasets.resolve(f"cut@{version.id}")
            with pytest.raises(IntegrityError, match="cut off"):
                cut.to_arrow()  # the Parquet parts
            with pytest.raises(IntegrityError, match="cut off"):
                cut.to_arrow(columns=["v"])  # Arrow IPC
        longer = altered(lambda raw: raw + b"x").datasets.resolve(f"cut@{version.id}")
        with pytest.raises(IntegrityError, match="ran 1 bytes past"):
            longer.to_arrow()


def test_a_damaged_part_fails_the_download_with_its_name(
    transport: httpx.BaseTransport, admin_token: str, backend: Backend
) -> None:
    """The client checks every part it receives against its sha256 (end to end)."""
    from dlplatform.errors import IntegrityError

    p = _platform(transport, admin_token)
    ds = p.datasets.create("rot")
    ds.push(pa.table({"v": list(range(1000))}))
    commit = ds.push(pa.table({"v": list(range(1000, 2000))}))
    path = Path(backend.artifacts.path_for(commit.parts[1].sha256))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match=f"part {commit.parts[1].sha256} "):
        ds.get().to_arrow()
    assert ds.get(ds.commits()[-1].id).to_arrow().num_rows == 1000  # the good part alone


def test_download_of_record_batches_larger_than_a_read_chunk(
    transport: httpx.BaseTransport, admin_token: str
) -> None:
    """A record batch bigger than one network chunk (1 MiB) is read whole: pyarrow asks for a
    message body in one ``read`` and takes a short answer for a cut-off stream."""
    p = _platform(transport, admin_token)
    ds = p.datasets.create("wide")
    table = pa.table({"v": pa.array(range(600_000), pa.int64()), "w": [0.5] * 600_000})
    ds.push(table)
    got = ds.get().to_arrow()
    assert got.num_rows == 600_000 and got.sort_by("v").equals(table)
    assert sum(b.num_rows for b in ds.get().iter_batches()) == 600_000


def test_profiles_resolution_order(tmp_path: Path) -> None:
    import json

    from dlplatform.client import profiles

    home = tmp_path / "home"
    home.mkdir()
    (home / "cluster.json").write_text(json.dumps({"api_host": "127.0.0.1", "api_port": 8123}))
    (home / "admin.token").write_text("dlp_admin_secret_token_value\n")
    env = {"DLP_HOME": str(home), "DLP_CONFIG_DIR": str(tmp_path / "cfg")}
    local = profiles.resolve(env=env)
    assert (local.url, local.token) == ("http://127.0.0.1:8123", "dlp_admin_secret_token_value")
    assert local.token_source.startswith("admin token file")
    # A job of the platform's own gets DLP_TOKEN="" and must not fall back to the admin file.
    job = profiles.resolve(env={**env, "DLP_TOKEN": ""})
    assert job.token is None and job.token_source == "DLP_TOKEN"
    path = profiles.save_profile("work", profiles.Profile(url="https://dlp.example", token="tk"),
                                 env=env)  # fmt: skip
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    active = profiles.resolve(env=env)
    assert (active.url, active.token, active.profile) == ("https://dlp.example", "tk", "work")
    assert profiles.resolve(env={**env, "DLP_URL": "http://h:1/api/v1/"}).url == "http://h:1"
    # A token saved for another URL is not sent to the one given in DLP_URL.
    assert profiles.resolve(env={**env, "DLP_URL": "http://h:1"}).token is None
    with pytest.raises(InvalidInput, match="no profile 'x'"):
        profiles.resolve(profile="x", env=env)
    with pytest.raises(InvalidInput, match="invalid platform URL"):
        profiles.resolve(url="ftp://nope", env=env)
    profiles.remove_profile("work", env=env)
    with pytest.raises(Unauthenticated, match="no platform"):
        profiles.resolve(
            env={"DLP_HOME": str(tmp_path / "empty"), **{"DLP_CONFIG_DIR": env["DLP_CONFIG_DIR"]}}
        )


def test_log_metrics_over_http_for_the_runs_owner_only(
    backend: Backend, transport: httpx.BaseTransport, admin_token: str
) -> None:
    from dlplatform.errors import PermissionDenied as Denied
    from dlplatform.metadata import Run, RunStatus
    from dlplatform.metadata.records import utcnow
    from dlplatform.train.spec import TrainingJobSpec

    p = _platform(transport, admin_token)
    alice = p.users.create("alice", "data-scientist")
    bob = p.users.create("bob", "data-scientist")
    spec = TrainingJobSpec(dataset="d@c", label="y").model_dump_json()
    backend.store.create_run(Run(id="run-a", owner="alice", status=RunStatus.RUNNING,
                                 spec_json=spec, created_at=utcnow()))  # fmt: skip
    as_alice = _platform(transport, alice.token)
    assert (
        as_alice.training.log_metrics("run-a", [(f"m{i % 3}", i / 10, i) for i in range(1000)])
        == 1000
    )
    assert as_alice.training.log_metrics("run-a", {"loss": 0.5}, step=7) == 1
    points = as_alice.training.get("run-a").metric_points("loss")
    assert [(q.value, q.step) for q in points] == [(0.5, 7)]
    assert len(as_alice.training.get("run-a").metric_points()) == 1001
    with pytest.raises(Denied, match="belongs to alice"):
        _platform(transport, bob.token).training.log_metrics("run-a", {"loss": 1.0})
    with pytest.raises(InvalidInput, match="invalid metric key"):
        as_alice.training.log_metrics("run-a", {"bad key!": 1.0})
    with pytest.raises(NotFound):
        as_alice.training.log_metrics("run-nope", {"loss": 1.0})


def test_gateway_remembers_tokens_briefly_and_forgets_a_revoked_one(
    backend: Backend, transport: httpx.BaseTransport, admin_token: str
) -> None:
    """One metadata call per request instead of two; a revocation through the gateway is
    effective at once, one made elsewhere within the cache's TTL."""
    p = _platform(transport, admin_token)
    vic = p.users.create("vic", "viewer")
    calls: list[str] = []
    real = backend.store.user_for_token_hash

    def counted(token_hash: str):  # type: ignore[no-untyped-def]
        calls.append(token_hash)
        return real(token_hash)

    backend.store.user_for_token_hash = counted  # type: ignore[method-assign]
    as_vic = _platform(transport, vic.token)
    for _ in range(5):
        as_vic.datasets.list()
    assert len(calls) == 1
    p.users.revoke_token(vic.info.id)
    with pytest.raises(Unauthenticated):
        as_vic.datasets.list()


def test_models_load_over_http_is_verified_end_to_end(
    backend: Backend, transport: httpx.BaseTransport, admin_token: str
) -> None:
    import torch
    from fixtures_serve import register_mlp

    from dlplatform.errors import IntegrityError
    from dlplatform.models import load_model

    mv = register_mlp(backend, "m1", seed=3)
    p = _platform(transport, admin_token)
    module, signature = p.models.load("m1")
    local, _ = load_model(backend, "m1", mv.version)
    x = torch.randn(5, len(signature.features), dtype=torch.float32)
    assert torch.equal(module(x), local(x)) and signature.task == "classification"
    viewer = p.users.create("vic", "viewer")
    assert _platform(transport, viewer.token).models.load("m1@1")[1] == signature
    # only objects of this version's artifact are served
    with pytest.raises(NotFound, match="not part of model"):
        p.http.get(f"models/m1/versions/1/objects/{'0' * 64}", bytes)
    # a corrupt weights object is refused by the server's check (the object store verifies)
    manifest = __import__("json").loads(backend.artifacts.get_bytes(mv.artifact_sha256))
    weights_path = Path(backend.artifacts.path_for(manifest["weights.pt"]["sha256"]))
    weights_path.chmod(0o644)
    weights_path.write_bytes(b"not the weights")
    with pytest.raises(IntegrityError):
        p.models.load("m1")


def test_training_submit_carries_a_key_and_a_replay_finds_its_job(
    transport: httpx.BaseTransport, admin_token: str, backend: Backend
) -> None:
    # The first submit of a key needs the scheduler (a real cluster: the workflow engine's
    # re-attach test covers it); the replay is answered before the scheduler is asked.
    p = _platform(transport, admin_token)
    commit = p.datasets.create("digits").push(pa.table({"x": [1.0, 2.0], "y": [0, 1]}))
    spec = TrainingJobSpec(dataset=f"digits@{commit.id}", label="y", epochs=2)
    backend.store.create_run(Run(id="run-keyed", owner="admin", spec_json=spec.model_dump_json(),
                                 created_at=utcnow()), idempotency_key="nightly-1")  # fmt: skip
    again = p.training.submit(dataset="digits", label="y", epochs=2, idempotency_key="nightly-1")
    assert again.id == "run-keyed"
    with pytest.raises(Conflict, match="'nightly-1' was used for job run-keyed"):
        p.training.submit(dataset="digits", label="y", epochs=5, idempotency_key="nightly-1")
    with pytest.raises(InvalidInput, match="invalid idempotency key"):
        p.training.submit(dataset="digits", label="y", idempotency_key="no spaces")

    keys: list[str | None] = []  # without a key of its own, each submit gets a fresh one that
    # every retry of that submit repeats, so a retried POST makes one job

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers.get("Idempotency-Key"))
        return httpx.Response(503, text="restarting")

    http = HttpClient(BASE, "t", transport=httpx.MockTransport(handler), retries=2,
                      backoff_s=0.001)  # fmt: skip
    for _ in range(2):
        with pytest.raises(BackendUnavailable):
            Platform(http).training.submit(dataset="digits", label="y")
    assert len(keys) == 6 and keys[0] and len(set(keys[:3])) == 1 and keys[3] != keys[0]
    assert len(set(keys[3:])) == 1


def test_a_workflow_start_picks_its_run_id_so_a_retry_makes_one_run() -> None:
    sent: list[tuple[str | None, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.headers.get("Idempotency-Key"), json.loads(request.content)["run_id"]))
        return httpx.Response(503, text="restarting")

    http = HttpClient(BASE, "t", transport=httpx.MockTransport(handler), retries=2,
                      backoff_s=0.001)  # fmt: skip
    with pytest.raises(BackendUnavailable):
        Platform(http).workflows.run("fan", {"n": 1})
    assert len(sent) == 3 and len(set(sent)) == 1  # the same id, every attempt
    key, run_id = sent[0]
    assert key == run_id and run_id.startswith("wf-")
