"""Route modules of the gateway. Each exposes ``router: fastapi.APIRouter``; add yours to ROUTERS."""

ROUTERS: list[str] = [
    "dlplatform.api.routes.system",
]
