"""A model replica's HTTP handling in-process (its bare ASGI app, as Serve's proxy, HAProxy or a
direct connection hands it requests), on a real DuckDB store: the Host check comes first, and
the shared app authenticates before it looks up or loads a model."""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import pytest
from fixtures_serve import LocalStoreClient, served_model

from dlplatform.access import issue_token
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.metadata import Deployment, MetadataStore, Role, User
from dlplatform.metadata.records import utcnow
from dlplatform.serve._model import ServedModel
from dlplatform.serve.deployment import ModelServer, asgi_app
from dlplatform.serve.multiplex import SharedModelServer
from dlplatform.serve.spec import DeploymentSpec

ROW = [0.1, 0.2, 0.3, 0.4]
HOST = "127.0.0.1:8000"


def _served(model: str = "m", version: int = 1) -> ServedModel:
    return served_model(model, version, max_rows=8)  # type: ignore[no-any-return]


def _backend(store: MetadataStore, settings: Settings, **changes: Any) -> Backend:
    return Backend(
        store=LocalStoreClient(store),  # type: ignore[arg-type]
        artifacts=None,  # type: ignore[arg-type]
        settings=settings.model_copy(update=changes),
    )


def _dedicated(backend: Backend, name: str = "m") -> Any:
    server = ModelServer.func_or_class.__new__(ModelServer.func_or_class)
    server._init_common(backend, DeploymentSpec())
    server._name, server._model = name, name
    server._versions = {1: _served(name)}
    server._choices, server._weights = [1], [1]
    return server


def _shared(backend: Backend) -> Any:
    """The shared app's request path; a model "load" is counted instead of read from disk."""
    cls = SharedModelServer.func_or_class
    server = cls.__new__(cls)
    server._init_common(backend, DeploymentSpec(shared=True))
    server._max_models = 4
    server._records = OrderedDict()
    server.loads = 0

    async def served(model: str, version: int) -> ServedModel:
        server.loads += 1
        return _served(model, version)

    server._served = served
    return server


async def _call(
    server: Any, name: str, token: str | None = None, host: str | None = HOST
) -> tuple[int, dict[str, Any]]:
    headers = [(b"content-type", b"application/json")]
    if host is not None:
        headers.append((b"host", host.encode()))
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    scope = {
        "type": "http",
        "method": "POST",
        "path": f"/models/{name}",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
    }
    body = json.dumps({"inputs": [ROW]}).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asgi_app(server._handle)(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def _run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


@pytest.fixture
def tokens(store: MetadataStore) -> dict[str, str]:
    """An app's token (may predict) and a viewer's (may not)."""
    out = {}
    for name, role in (("app1", Role.APP), ("vic", Role.VIEWER)):
        store.create_user(User(name=name, role=role, created_at=utcnow()))
        out[name] = issue_token(store, name)[0]
    return out


def test_a_model_endpoint_refuses_a_foreign_host_before_anything_else(
    store: MetadataStore, settings: Settings, tokens: dict[str, str]
) -> None:
    server = _dedicated(_backend(store, settings))

    async def scenario() -> None:
        for host in ("evil.example", "evil.example:8000", None):  # DNS rebinding; no Host
            status, body = await _call(server, "m", tokens["app1"], host=host)
            assert (status, body["error"]) == (400, "bad_request"), body
            assert "is not served here" in body["message"] and body["request_id"]
        assert server._tokens.lookups == 0  # refused before the token was looked at
        for host in (HOST, "localhost", "[::1]:9"):
            status, body = await _call(server, "m", tokens["app1"], host=host)
            assert status == 200 and body["model"] == "m", body
        server._tokens.close()

    _run(scenario)


def test_the_host_rule_is_the_gateways(
    store: MetadataStore, settings: Settings, tokens: dict[str, str]
) -> None:
    """The allowed names come from the same setting, and ``*`` allows any, as on the gateway."""
    named = _dedicated(_backend(store, settings, allowed_hosts=["models.example"]))
    anything = _dedicated(_backend(store, settings, allowed_hosts=["*"]))

    async def scenario() -> None:
        assert (await _call(named, "m", tokens["app1"], host="MODELS.example:443"))[0] == 200
        assert (await _call(named, "m", tokens["app1"], host=HOST))[0] == 400
        assert (await _call(anything, "m", tokens["app1"], host="evil.example"))[0] == 200
        named._tokens.close()
        anything._tokens.close()

    _run(scenario)


def _deploy_shared(store: MetadataStore, name: str, **spec: Any) -> None:
    now = utcnow()
    config = DeploymentSpec(shared=True, **spec).model_dump_json()
    store.put_deployment(
        Deployment(
            name=name,
            model=name,
            version=1,
            config_json=config,
            traffic_json='{"1": 100}',
            status="RUNNING",
            created_by="admin",
            created_at=now,
            updated_at=now,
        )
    )


def test_the_shared_app_authenticates_before_it_looks_up_or_loads_a_model(
    store: MetadataStore, settings: Settings, tokens: dict[str, str]
) -> None:
    _deploy_shared(store, "tail")
    server = _shared(_backend(store, settings))

    async def scenario() -> None:
        # no token, a bad token, a role without predict: the same answer for a deployed model
        # and for one that does not exist, and nothing is loaded for such a caller
        for token, status in ((None, 401), ("dlp_0123456789ab_bad", 401), (tokens["vic"], 403)):
            deployed = await _call(server, "tail", token)
            unknown = await _call(server, "ghost", token)
            assert deployed[0] == unknown[0] == status, (deployed, unknown)
            assert deployed[1]["error"] == unknown[1]["error"]
        assert server.loads == 0
        assert (await _call(server, "tail", tokens["app1"], host="evil.example"))[0] == 400
        assert server.loads == 0

        # an authorized caller learns what exists, and only then is a model loaded
        status, body = await _call(server, "ghost", tokens["app1"])
        assert status == 404 and "no model is deployed" in body["message"]
        assert server.loads == 0
        status, body = await _call(server, "tail", tokens["app1"])
        assert status == 200 and body["model"] == "tail", body
        assert server.loads == 1
        server._tokens.close()

    _run(scenario)


def test_the_shared_app_serves_an_anonymous_deployment_without_a_token(
    store: MetadataStore, settings: Settings
) -> None:
    _deploy_shared(store, "open", allow_anonymous=True)
    _deploy_shared(store, "closed")
    server = _shared(_backend(store, settings))

    async def scenario() -> None:
        status, body = await _call(server, "open")
        assert status == 200 and body["model"] == "open", body
        assert (await _call(server, "closed"))[0] == 401
        assert (await _call(server, "..%2f"))[0] == 404  # not a name: nothing to look up
        assert server.loads == 1
        server._tokens.close()

    _run(scenario)


def test_a_request_the_model_fails_on_is_logged_with_its_error_code(
    store: MetadataStore, settings: Settings, tokens: dict[str, str]
) -> None:
    """A 500 of the replica is in the prediction log, marked, so a rollout counts the version's
    error rate from the same log as its latency and accuracy."""
    server = _dedicated(_backend(store, settings))

    def broken(_x: Any) -> list[Any]:
        raise RuntimeError("the model is broken")

    async def scenario() -> None:
        assert (await _call(server, "m", tokens["app1"]))[0] == 200
        server._versions[1].predict = broken
        status, body = await _call(server, "m", tokens["app1"])
        assert (status, body["error"]) == (500, "internal")
        await server.flush_log()
        assert store.get_prediction(body["request_id"]).error == "internal"
        server._tokens.close()

    _run(scenario)
    window = store.version_window("m", 1, utcnow() - timedelta(minutes=1))
    assert (window.requests, window.errors) == (2, 1)


def test_a_replica_follows_its_deployments_split_among_the_versions_it_holds(
    store: MetadataStore, settings: Settings, tokens: dict[str, str]
) -> None:
    """A rollout's step or a rollback is a new split in the deployment's record: the replica
    serves it from the moment the store has it (its long poll), without a redeploy, as long as it
    holds every version the split sends requests to; a split naming another version waits for
    the redeploy that brings it."""
    server = _dedicated(_backend(store, settings))
    server._versions[2] = _served("m", 2)
    now = utcnow()
    record = Deployment(name="m", model="m", version=1, traffic_json='{"1": 100, "2": 0}',
                        status="RUNNING", created_by="admin", created_at=now, updated_at=now)  # fmt: skip

    async def answered() -> set[int]:
        return {(await _call(server, "m", tokens["app1"]))[1]["version"] for _ in range(6)}

    async def follows(choices: list[int]) -> None:
        for _ in range(500):
            if server._choices == choices:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the replica still serves {server._choices}, not {choices}")

    async def scenario() -> None:
        store.put_deployment(record)
        assert await answered() == {1}  # the first request starts the follower
        store.put_deployment(record.model_copy(update={"traffic_json": '{"1": 0, "2": 100}'}))
        await follows([2])
        assert await answered() == {2}
        store.put_deployment(record.model_copy(update={"traffic_json": '{"1": 50, "2": 50}'}))
        await follows([1, 2])
        assert server._weights == [50, 50]
        store.put_deployment(record.model_copy(update={"traffic_json": '{"1": 0, "3": 100}'}))
        await asyncio.sleep(0.5)  # version 3 is not held here: the split stays
        assert server._choices == [1, 2] and await answered() <= {1, 2}
        server._follower.cancel()
        server._tokens.close()

    _run(scenario)
