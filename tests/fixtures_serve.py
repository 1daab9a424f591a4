"""Serving test helpers: register a small real model version, and a session Serve on loopback.

``LocalStoreClient`` is what a model replica uses of the metadata actor's ``StoreClient``,
answered in this process by a real store; ``served_model`` a small real ``ServedModel``.
``register_mlp`` stores a real built-in MLP through the registry's own ``register_version`` (the
same artifact format training writes). ``serve_url`` starts Ray Serve on a free 127.0.0.1 port
the way ``dlp up`` does, unless Serve already runs in the session cluster (then its port is
reused: Serve's HTTP options apply only on the first start).
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from dlplatform.context import Backend
from dlplatform.metadata import ModelVersion, Role, Run, User
from dlplatform.metadata.records import utcnow

FEATURES = ("f0", "f1", "f2", "f3")


class _Reply:
    """An awaitable that is already answered (a Ray ``ObjectRef`` to a finished call)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self.value
        yield  # a generator: ``await`` takes the return value without suspending


class LocalStoreClient:
    """What a replica uses of the metadata actor's ``StoreClient``, answered in this process by
    the same store: its methods, ``call_async`` (the reply the actor's own ``call`` gives, to
    await) and the token-epoch and deployment long polls (short here, so that a test's event
    loop ends quickly; idle once ``closed`` is set, before the store closes)."""

    def __init__(self, store: Any) -> None:
        from dlplatform.metadata.actor import _MetadataActor

        self._store = store
        self._actor = _MetadataActor.__new__(_MetadataActor)  # its ``call``, without Ray
        self._actor._store = store
        self.closed = False

    def __getattr__(self, method: str) -> Any:
        return getattr(self._store, method)

    def call_async(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> _Reply:
        return _Reply(self._actor.call(method.__name__, args, kwargs))

    async def watch_token_epoch(self, known: int | None, timeout_s: float) -> int:
        if self.closed:
            await asyncio.sleep(3600)
        return int(
            await asyncio.to_thread(self._store.wait_token_epoch, known, min(timeout_s, 0.2))
        )

    async def watch_deployment(self, name: str, known: int | None, timeout_s: float) -> int:
        if self.closed:
            await asyncio.sleep(3600)
        return int(
            await asyncio.to_thread(
                self._store.wait_deployment_change, name, known, min(timeout_s, 0.2)
            )
        )


def served_model(model: str = "m", version: int = 1, *, max_rows: int = 64) -> Any:
    """A ``ServedModel`` of an untrained 4-feature, 3-class MLP (``FEATURES``, classes a b c)."""
    from dlplatform.models.builtin import build_model
    from dlplatform.models.spec import ModelSignature
    from dlplatform.serve._model import ServedModel

    signature = ModelSignature(kind="tabular", features=FEATURES, dtypes=("double",) * 4,
                               input_shape=(4,), task="classification", label="y",
                               classes=("a", "b", "c"))  # fmt: skip
    config = {"model": "mlp", "input_shape": [4], "num_outputs": 3, "params": {"hidden": 4}}
    return ServedModel(model=model, version=version, module=build_model(config),
                       signature=signature, params=config["params"], max_rows=max_rows)  # fmt: skip


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

    from dlplatform.models.artifact import BUILTIN_BUILDER, register_version
    from dlplatform.models.builtin import build_model
    from dlplatform.models.spec import ModelSignature

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
