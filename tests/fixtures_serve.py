"""Serving test helpers: register a small real model version, and a session Serve on loopback.

``register_mlp`` stores a real built-in MLP through the registry's own ``register_version`` (the
same artifact format training writes). ``serve_url`` starts Ray Serve on a free 127.0.0.1 port
the way ``dlp up`` does, unless Serve already runs in the session cluster (then its port is
reused: Serve's HTTP options apply only on the first start).
"""

from __future__ import annotations

import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dlplatform.context import Backend
from dlplatform.metadata import ModelVersion, Role, Run, User
from dlplatform.metadata.records import utcnow

FEATURES = ("f0", "f1", "f2", "f3")


def register_mlp(
    backend: Backend,
    name: str,
    *,
    seed: int = 0,
    features: tuple[str, ...] = FEATURES,
    classes: tuple[Any, ...] = ("a", "b", "c"),
) -> ModelVersion:
    """Register a fresh (untrained, seeded) MLP version of ``name``; returns the version."""
    import torch

    from dlplatform.train import ModelSignature
    from dlplatform.train.models import build_model
    from dlplatform.train.registry import BUILTIN_BUILDER, register_version

    signature = ModelSignature(
        kind="tabular",
        features=features,
        dtypes=("double",) * len(features),
        input_shape=(len(features),),
        task="classification",
        label="y",
        classes=classes,
    )
    config = {
        "model": "mlp",
        "input_shape": [len(features)],
        "num_outputs": len(classes),
        "params": {"hidden": 8, "layers": 1},
    }
    torch.manual_seed(seed)
    module = build_model(config)
    run = backend.store.create_run(
        Run(id=f"r-{uuid.uuid4().hex[:12]}", owner="admin", created_at=utcnow())
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "weights.pt"
        torch.save(module.state_dict(), path)
        return register_version(
            backend,
            run=run,
            model_name=name,
            state_dict_path=path,
            model_config=config,
            signature=signature,
            builder=BUILTIN_BUILDER,
            metrics={},
            params={},
            dataset_commit="c-test",
            dataset_version_hash=None,
            code_version="test",
        )


@pytest.fixture(scope="session")
def serve_url(ray_cluster: None) -> Iterator[str]:
    """Base URL of Ray Serve's HTTP proxy on loopback (started here when not running yet)."""
    from dlplatform.runtime import start_serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = int(s.getsockname()[1])
    yield f"http://127.0.0.1:{start_serve('127.0.0.1', free)}"


class ServingEnv:
    """A platform home with its own metadata actor, tokens and an HTTP client on Serve."""

    def __init__(self, backend: Backend, url: str) -> None:
        import httpx

        from dlplatform.access import bootstrap_admin, issue_token

        self.backend = backend
        self.url = url
        store = backend.store
        self.admin_token = bootstrap_admin(store)
        for name, role in (("app1", Role.APP), ("viewer1", Role.VIEWER)):
            store.create_user(User(name=name, role=role, created_at=utcnow()))
        self.app_token, _ = issue_token(store, "app1")
        self.viewer_token, _ = issue_token(store, "viewer1")
        self.client = httpx.Client(base_url=url, timeout=30)

    def post(self, name: str, body: Any, token: str | None = None, **kw: Any) -> Any:
        import json

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        headers.update(kw.pop("headers", {}))
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(f"/models/{name}", content=content, headers=headers, **kw)


@pytest.fixture(scope="module")
def serving_env(serve_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingEnv]:
    """A ``ServingEnv`` per test module; its deployments are undeployed at the end."""
    from dlplatform import serve as serving
    from dlplatform.access import SYSTEM
    from dlplatform.config import load_settings
    from dlplatform.metadata.actor import connect_store, stop_store
    from dlplatform.metadata.artifacts import ArtifactStore

    settings = load_settings(
        home=tmp_path_factory.mktemp("serve-home"), namespace=f"t-serve-{uuid.uuid4().hex[:8]}"
    )
    store = connect_store(settings)
    backend = Backend(
        store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings
    )
    env = ServingEnv(backend, serve_url)
    yield env
    env.client.close()
    for d in store.list_deployments():
        serving.undeploy(backend, SYSTEM, d.name)
    stop_store(settings)
