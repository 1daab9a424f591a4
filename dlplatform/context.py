"""``Backend``: what every service function receives — the stores and the settings.

Services never reach for globals: the SDK, the CLI, the gateway and the tests build a ``Backend``
once and pass it down; on a running platform ``Backend.connect(settings)`` builds it. ``store``
is a ``MetadataStore`` in-process, or the metadata actor's ``StoreClient`` (the same interface)
inside a running platform.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable

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
        # Ray and DuckDB: the CLI and the SDK import this module without either
        import ray

        from dlplatform.metadata import MetadataStore

        return ray.is_initialized() and not isinstance(self.store, MetadataStore)

    @classmethod
    def connect(cls, settings: Settings, *, create: bool = True) -> Backend:
        """The running platform's backend: the metadata actor's client (the actor started on the
        head when missing and ``create``) and the artifact store, both from ``settings``.

        Raises:
            BackendUnavailable: Ray is not initialised, or the metadata actor cannot be reached.
        """
        # Ray and DuckDB: the CLI and the SDK import this module without either
        from dlplatform.metadata.actor import connect_store
        from dlplatform.metadata.artifacts import ArtifactStore

        return cls(store=connect_store(settings, create=create),
                   artifacts=ArtifactStore.from_settings(settings), settings=settings)  # fmt: skip

    def require_cluster(self, what: str) -> None:
        """Raise ``BackendUnavailable`` naming ``what`` unless ``on_cluster``."""
        if not self.on_cluster:
            raise BackendUnavailable(f"{what} needs the running platform; start it with `dlp up`")
