"""The notebook/SDK entry point: ``connect()`` and the ``Platform`` it returns.

``Platform`` holds a ``Backend`` (stores + settings) and the caller's ``Principal``; each component
adds a namespace (``p.datasets``, ``p.training``, ``p.models``, ...) whose methods call that
component's service functions, the same ones the HTTP gateway calls.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Any, Literal

from dlplatform.access import Principal, authenticate
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.metadata import LineageNode

# namespace attribute -> "module:Class"; the class is built with (backend, principal).
NAMESPACES: dict[str, str] = {
    "workflows": "dlplatform.workflows.sdk:WorkflowsClient",
    "datasets": "dlplatform.data.sdk:DatasetsClient",
    "training": "dlplatform.train.sdk:TrainingClient",
    "tuning": "dlplatform.train.tune_sdk:TuningClient",
    "models": "dlplatform.train.sdk:ModelsClient",
    "serving": "dlplatform.serve.sdk:ServingClient",
}


class LineageClient:
    """Upstream/downstream queries from any entity (``"commit:<id>"``, ``"model_version:m@3"``)."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def _walk(
        self, entity: Any, direction: Literal["up", "down"], depth: int | None
    ) -> list[LineageNode]:
        from dlplatform.lineage import query_lineage

        ref = entity if isinstance(entity, str) else entity.entity_ref
        return query_lineage(self._backend, self._principal, ref, direction=direction, depth=depth)

    def upstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self._walk(entity, "up", depth)

    def downstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self._walk(entity, "down", depth)


class Platform:
    """A connection to dlplatform as one user."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self.backend = backend
        self.principal = principal

    @property
    def settings(self) -> Settings:
        return self.backend.settings

    @cached_property
    def lineage(self) -> LineageClient:
        return LineageClient(self.backend, self.principal)

    def __getattr__(self, name: str) -> Any:
        target = NAMESPACES.get(name)
        if target is None:
            raise AttributeError(name)
        module_name, _, cls_name = target.partition(":")
        client = getattr(importlib.import_module(module_name), cls_name)(
            self.backend, self.principal
        )
        setattr(self, name, client)
        return client

    def __repr__(self) -> str:
        return f"<Platform user={self.principal.name} home={self.settings.home}>"


def connect(
    *,
    home: str | None = None,
    token: str | None = None,
    address: str | None = None,
    start: bool = True,
) -> Platform:
    """Join the running platform (or start a local one) as the owner of ``token``.

    The token defaults to ``DLP_TOKEN``, then the admin token file under the home.

    Raises:
        BackendUnavailable: no platform runs under the home and ``start`` is False.
        Unauthenticated: the token is missing, unknown or revoked.
    """
    from dlplatform import runtime
    from dlplatform.lab import install_notebook_views

    install_notebook_views()  # HTML views + short platform errors, only inside IPython
    settings = load_settings(home=home, ray_address=address, token=token)
    backend = runtime.attach(settings, start=start)
    secret = settings.token
    if secret is None and settings.admin_token_path.is_file():
        secret = settings.admin_token_path.read_text().strip()
    if not secret:
        from dlplatform.errors import Unauthenticated

        raise Unauthenticated(
            f"no token: set DLP_TOKEN, or run `dlp up` to create {settings.admin_token_path}"
        )
    return Platform(backend, authenticate(backend.store, secret))
