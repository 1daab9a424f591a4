"""``Backend``: what every service function receives — the stores and the settings.

Services never reach for globals: the SDK, the CLI, the gateway and the tests build a ``Backend``
once and pass it down. ``store`` is a ``MetadataStore`` in-process, or the metadata actor's
``StoreClient`` (same methods) inside a running platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlplatform.config import Settings
from dlplatform.metadata import MetadataStore

if TYPE_CHECKING:
    from dlplatform.metadata.artifacts import ArtifactStore


@dataclass(frozen=True)
class Backend:
    store: MetadataStore
    artifacts: ArtifactStore
    settings: Settings
