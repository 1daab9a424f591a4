"""What viewers and outsiders learn about datasets (#18): statistics carry data values only for
``dataset.read`` (finding 5), and a dataset restricted to groups the caller is in none of is
answered exactly as a missing one on every route (finding 16)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from dlplatform import access, data
from dlplatform.access import SYSTEM, UserSpec, authenticate
from dlplatform.api.app import create_app
from dlplatform.context import Backend
from dlplatform.data import CommitStats
from dlplatform.metadata import MetadataStore, Role

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

API = "/api/v1"
SECRET_VALUE = "alice-hiv-positive"
CSV = "age,diagnosis\n" + "".join(
    f"{30 + i},{SECRET_VALUE if i % 2 else 'flu'}\n" for i in range(6)
)


def _token(backend: Backend, name: str, role: Role, groups: tuple[str, ...] = ()) -> str:
    spec = UserSpec(name=name, role=role, groups=groups)
    return access.create_user(backend, SYSTEM, spec).token


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(backend: Backend, admin_token: str) -> Iterator[TestClient]:
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as c:
        for name, groups in (("clinic", []), ("secret", ["medical"])):
            r = c.post(
                f"{API}/datasets", json={"name": name, "groups": groups}, headers=_auth(admin_token)
            )
            assert r.status_code == 201, r.text
            r = c.post(
                f"{API}/datasets/{name}/commits?format=csv",
                content=CSV.encode(),
                headers=_auth(admin_token),
            )
            assert r.status_code == 201, r.text
        yield c


# --- finding 5: statistics without values for viewers ---------------------------------------------


def test_viewers_get_statistics_without_data_values(client: TestClient, backend: Backend) -> None:
    viewer = _token(backend, "vic", Role.VIEWER)
    reader = _token(backend, "rita", Role.RESEARCHER)
    head = client.get(f"{API}/datasets/clinic", headers=_auth(viewer)).json()["head"]
    for path in (
        "datasets/clinic/commits/head/stats",
        f"datasets/clinic/commits/{head}/stats",
        "datasets/clinic/commits/head",
        f"datasets/clinic/commits/{head}",
        "datasets/clinic/commits",
    ):
        r = client.get(f"{API}/{path}", headers=_auth(viewer))
        assert r.status_code == 200, r.text
        assert SECRET_VALUE not in r.text and "flu" not in r.text, path
    stats = client.get(f"{API}/datasets/clinic/commits/head/stats", headers=_auth(viewer)).json()
    assert stats["values_hidden"] is True and stats["row_count"] == 6
    assert [(c["name"], c["count"], c["nulls"]) for c in stats["columns"]] == [
        ("age", 6, 0),
        ("diagnosis", 6, 0),
    ]
    for column in stats["columns"]:
        assert column["type"] and column["min"] is column["max"] is column["mean"] is None
        assert column["top"] == []
    commit = client.get(f"{API}/datasets/clinic/commits/head", headers=_auth(viewer)).json()
    assert json.loads(commit["stats_json"]) == stats  # the UI's dataset page reads this one

    full = client.get(f"{API}/datasets/clinic/commits/head/stats", headers=_auth(reader)).json()
    assert full["values_hidden"] is False
    diagnosis = full["columns"][1]
    assert diagnosis["top"][0]["value"] in (SECRET_VALUE, "flu") and full["columns"][0]["min"] == 30
    commit = client.get(f"{API}/datasets/clinic/commits/head", headers=_auth(reader)).json()
    assert SECRET_VALUE in commit["stats_json"]


def test_the_sdk_and_cli_path_hides_values_too(backend: Backend, store: MetadataStore) -> None:
    data.create_dataset(backend, SYSTEM, "ds")
    table = pa.table({"x": [1, 2], "s": ["a", "b"]})
    data.push(backend, SYSTEM, "ds", table, compute_stats=False)
    viewer = authenticate(store, _token(backend, "vic", Role.VIEWER))
    stats = data.describe(backend, viewer, "ds")  # computed and stored on first use
    assert stats.values_hidden and stats.columns[1].top == [] and stats.columns[0].min is None
    assert data.describe(backend, SYSTEM, "ds").columns[0].min == 1
    [commit] = data.list_commits(backend, viewer, "ds")
    assert commit.stats_json is not None
    assert CommitStats.model_validate_json(commit.stats_json).values_hidden


# --- finding 16: a dataset hidden by its groups is a missing one ----------------------------------


def _routes(name: str, commit: str) -> list[tuple[str, str, Any]]:
    base = f"{API}/datasets/{name}"
    return [
        ("GET", base, None),
        ("DELETE", base, None),
        ("GET", f"{base}/commits", None),
        ("POST", f"{base}/commits?format=csv", CSV.encode()),
        ("GET", f"{base}/commits/head", None),
        ("GET", f"{base}/commits/{commit}", None),
        ("GET", f"{base}/commits/head/stats", None),
        ("GET", f"{base}/commits/{commit}/sample", None),
        ("GET", f"{base}/commits/head/arrow", None),
        ("GET", f"{base}/commits/head/parts", None),
        ("POST", f"{base}/rollback", {"commit": commit}),
    ]


@pytest.mark.parametrize("role", [Role.VIEWER, Role.RESEARCHER, Role.DATA_ENGINEER])
def test_a_dataset_hidden_by_groups_answers_exactly_as_a_missing_one(
    client: TestClient, backend: Backend, store: MetadataStore, role: Role
) -> None:
    outsider = _token(backend, "olly", role)
    commit = store.get_dataset("secret").head
    assert commit is not None
    hidden = _routes("secret", commit)
    missing = _routes("nosuch", commit)
    for (method, path, body), (_, other, _) in zip(hidden, missing, strict=True):
        kwargs: dict[str, Any] = {"headers": _auth(outsider)}
        if isinstance(body, bytes):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        got = client.request(method, path, **kwargs)
        want = client.request(method, other, **kwargs)
        assert got.status_code == want.status_code == 404, (method, path, got.text)
        assert got.json() == {"error": "not_found", "message": "dataset 'secret' does not exist"}
        assert want.json()["message"] == "dataset 'nosuch' does not exist"
        assert "medical" not in got.text
    names = [d["name"] for d in client.get(f"{API}/datasets", headers=_auth(outsider)).json()]
    assert names == ["clinic"]
    denied = store.list_audit(actor="olly", outcome="denied", limit=100)
    assert denied and all("restricted to groups medical" in e.detail for e in denied)


def test_group_members_still_get_their_role_answers(client: TestClient, backend: Backend) -> None:
    member = _token(backend, "mia", Role.VIEWER, ("medical",))
    assert client.get(f"{API}/datasets/secret", headers=_auth(member)).status_code == 200
    r = client.get(f"{API}/datasets/secret/commits/head/sample", headers=_auth(member))
    assert r.status_code == 403 and r.json()["error"] == "permission_denied"  # role, not group


def test_a_commit_id_of_a_hidden_dataset_is_a_missing_commit(
    client: TestClient, backend: Backend, store: MetadataStore
) -> None:
    engineer = _token(backend, "eng", Role.DATA_ENGINEER)
    secret = store.get_dataset("secret").head
    for commit in (secret, "0123456789abcdef"):  # another dataset's commit, and none at all
        r = client.get(f"{API}/datasets/clinic/commits/{commit}", headers=_auth(engineer))
        assert r.status_code == 404
        assert r.json()["message"] == f"commit '{commit}' does not exist in dataset 'clinic'"
        r = client.post(
            f"{API}/datasets/clinic/rollback", json={"commit": commit}, headers=_auth(engineer)
        )
        assert (r.status_code, r.json()["message"]) == (404, f"commit '{commit}' does not exist")
