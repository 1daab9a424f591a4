"""The gateway deployed with Ray Serve in the session cluster, once per test session.

Fixtures (all session-scoped, integration tests only):

- ``gateway_settings``: Settings of the deployed gateway (own temp home, namespace ``dlp-gw-tests``).
- ``gateway_backend``: a Backend over the same metadata actor and artifact root the gateway uses
  (set up state here, then call the gateway over HTTP).
- ``gateway_admin_token``: a bearer token of the admin user of that store.
- ``gateway_url``: ``http://127.0.0.1:<port>`` of Serve's proxy; the API is at ``/api/v1``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend


@pytest.fixture(scope="session")
def gateway_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    # No warm pool: the remote tour's job runs as a Ray Job, whose run token (in its runtime_env)
    # the test uses after the run ended; the pool path is tested in test_training_e2e.py.
    return load_settings(
        home=tmp_path_factory.mktemp("gateway-home"), namespace="dlp-gw-tests", train_pool_size=0
    )


@pytest.fixture(scope="session")
def gateway_backend(ray_cluster: None, gateway_settings: Settings) -> Iterator[Backend]:
    from dlplatform.metadata.actor import connect_store, stop_store
    from dlplatform.metadata.artifacts import ArtifactStore

    backend = Backend(
        store=connect_store(gateway_settings),
        artifacts=ArtifactStore.from_settings(gateway_settings),
        settings=gateway_settings,
    )
    yield backend
    stop_store(gateway_settings)


@pytest.fixture(scope="session")
def gateway_admin_token(gateway_backend: Backend) -> str:
    from dlplatform.access import bootstrap_admin, issue_token

    token = bootstrap_admin(gateway_backend.store)
    if token is None:  # the admin exists already: give this session a token of its own
        token, _ = issue_token(gateway_backend.store, "admin")
    return token


@pytest.fixture(scope="session")
def gateway_url(gateway_backend: Backend, gateway_admin_token: str) -> Iterator[str]:
    from ray import serve

    from dlplatform.api.gateway import GATEWAY_APP, deploy_gateway
    from dlplatform.runtime import start_serve, wait_healthy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    port = start_serve("127.0.0.1", free)  # reuses Serve's port when it runs already
    deploy_gateway(gateway_backend.settings)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url)
    yield url
    serve.delete(GATEWAY_APP)
