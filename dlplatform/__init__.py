"""dlplatform: a deep learning platform on one Ray cluster.

Object model (what a notebook browses)::

    p = dlplatform.connect()          Platform: one user's HTTP connection to the gateway
    p.datasets  -> Dataset handles    commits (versions) -> to_ray()/to_arrow()/to_pandas()
    p.training  -> jobs -> runs       params, per-epoch metrics, checkpoints
    p.models    -> model versions     aliases (production, staging, ...)
    p.lineage   -> upstream/downstream from any entity
    p.serving, p.tuning, p.workflows, p.users, p.audit, p.alerts

``connect()`` imports neither Ray nor torch: the SDK is an HTTP client (``dlplatform.client``).
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports
from dlplatform.errors import DLPlatformError

if TYPE_CHECKING:
    from dlplatform.client import Platform, connect

# ``import dlplatform.cli`` runs this file: the client (httpx) loads on first use of connect.
__getattr__, __dir__ = lazy_exports(
    __name__, {"Platform": "dlplatform.client", "connect": "dlplatform.client"}
)

__version__ = "0.1.0"

__all__ = ["DLPlatformError", "Platform", "__version__", "connect"]
