"""Data over HTTP through the real gateway app: idempotent pushes, cut-off uploads, Arrow IPC
downloads (whole, by column, pinned, damaged) and read grants."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.ipc as paipc
import pyarrow.parquet as pq
import pytest
from fastapi import FastAPI

from dlplatform import access, data
from dlplatform.access import SYSTEM, Principal, UserSpec
from dlplatform.api.app import create_app
from dlplatform.context import Backend
from dlplatform.errors import IntegrityError, NotFound
from dlplatform.metadata import Commit, Role
from dlplatform.metadata.artifacts import ArtifactStore

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"
ARROW = "application/vnd.apache.arrow.stream"
EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the IPC end-of-stream marker
CSV = "a,b\n" + "".join(f"{i},n{i % 7}\n" for i in range(300))


@pytest.fixture
def app(backend: Backend) -> FastAPI:
    return create_app(backend)


@pytest.fixture
def client(app: FastAPI, admin_token: str) -> Iterator[TestClient]:
    # Server exceptions are not raised here: a damaged part must show as a cut response.
    with TestClient(
        app,
        base_url="http://127.0.0.1",
        headers={"Authorization": f"Bearer {admin_token}"},
        raise_server_exceptions=False,
    ) as c:
        yield c


def _table(n: int, start: int = 0) -> pa.Table:
    return pa.table(
        {
            "x": pa.array(range(start, start + n), pa.int64()),
            "name": [f"row-{i}" for i in range(start, start + n)],
            "score": pa.array([i / 4 for i in range(start, start + n)], pa.float64()),
        }
    )


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _token(backend: Backend, name: str, role: Role, groups: tuple[str, ...] = ()) -> str:
    spec = UserSpec(name=name, role=role, groups=groups)
    return access.create_user(backend, SYSTEM, spec).token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _three_parts(client: TestClient) -> list[dict[str, Any]]:
    """Dataset ``d`` with three APPEND pushes (Parquet bodies); returns the three commits."""
    assert client.post(f"{API}/datasets", json={"name": "d"}).status_code == 201
    commits = []
    for start in (0, 100, 250):
        r = client.post(
            f"{API}/datasets/d/commits?format=parquet", content=_parquet(_table(100, start))
        )
        assert r.status_code == 201, r.text
        commits.append(r.json())
    assert len(commits[-1]["parts"]) == 3
    return commits


def _damage(backend: Backend, sha256: str) -> None:
    path = Path(backend.artifacts.path_for(sha256))
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    path.chmod(0o600)
    path.write_bytes(bytes(raw))


# --- idempotent push -----------------------------------------------------------------------------


def test_the_same_key_twice_makes_one_commit(client: TestClient, backend: Backend) -> None:
    client.post(f"{API}/datasets", json={"name": "d"})
    url = f"{API}/datasets/d/commits?format=csv"
    first = client.post(url, content=CSV.encode(), headers={"Idempotency-Key": "push-1"})
    assert first.status_code == 201, first.text
    again = client.post(url, content=CSV.encode(), headers={"Idempotency-Key": "push-1"})
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert client.get(f"{API}/datasets/d/commits").headers["X-Total-Count"] == "1"
    assert client.get(f"{API}/datasets/d").json()["head"] == first.json()["id"]
    # a retry is answered without its body being read: even a body that is not CSV at all
    garbage = client.post(url, content=b"\x00 not csv", headers={"Idempotency-Key": "push-1"})
    assert garbage.status_code == 201 and garbage.json() == first.json()
    replays = [
        e for e in backend.store.list_audit(action="dataset.write") if "replayed" in e.detail
    ]
    assert len(replays) == 2 and all(first.json()["id"] in e.detail for e in replays)
    # another key is another push
    other = client.post(url, content=CSV.encode(), headers={"Idempotency-Key": "push-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert other.json()["row_count"] == 600
    # no key: every push commits
    plain = client.post(url, content=CSV.encode())
    assert plain.status_code == 201 and plain.json()["row_count"] == 900
    assert client.get(f"{API}/datasets/d/commits").headers["X-Total-Count"] == "3"


def test_a_key_is_per_user_and_dataset(client: TestClient, backend: Backend) -> None:
    for name in ("d", "e"):
        client.post(f"{API}/datasets", json={"name": name})
    key = {"Idempotency-Key": "2f1c-77:a.b_c"}
    on_d = client.post(f"{API}/datasets/d/commits?format=csv", content=CSV.encode(), headers=key)
    on_e = client.post(f"{API}/datasets/e/commits?format=csv", content=CSV.encode(), headers=key)
    assert on_d.status_code == on_e.status_code == 201
    assert on_d.json()["id"] != on_e.json()["id"]
    engineer = _token(backend, "eve", Role.DATA_ENGINEER)
    by_eve = client.post(
        f"{API}/datasets/d/commits?format=csv",
        content=CSV.encode(),
        headers={**key, **_auth(engineer)},
    )
    assert by_eve.status_code == 201
    assert by_eve.json()["id"] != on_d.json()["id"] and by_eve.json()["author"] == "eve"


@pytest.mark.parametrize("key", ["", "has space", "a/b", "x" * 129, "semi;colon", "ü"])
def test_a_malformed_key_is_refused_before_anything_is_written(
    client: TestClient, backend: Backend, key: str
) -> None:
    client.post(f"{API}/datasets", json={"name": "d"})
    r = client.post(
        f"{API}/datasets/d/commits?format=csv",
        content=CSV.encode(),
        headers={"Idempotency-Key": key.encode("latin-1")},  # type: ignore[dict-item]
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid_input" and "idempotency key" in r.json()["message"]
    assert client.get(f"{API}/datasets/d/commits").json() == []
    assert backend.artifacts.list() == []


def test_the_longest_key_is_accepted(client: TestClient) -> None:
    client.post(f"{API}/datasets", json={"name": "d"})
    key = {"Idempotency-Key": "k" * 128}
    one = client.post(f"{API}/datasets/d/commits?format=csv", content=CSV.encode(), headers=key)
    two = client.post(f"{API}/datasets/d/commits?format=csv", content=CSV.encode(), headers=key)
    assert one.status_code == 201 and two.json() == one.json()


def test_a_concurrent_duplicate_returns_the_commit_that_won(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pushes with one key both miss the look-up; the second loses at commit time."""
    data.create_dataset(backend, SYSTEM, "d")
    won = data.push(backend, SYSTEM, "d", _table(10), idempotency_key="k")
    lookup = backend.store.get_commit_by_push_key
    misses = []

    def first_lookup_misses(user: str, dataset: str, key: str) -> Any:
        if not misses:
            misses.append(key)
            raise NotFound("not yet")  # as if the other push had not committed yet
        return lookup(user, dataset, key)

    monkeypatch.setattr(backend.store, "get_commit_by_push_key", first_lookup_misses)
    lost = data.push(backend, SYSTEM, "d", _table(10, 10), idempotency_key="k")
    assert misses == ["k"]
    assert lost == won
    assert backend.store.count_commits("d") == 1
    assert backend.store.get_dataset("d").head == won.id


# --- an upload cut off half way ------------------------------------------------------------------


def test_an_upload_cut_off_half_way_leaves_nothing(
    app: FastAPI, client: TestClient, backend: Backend, admin_token: str
) -> None:
    """The client disconnects after half the declared body: no commit, no key, no staged file."""
    client.post(f"{API}/datasets", json={"name": "d"})
    body = CSV.encode()
    half = [body[i : i + 512] for i in range(0, len(body) // 2, 512)]
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls <= len(half):
            return {"type": "http.request", "body": half[calls - 1], "more_body": True}
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    path = f"{API}/datasets/d/commits"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"format=csv",
        "headers": [(b"host", b"127.0.0.1"), (b"authorization", f"Bearer {admin_token}".encode()),
                    (b"content-length", str(len(body)).encode()), (b"idempotency-key", b"cut")],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert calls == len(half) + 1  # the body was read up to the cut
    assert client.get(f"{API}/datasets/d/commits").json() == []
    assert backend.artifacts.list() == []
    assert list((backend.settings.home / "uploads").glob("*")) == []
    # the key was not taken: the retry commits
    r = client.post(f"{path}?format=csv", content=body, headers={"Idempotency-Key": "cut"})
    assert r.status_code == 201 and r.json()["row_count"] == 300


# --- Arrow IPC downloads -------------------------------------------------------------------------


def test_download_round_trip_of_parquet_pushes(client: TestClient) -> None:
    commits = _three_parts(client)
    expected = pa.concat_tables([_table(100, 0), _table(100, 100), _table(100, 250)])
    r = client.get(f"{API}/datasets/d/commits/head/arrow")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == ARROW
    assert r.content.endswith(EOS)
    assert paipc.open_stream(r.content).read_all().equals(expected)
    # a pinned commit, and a column selection in the order asked for
    r = client.get(f"{API}/datasets/d/commits/{commits[0]['id']}/arrow")
    assert paipc.open_stream(r.content).read_all().equals(_table(100))
    r = client.get(f"{API}/datasets/d/commits/head/arrow?columns=score&columns=x")
    assert r.status_code == 200, r.text
    assert paipc.open_stream(r.content).read_all().equals(expected.select(["score", "x"]))


def test_download_round_trip_of_a_csv_push(client: TestClient) -> None:
    client.post(f"{API}/datasets", json={"name": "c"})
    r = client.post(
        f"{API}/datasets/c/commits", content=CSV.encode(), headers={"Content-Type": "text/csv"}
    )
    assert r.status_code == 201, r.text
    r = client.get(f"{API}/datasets/c/commits/head/arrow")
    got = paipc.open_stream(r.content).read_all()
    assert got.equals(pacsv.read_csv(io.BytesIO(CSV.encode())))
    assert got.column("b").to_pylist()[:3] == ["n0", "n1", "n2"]


def test_download_headers_name_the_commit(client: TestClient) -> None:
    commits = _three_parts(client)
    for ref, commit in (("head", commits[-1]), (commits[1]["id"], commits[1])):
        r = client.get(f"{API}/datasets/d/commits/{ref}/arrow?columns=x")
        assert r.headers["X-DLP-Commit"] == commit["id"]
        assert r.headers["X-DLP-Row-Count"] == str(commit["row_count"])
        assert r.headers["X-DLP-Version-Hash"] == commit["version_hash"]
        assert paipc.open_stream(r.content).read_all().num_rows == commit["row_count"]


def test_download_errors_come_before_the_stream(client: TestClient) -> None:
    client.post(f"{API}/datasets", json={"name": "empty"})
    _three_parts(client)
    cases = [
        ("nope/commits/head/arrow", 404, "not_found"),
        ("d/commits/0123456789abcdef/arrow", 404, "not_found"),
        ("empty/commits/head/arrow", 404, "not_found"),
        ("d/commits/head/arrow?columns=x&columns=missing", 422, "invalid_input"),
        ("d/commits/bad..id/arrow", 422, "invalid_input"),
    ]
    for path, status, code in cases:
        r = client.get(f"{API}/datasets/{path}")
        assert r.status_code == status, (path, r.text)
        assert r.headers["content-type"] == "application/json", path
        assert r.json()["error"] == code, path
        assert "X-DLP-Commit" not in r.headers


def test_a_damaged_part_cuts_the_download(client: TestClient, backend: Backend) -> None:
    commits = _three_parts(client)
    _damage(backend, commits[-1]["parts"][1]["sha256"])
    r = client.get(f"{API}/datasets/d/commits/head/arrow")
    assert r.status_code == 200  # the stream had started when the damage was found
    assert not r.content.endswith(EOS)
    with pytest.raises(pa.ArrowInvalid):
        paipc.open_stream(r.content).read_all()
    # the first commit, without the damaged part, still downloads
    r = client.get(f"{API}/datasets/d/commits/{commits[0]['id']}/arrow")
    assert paipc.open_stream(r.content).read_all().equals(_table(100))


def test_the_service_stream_raises_on_a_damaged_part(backend: Backend) -> None:
    data.create_dataset(backend, SYSTEM, "d")
    data.push(backend, SYSTEM, "d", _table(10))
    head = data.push(backend, SYSTEM, "d", _table(10, 10))
    _damage(backend, head.parts[1].sha256)
    commit, chunks = data.open_arrow_stream(backend, SYSTEM, "d", None)
    assert commit == head
    sent = []
    with pytest.raises(IntegrityError, match=head.parts[1].sha256):
        for chunk in chunks:
            sent.append(chunk)
    reader = paipc.open_stream(b"".join(sent))
    assert reader.read_next_batch().num_rows == 10  # the good part went out first
    with pytest.raises(pa.ArrowInvalid):
        reader.read_next_batch()


# --- whole-commit downloads as the stored Parquet parts ---------------------------------------


def test_the_parquet_download_is_the_stored_parts_back_to_back(
    client: TestClient, backend: Backend
) -> None:
    commits = _three_parts(client)
    r = client.get(f"{API}/datasets/d/commits/head/parquet")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.dlp.parquet-parts"
    parts = commits[-1]["parts"]
    stored = [Path(backend.artifacts.path_for(p["sha256"])).read_bytes() for p in parts]
    assert r.content == b"".join(stored)
    assert int(r.headers["content-length"]) == sum(p["size_bytes"] for p in parts)
    assert (r.headers["X-DLP-Commit"], r.headers["X-DLP-Row-Count"]) == (commits[-1]["id"], "300")
    head = Commit.model_validate(commits[-1])
    tables = [data.part_table(head, i, raw) for i, raw in enumerate(stored)]
    assert pa.concat_tables(tables).equals(
        pa.concat_tables([_table(100, 0), _table(100, 100), _table(100, 250)])
    )
    with pytest.raises(IntegrityError, match="is corrupt"):
        data.part_table(head, 0, stored[1])  # another part's bytes are not this part


def test_part_table_casts_an_older_narrower_part_to_the_commit_schema(backend: Backend) -> None:
    narrow = pa.table({"x": pa.array([1, 2], pa.int32()), "name": pa.array(["a", "b"])})
    data.create_dataset(backend, SYSTEM, "narrow")
    data.push(backend, SYSTEM, "narrow", narrow)
    head = data.push(backend, SYSTEM, "narrow", _table(3).drop_columns(["score"]))
    raws = [Path(backend.artifacts.path_for(p.sha256)).read_bytes() for p in head.parts]
    table = pa.concat_tables([data.part_table(head, i, raw) for i, raw in enumerate(raws)])
    assert table.equals(data.to_arrow(backend, head))
    assert table.schema.field("x").type == pa.int64()


@contextlib.contextmanager
def _served(app: FastAPI) -> Iterator[str]:
    """The app behind a real uvicorn server on a loopback port, in a thread."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


def test_a_damaged_part_cuts_the_connection(
    app: FastAPI, client: TestClient, backend: Backend, admin_token: str
) -> None:
    """Over a real HTTP connection the client sees an incomplete chunked body."""
    commits = _three_parts(client)
    _damage(backend, commits[-1]["parts"][2]["sha256"])
    with _served(app) as url, httpx.Client(base_url=url, headers=_auth(admin_token)) as http:
        ok = http.get(f"{API}/datasets/d/commits/{commits[1]['id']}/arrow")
        assert paipc.open_stream(ok.content).read_all().num_rows == 200
        received = bytearray()
        with (
            pytest.raises(httpx.RemoteProtocolError),
            http.stream("GET", f"{API}/datasets/d/commits/head/arrow") as r,
        ):
            assert r.status_code == 200
            for chunk in r.iter_bytes():
                received += chunk
    assert not received.endswith(EOS)
    with pytest.raises(pa.ArrowInvalid):
        paipc.open_stream(bytes(received)).read_all()


def test_downloads_and_grants_are_audited_reads(client: TestClient, backend: Backend) -> None:
    commits = _three_parts(client)
    client.get(f"{API}/datasets/d/commits/head/arrow")
    client.get(f"{API}/datasets/d/commits/{commits[0]['id']}/parts")
    client.get(f"{API}/datasets/d/commits/{commits[1]['id']}/parquet")
    reads = backend.store.list_audit(actor="admin", action="dataset.read")
    assert [(e.target, e.detail) for e in reads] == [
        ("dataset:d", f"commit={commits[1]['id']}"),
        ("dataset:d", f"commit={commits[0]['id']}"),
        ("dataset:d", f"commit={commits[-1]['id']}"),
    ]


def test_readers_without_access_are_refused(client: TestClient, backend: Backend) -> None:
    client.post(f"{API}/datasets", json={"name": "secret", "groups": ["medical"]})
    r = client.post(f"{API}/datasets/secret/commits?format=csv", content=CSV.encode())
    assert r.status_code == 201
    viewer = _token(backend, "vic", Role.VIEWER, ("medical",))
    outsider = _token(backend, "rita", Role.RESEARCHER)
    member = _token(backend, "mo", Role.RESEARCHER, ("medical",))
    for route in ("arrow", "parts", "parquet"):
        r = client.get(f"{API}/datasets/secret/commits/head/{route}", headers=_auth(viewer))
        assert r.status_code == 403, r.text  # a member whose role may not read
        assert r.json()["error"] == "permission_denied"
        # not a member: answered as if the dataset did not exist (#18)
        r = client.get(f"{API}/datasets/secret/commits/head/{route}", headers=_auth(outsider))
        assert (r.status_code, r.json()) == (
            404,
            {"error": "not_found", "message": "dataset 'secret' does not exist"},
        )
        r = client.get(f"{API}/datasets/secret/commits/head/{route}", headers=_auth(member))
        assert r.status_code == 200, r.text
    denied = backend.store.list_audit(outcome="denied")
    assert {(e.actor, e.action, e.target) for e in denied} == {
        ("vic", "dataset.read", "dataset:secret"),
        ("rita", "dataset.read", "dataset:secret"),
    }
    reads = backend.store.list_audit(action="dataset.read", outcome="ok")
    assert [e.actor for e in reads] == ["mo", "mo", "mo"]


# --- read grants ---------------------------------------------------------------------------------


def test_read_grant_uris_open_with_pyarrow(client: TestClient, backend: Backend) -> None:
    commits = _three_parts(client)
    r = client.get(f"{API}/datasets/d/commits/head/parts")
    assert r.status_code == 200, r.text
    grant = data.ReadGrant.model_validate(r.json())
    assert grant.commit.id == commits[-1]["id"] and len(grant.uris) == 3
    assert grant.artifact_root == Path(backend.settings.artifact_root_uri).as_uri()
    tables = []
    for uri, part in zip(grant.uris, grant.commit.parts, strict=True):
        assert uri.startswith(f"{grant.artifact_root}/objects/")
        table = pq.read_table(uri)
        assert table.num_rows == part.row_count
        tables.append(table)
        fs, path = pa.fs.FileSystem.from_uri(uri)
        with fs.open_input_stream(path) as f:
            assert hashlib.sha256(f.read()).hexdigest() == part.sha256
    expected = pa.concat_tables([_table(100, 0), _table(100, 100), _table(100, 250)])
    assert pa.concat_tables(tables).equals(expected)
    pinned = client.get(f"{API}/datasets/d/commits/{commits[0]['id']}/parts").json()
    assert len(pinned["uris"]) == 1 and pinned["uris"][0] == grant.uris[0]
    assert client.get(f"{API}/datasets/nope/commits/head/parts").status_code == 404


def test_read_grant_rejects_uris_that_do_not_match_the_parts(client: TestClient) -> None:
    _three_parts(client)
    body = client.get(f"{API}/datasets/d/commits/head/parts").json()
    with pytest.raises(ValueError, match="3 parts"):
        data.ReadGrant.model_validate({**body, "uris": body["uris"][:2]})
    swapped = [body["uris"][1], body["uris"][0], body["uris"][2]]
    with pytest.raises(ValueError, match="is not part"):
        data.ReadGrant.model_validate({**body, "uris": swapped})
    elsewhere = [u.replace(body["artifact_root"], "file:///elsewhere") for u in body["uris"]]
    with pytest.raises(ValueError, match="is not part"):
        data.ReadGrant.model_validate({**body, "uris": elsewhere})


def test_grant_datasource_reads_and_verifies_the_parts(
    client: TestClient, backend: Backend
) -> None:
    """The Datasource behind grant_to_ray (no cluster needed): one verified task per part."""
    commits = _three_parts(client)
    grant = data.ReadGrant.model_validate(client.get(f"{API}/datasets/d/commits/head/parts").json())
    tasks = data.grant_datasource(grant, ["x"]).get_read_tasks(8)
    assert [t.metadata.num_rows for t in tasks] == [100, 100, 100]
    rows = [x for t in tasks for table in t() for x in table.column("x").to_pylist()]
    assert rows == [*range(200), *range(250, 350)]
    _damage(backend, commits[-1]["parts"][0]["sha256"])
    with pytest.raises(IntegrityError, match=commits[-1]["parts"][0]["sha256"]):
        list(data.grant_datasource(grant).get_read_tasks(8)[0]())


def test_read_grant_on_s3_carries_the_endpoint(
    s3_root: str, s3_server: str, backend: Backend, tmp_path: Path
) -> None:
    s3 = Backend(
        store=backend.store,
        artifacts=ArtifactStore(s3_root, s3_endpoint_url=s3_server),
        settings=backend.settings,
    )
    data.create_dataset(s3, SYSTEM, "remote")
    data.push(s3, SYSTEM, "remote", _table(50))
    head = data.push(s3, SYSTEM, "remote", _table(50, 50))
    grant = data.grant_read(s3, Principal(name="mo", role=Role.RESEARCHER), "remote")
    assert grant.commit == head and grant.artifact_root == s3_root
    host = s3_server.removeprefix("http://")
    assert all("endpoint_override=" + host.replace(":", "%3A") in u for u in grant.uris)
    got = pa.concat_tables([pq.read_table(u) for u in grant.uris])
    assert got.equals(pa.concat_tables([_table(50), _table(50, 50)]))
    tasks = data.grant_datasource(grant, ["x"]).get_read_tasks(2)
    assert [x for t in tasks for table in t() for x in table.column("x").to_pylist()] == list(
        range(100)
    )


def test_a_negative_sample_seed_is_a_clear_4xx_not_a_500(backend, admin_token) -> None:  # type: ignore[no-untyped-def]
    """Found by fuzzing: ``sample?seed=-1`` answered 500."""
    import pyarrow as pa

    from dlplatform import data
    from dlplatform.access import SYSTEM
    from dlplatform.errors import InvalidInput

    data.create_dataset(backend, SYSTEM, "seeded")
    data.push(backend, SYSTEM, "seeded", pa.table({"x": [1, 2, 3]}))
    with pytest.raises(InvalidInput, match="seed must be"):
        data.read_sample(backend, SYSTEM, "seeded", 2, seed=-1)
    assert data.read_sample(backend, SYSTEM, "seeded", 2, seed=0).num_rows == 2
