"""The FastAPI gateway at ``/api/v1``: error mapping, Host check, body limit, routers.

``create_app(backend)`` builds the app; the Serve deployment (``gateway.py``) wraps it, and tests
use it in-process with ``TestClient``.

Every error leaves as ``{"error": code, "message": ...}``: platform errors with their own status,
validation errors as 422 naming the field, a foreign Host header as 400, a body over the limit as
413 (before it is read), anything unexpected as 500 with a request id that is also in the log,
with the traceback. Anything unexpected includes ``SystemExit``/``KeyboardInterrupt`` raised by
called code (``CatchAllMiddleware``: no request can end the gateway's event loop); such a failure
is also audited (outcome ``error``, action ``request.error``, the request id in the detail).

The OpenAPI document (``openapi.py``: bearer auth, error responses, the inference endpoint) is at
``/api/v1/openapi.json`` and the docs page (``docs.py``, assets in the package) at ``/api/v1/docs``.
"""

from __future__ import annotations

import importlib
import logging
import re
import uuid
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from dlplatform.access import AuthCache, AuthFailures, hash_token
from dlplatform.api.docs import mount_docs
from dlplatform.api.metrics import AuthFailureSeries
from dlplatform.api.middleware import (
    BodyLimit,
    BodyLimitMiddleware,
    CatchAllMiddleware,
    HostCheckMiddleware,
    Scope,
    bearer_token,
)
from dlplatform.api.openapi import ERROR_RESPONSES, install_openapi
from dlplatform.api.routes import ROUTERS
from dlplatform.api.ui import mount_ui
from dlplatform.context import Backend
from dlplatform.errors import DLPlatformError, TooManyRequests

if TYPE_CHECKING:
    from dlplatform.metadata import MetadataStore

API_PREFIX = "/api/v1"
log = logging.getLogger("dlplatform.api")

# Routes whose request bodies may be larger than ``settings.max_request_bytes``:
# (method, regex on the full path, name of the Settings field holding the limit). Add yours.
BODY_LIMITS: list[tuple[str, str, str]] = [
    ("POST", rf"^{API_PREFIX}/datasets/[^/]+/commits$", "max_upload_bytes"),
    ("POST", rf"^{API_PREFIX}/runs/[^/]+/artifacts$", "max_upload_bytes"),
]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
}


def create_app(backend: Backend) -> FastAPI:
    """The gateway app over ``backend`` (in-process store in tests, the actor's client in Serve)."""
    settings = backend.settings
    app = FastAPI(
        title="dlplatform",
        version="1",
        description="HTTP API of dlplatform. Send `Authorization: Bearer <token>` on every call "
        "except /healthz.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=None,  # mount_docs serves the page with assets from the package, not a CDN
        redoc_url=None,
    )
    app.state.backend = backend
    app.state.auth_cache = AuthCache(
        settings.auth_cache_ttl_s, failures=AuthFailures(observe=AuthFailureSeries())
    )

    @app.exception_handler(DLPlatformError)
    async def _on_platform_error(_: Request, exc: DLPlatformError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        if isinstance(exc, TooManyRequests) and exc.retry_after_s is not None:
            headers = {"Retry-After": str(exc.retry_after_s)}
        if exc.http_status >= 500:
            request_id = uuid.uuid4().hex[:12]
            log.error("request %s failed: %s: %s", request_id, exc.code, exc.message, exc_info=exc)
            message = f"{exc.message} (request id {request_id})"
        else:
            message = exc.message
        return JSONResponse(
            {"error": exc.code, "message": message}, status_code=exc.http_status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors()[:10]:
            loc = [str(p) for p in err["loc"]]
            if err.get("type") == "json_invalid":
                detail = (err.get("ctx") or {}).get("error", "malformed JSON")
                where = f"{loc[0]} (position {loc[1]})" if len(loc) > 1 else "body"
                problems.append(f"{where}: invalid JSON: {str(detail)[:200]}")
            else:
                problems.append(f"{'.'.join(loc)}: {str(err['msg'])[:300]}")
        return JSONResponse(
            {"error": "invalid_input", "message": "; ".join(problems)}, status_code=422
        )

    @app.exception_handler(HTTPException)
    async def _on_http(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(
            exc.status_code, "bad_request" if exc.status_code < 500 else "internal"
        )
        return JSONResponse(
            {"error": code, "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
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
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)
    install_openapi(app)
    mount_docs(app, f"{API_PREFIX}/docs")

    async def _record_failure(scope: Scope, request_id: str, exc: BaseException) -> None:
        detail = (
            f"request id {request_id}: {scope.get('method')} {scope.get('path')} raised "
            f"{type(exc).__name__}"
        )
        token = bearer_token(scope)
        await run_in_threadpool(_audit_failure, backend.store, token, request_id, detail)

    # Added innermost first: the catch-all wraps everything, then HostCheck runs, then the body
    # limit, then the routes.
    limits = [
        BodyLimit(method, re.compile(pattern), int(getattr(settings, field)))
        for method, pattern, field in BODY_LIMITS
    ]
    app.add_middleware(BodyLimitMiddleware, default_bytes=settings.max_request_bytes, limits=limits)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=list(settings.allowed_hosts))
    app.add_middleware(CatchAllMiddleware, on_failure=_record_failure)
    mount_ui(app)  # the web UI at /ui (static shell; its data calls use /api/v1 with a token)
    return app


def _audit_failure(store: MetadataStore, token: str | None, request_id: str, detail: str) -> None:
    """Audit a request that failed unexpectedly, as its caller when the token names one (looked
    up without ``authenticate``'s side effects: this is no authentication)."""
    actor = "anonymous"
    if token:
        try:
            actor = store.user_for_token_hash(hash_token(token))[0].name
        except Exception:  # unknown token, or the store is what failed
            actor = "unknown"
    store.append_audit(actor, "request.error", f"request:{request_id}", "error", detail)
