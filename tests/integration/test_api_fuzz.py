"""Property-based requests from the OpenAPI document (schemathesis): no input gives a 5xx.

The whole document is fuzzed in-process, once with an admin's token and once with a viewer's,
with a bounded number of examples per operation, over a real DuckDB store:

- the gateway's routes: the real app (``create_app``);
- ``POST /models/{name}``, which Ray Serve answers from the model's own application on the same
  host and port: a dedicated model replica (the real ``ModelServer`` class, its ASGI app, Host
  check, token check, validation, batching and prediction log) built without Ray. Only what
  needs a Ray worker is replaced: the metadata actor's client by direct calls to the same store,
  the registry load by a small real model, and Serve's metrics publisher by nothing. A request
  whose path starts with ``/models/`` goes to the replica, as Serve's proxy routes it.

Every route any component adds is covered automatically.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import schemathesis
from fixtures_serve import LocalStoreClient, served_model
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from dlplatform.access import issue_token
from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.api.openapi import PREDICT_PATH
from dlplatform.context import Backend
from dlplatform.metadata import Role, User
from dlplatform.metadata.records import utcnow
from dlplatform.serve.spec import ROUTE_PREFIX, DeploymentSpec

pytestmark = pytest.mark.integration

MAX_EXAMPLES = {"admin": 25, "viewer": 6}
"""Examples per operation and token. Bounded: about 75 s of one core for both runs (the admin's
about 50, the viewer's, mostly refusals, about 15, imports and set-up 10)."""
MODEL_DEPLOYMENT = "fuzz-model"

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


def _model_replica(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> tuple[ASGIApp, Callable[[], None]]:
    """The ASGI app of one replica of a dedicated deployment of ``m@1``, built in-process, and
    how to close it: its prediction log is written out before the test's store closes."""
    from dlplatform.serve import deployment

    client = LocalStoreClient(backend.store)
    replica_backend = Backend(
        store=client,  # type: ignore[arg-type]
        artifacts=backend.artifacts,
        settings=backend.settings,
    )
    monkeypatch.setattr(deployment, "prepare_replica_process", lambda: None)
    monkeypatch.setattr(deployment, "_backend", lambda _settings: replica_backend)
    monkeypatch.setattr(deployment, "load_served_model", lambda *_a, **_k: served_model())
    server_class = deployment.ModelServer.func_or_class.__bases__[0]  # inside @serve.ingress

    class Replica(server_class):  # type: ignore[misc, valid-type]
        def _start_publisher(self) -> None:
            """Serve's metrics need a Ray worker; the request path does not."""

        def __del__(self) -> None:
            """The replica's own closes its prediction logs on Serve's event loop."""

    spec = DeploymentSpec(max_rows=64, log_sample_rate=1.0)
    replica = Replica({"settings": {}, "deployment": MODEL_DEPLOYMENT, "model": "m",
                       "traffic": {"1": 100}, "spec": spec.model_dump(mode="json")})  # fmt: skip
    inner: ASGIApp = replica.__serve_build_asgi_app__()
    loops: list[asyncio.AbstractEventLoop] = []  # the loop the replica's tasks run on

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        if not loops:
            loops.append(asyncio.get_running_loop())
        await inner(scope, receive, send)

    def close() -> None:
        client.closed = True
        if loops:
            asyncio.run_coroutine_threadsafe(replica.flush_log(), loops[0]).result(timeout=30)

    # No deployment record: the gateway's deployment routes would then need Serve (503 here).
    return app, close


def _same_host(gateway: ASGIApp, model: ASGIApp) -> ASGIApp:
    """One host and port as Serve's proxy serves them: ``/models/...`` to the model's app,
    everything else to the gateway (the gateway alone answers the lifespan protocol)."""

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        target = (
            model if scope["type"] == "http" and path.startswith(f"{ROUTE_PREFIX}/") else gateway
        )
        await target(scope, receive, send)

    return app


@pytest.fixture
def api_schema(backend: Backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # schemathesis's in-process client sends `Host: testserver`: allow it for this app only.
    settings = backend.settings.model_copy(update={"allowed_hosts": ["127.0.0.1", "testserver"]})
    fuzzed = Backend(store=backend.store, artifacts=backend.artifacts, settings=settings)
    model, close = _model_replica(fuzzed, monkeypatch)
    app = _same_host(create_app(fuzzed), model)
    yield schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", app)
    close()


@pytest.fixture
def viewer_token(backend: Backend) -> str:
    backend.store.create_user(User(name="fuzz-viewer", role=Role.VIEWER, created_at=utcnow()))
    return issue_token(backend.store, "fuzz-viewer")[0]


def _no_server_error(case: Any, token: str) -> None:
    if case.operation.path == PREDICT_PATH:  # the deployed model's app; any name reaches it
        case.path_parameters = {"name": MODEL_DEPLOYMENT}
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert b"Traceback" not in response.content  # bodies may be binary (Arrow, zip)
    case.validate_response(response, checks=[not_a_server_error])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES["admin"],
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_for_any_request_of_an_admin(case: Any, admin_token: str) -> None:
    _no_server_error(case, admin_token)


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES["viewer"],
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_for_any_request_of_a_viewer(case: Any, viewer_token: str) -> None:
    """Mostly refusals (403, 404 for what a viewer may not see): fewer examples find them."""
    _no_server_error(case, viewer_token)
