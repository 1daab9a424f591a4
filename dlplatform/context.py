"""``Backend``: what every service function receives — the stores and the settings.

Services never reach for globals: the SDK, the CLI, the gateway and the tests build a ``Backend``
once and pass it down. ``store`` is a ``MetadataStore`` in-process, or the metadata actor's
``StoreClient`` (same methods) inside a running platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlplatform.config import Settings

if TYPE_CHECKING:
    from dlplatform.metadata import MetadataStore
    from dlplatform.metadata.artifacts import ArtifactStore


@dataclass(frozen=True)
class Backend:
    store: MetadataStore
    artifacts: ArtifactStore
    settings: Settings

    @property
    def on_cluster(self) -> bool:
        """Whether the platform's actors (scheduler, workflow manager, Serve apps) can serve this
        backend: Ray is initialised here and ``store`` is the metadata actor, which those actors
        reach too. An in-process ``MetadataStore`` holds its DuckDB file's lock, so no actor
        could open it even while some Ray cluster is up."""
        import ray

        from dlplatform.metadata import MetadataStore

        return ray.is_initialized() and not isinstance(self.store, MetadataStore)

    def require_cluster(self, what: str) -> None:
        """Raise ``BackendUnavailable`` naming ``what`` unless ``on_cluster``."""
        if not self.on_cluster:
            from dlplatform.errors import BackendUnavailable

            raise BackendUnavailable(f"{what} needs the running platform; start it with `dlp up`")
