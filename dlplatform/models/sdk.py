"""The in-process ``p.models`` namespace (``ModelsClient``) over the model registry::

p.models.promote("digits-mlp", 1, "production")
module, signature = p.models.load("digits-mlp", "production")
"""

from __future__ import annotations

import torch

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.metadata import AliasEvent, ModelSummary, ModelVersion
from dlplatform.models import artifact, registry
from dlplatform.models.spec import ModelSignature


class ModelsClient:
    """``p.models``: the model registry."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def list(self) -> list[ModelSummary]:
        return registry.list_models(self._backend, self._principal)

    def versions(self, name: str) -> list[ModelVersion]:
        return registry.list_versions(self._backend, self._principal, name)

    def get(self, name: str, version_or_alias: str | int | None = None) -> ModelVersion:
        """A version by number or alias; ``"name@3"`` works too; latest when omitted."""
        if version_or_alias is None and "@" in name:
            name, version_or_alias = registry.parse_model_ref(name)
        return registry.get_version(self._backend, self._principal, name, version_or_alias)

    def promote(self, name: str, version: int | str, alias: str) -> AliasEvent:
        return registry.promote(self._backend, self._principal, name, version, alias)

    def history(self, name: str) -> list[AliasEvent]:
        return registry.alias_history(self._backend, self._principal, name)

    def load(
        self, name: str, version_or_alias: str | int | None = None
    ) -> tuple[torch.nn.Module, ModelSignature]:
        """The torch module (eval mode) and its signature, hash-verified, weights only."""
        mv = self.get(name, version_or_alias)
        return artifact.load_model(self._backend, mv.model, mv.version)
