"""The in-process facade over the service functions: ``Platform(backend, principal)``.

The server side, not the SDK. People and their code reach the platform with
``dlplatform.connect()``, the HTTP client of the gateway (``dlplatform.client``, which imports
nothing of this module, of ``context`` or of the components' services). This facade is for code that already holds the
platform's powers and a ``Backend`` (the metadata actor's client): the platform's own drivers and
the integration tests. Each component adds a namespace (``p.datasets``, ``p.training``, ...)
whose methods call that component's service functions, the same ones the gateway calls.
"""

from __future__ import annotations

import importlib
from functools import cached_property
from typing import Any, Literal

from dlplatform.access import Principal
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.lineage import query_lineage
from dlplatform.metadata import LineageNode

# namespace attribute -> "module:Class"; the class is built with (backend, principal).
NAMESPACES: dict[str, str] = {
    "workflows": "dlplatform.workflows.sdk:WorkflowsClient",
    "datasets": "dlplatform.data.sdk:DatasetsClient",
    "training": "dlplatform.train.sdk:TrainingClient",
    "tuning": "dlplatform.train.tune_sdk:TuningClient",
    "models": "dlplatform.models.sdk:ModelsClient",
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
