"""Lineage and dataset groups (#18, finding 16): a dataset restricted to groups the caller is in
none of, and its commits, are left out of every walk, and starting from one is a missing entity."""

from __future__ import annotations

import warnings

import pyarrow as pa
import pytest

from dlplatform import access, data
from dlplatform.access import SYSTEM, Principal, UserSpec, authenticate
from dlplatform.api.app import create_app
from dlplatform.context import Backend
from dlplatform.errors import NotFound
from dlplatform.lineage import query_lineage
from dlplatform.metadata import LineageEdge, MetadataStore, Role

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _user(backend: Backend, name: str, groups: tuple[str, ...] = ()) -> str:
    spec = UserSpec(name=name, role=Role.RESEARCHER, groups=groups)
    return access.create_user(backend, SYSTEM, spec).token


def _graph(backend: Backend) -> dict[str, str]:
    """public@p → (transform) → secret@s; run:r-pub trained on p, run:r-sec on s, and each run
    made a model version."""
    table = pa.table({"x": [1, 2, 3]})
    data.create_dataset(backend, SYSTEM, "public")
    data.create_dataset(backend, SYSTEM, "secret", groups=["medical"])
    p = data.push(backend, SYSTEM, "public", table, compute_stats=False).id
    s = data.push(backend, SYSTEM, "secret", table, compute_stats=False).id
    backend.store.add_edges(
        [
            LineageEdge(src=f"commit:{p}", dst=f"commit:{s}", relation="transform"),
            LineageEdge(src=f"commit:{p}", dst="run:r-pub", relation="trained_on"),
            LineageEdge(src=f"commit:{s}", dst="run:r-sec", relation="trained_on"),
            LineageEdge(src="run:r-pub", dst="model_version:m@1", relation="produced"),
            LineageEdge(src="run:r-sec", dst="model_version:m@2", relation="produced"),
        ]
    )
    return {"p": p, "s": s}


def _entities(backend: Backend, who: Principal, entity: str, direction: str) -> set[str]:
    return {n.entity for n in query_lineage(backend, who, entity, direction=direction)}  # type: ignore[arg-type]


def test_walks_leave_out_what_the_caller_may_not_see(
    backend: Backend, store: MetadataStore
) -> None:
    ids = _graph(backend)
    p, s = ids["p"], ids["s"]
    outsider = authenticate(store, _user(backend, "olly"))
    member = authenticate(store, _user(backend, "mia", ("medical",)))
    hidden = {"dataset:secret", f"commit:{s}"}

    up = _entities(backend, outsider, "model_version:m@2", "up")
    assert up == {"run:r-sec"}  # not its commit, its dataset, nor what lies behind them
    down = _entities(backend, outsider, "dataset:public", "down")
    assert down == {f"commit:{p}", "run:r-pub", "model_version:m@1"}  # nothing past secret
    assert not hidden & down
    for who in (member, SYSTEM):
        assert hidden <= _entities(backend, who, "model_version:m@2", "up")
        everything = _entities(backend, who, "dataset:public", "down")
        assert everything == down | {f"commit:{s}", "run:r-sec", "model_version:m@2"}


@pytest.mark.parametrize("direction", ["up", "down"])
def test_starting_from_a_hidden_dataset_or_commit_is_a_missing_entity(
    backend: Backend, store: MetadataStore, direction: str
) -> None:
    s = _graph(backend)["s"]
    outsider = authenticate(store, _user(backend, "olly"))
    for entity in ("dataset:secret", f"commit:{s}"):
        with pytest.raises(NotFound) as hidden:
            query_lineage(backend, outsider, entity, direction=direction)  # type: ignore[arg-type]
        assert hidden.value.message == f"{entity} does not exist"
    with pytest.raises(NotFound) as missing:
        query_lineage(backend, outsider, "dataset:nosuch", direction=direction)  # type: ignore[arg-type]
    assert missing.value.message == "dataset:nosuch does not exist"


def test_the_lineage_route_answers_404_alike(
    backend: Backend, store: MetadataStore, admin_token: str
) -> None:
    ids = _graph(backend)
    token = _user(backend, "olly")
    with TestClient(create_app(backend), base_url="http://127.0.0.1") as client:
        headers = {"Authorization": f"Bearer {token}"}
        for kind, ident in (("dataset", "secret"), ("commit", ids["s"])):
            r = client.get(f"/api/v1/lineage/{kind}/{ident}", headers=headers)
            assert (r.status_code, r.json()) == (
                404,
                {"error": "not_found", "message": f"{kind}:{ident} does not exist"},
            )
        r = client.get("/api/v1/lineage/model_version/m@2", headers=headers)
        assert [n["entity"] for n in r.json()] == ["run:r-sec"]
        admin = {"Authorization": f"Bearer {admin_token}"}
        r = client.get("/api/v1/lineage/model_version/m@2", headers=admin)
        assert f"commit:{ids['s']}" in [n["entity"] for n in r.json()]
