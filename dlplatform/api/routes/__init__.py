"""Route modules of the gateway. Each exposes ``router: fastapi.APIRouter``; add yours to ROUTERS.

Routes are adapters: they may import every component's public service functions and specs,
and hold no logic of their own beyond HTTP.
"""

__all__ = ["ROUTERS"]

ROUTERS: list[str] = [
    "dlplatform.api.routes.system",
    "dlplatform.api.routes.users",
    "dlplatform.api.routes.audit",
    "dlplatform.api.routes.lineage",
    "dlplatform.api.routes.alerts",
    "dlplatform.api.routes.datasets",
    "dlplatform.api.routes.dataset_stats",
    "dlplatform.api.routes.deployments",
    "dlplatform.api.routes.training",
    "dlplatform.api.routes.runs",
    "dlplatform.api.routes.tuning",
    "dlplatform.api.routes.models",
    "dlplatform.api.routes.workflows",
    "dlplatform.api.routes.workflow_outputs",
    "dlplatform.api.routes.batch",
    "dlplatform.api.routes.metadata",
    "dlplatform.api.routes.backup",
    "dlplatform.api.routes.usage",
]
