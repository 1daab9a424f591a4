"""dlplatform: a deep learning platform on one Ray cluster.

Object model (what a notebook browses)::

    p = dlplatform.connect()          Platform: one user's connection
    p.datasets  -> Dataset handles    commits (versions) -> to_ray()/to_arrow()/to_pandas()
    p.training  -> jobs -> runs       params, per-epoch metrics, checkpoints
    p.models    -> model versions     aliases (production, staging, ...)
    p.lineage   -> upstream/downstream from any entity
"""

from dlplatform.errors import DLPlatformError
from dlplatform.sdk import Platform, connect

__version__ = "0.1.0"

__all__ = ["DLPlatformError", "Platform", "__version__", "connect"]
