"""The FastAPI gateway at ``/api/v1``: error mapping, Host check, body limit, routers.

``create_app(backend)`` builds the app; the Serve deployment (``gateway.py``) wraps it, and tests
use it in-process with ``TestClient``.
"""

from __future__ import annotations

import importlib
import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from dlplatform.api.routes import ROUTERS
from dlplatform.context import Backend
from dlplatform.errors import DLPlatformError

API_PREFIX = "/api/v1"
log = logging.getLogger("dlplatform.api")


def create_app(backend: Backend) -> FastAPI:
    app = FastAPI(
        title="dlplatform",
        version="1",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
    )
    app.state.backend = backend

    @app.exception_handler(DLPlatformError)
    async def _on_platform_error(_: Request, exc: DLPlatformError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:10]
        ]
        return JSONResponse(
            {"error": "invalid_input", "message": "; ".join(problems)}, status_code=422
        )

    @app.exception_handler(Exception)
    async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        request_id = uuid.uuid4().hex[:12]
        log.error("request %s failed", request_id, exc_info=exc)
        return JSONResponse(
            {"error": "internal", "message": f"internal error (request id {request_id})"},
            status_code=500,
        )

    for module_name in ROUTERS:
        module = importlib.import_module(module_name)
        app.include_router(module.router, prefix=API_PREFIX)
    return app
