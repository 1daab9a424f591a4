"""Dependencies every route uses: the request's ``Backend`` and authenticated ``Principal``.

A route declares ``ctx: Ctx`` and passes ``ctx.backend`` and ``ctx.principal`` to one service
function. Credentials come only from the ``Authorization: Bearer`` header (no cookies).

``BEARER`` reads that header. Because ``get_context`` depends on it, FastAPI declares the
``bearerAuth`` security scheme in the OpenAPI document and marks every route taking ``Ctx`` as
needing it (the docs page's "Authorize" button then sends the header). It never answers by
itself (``auto_error=False``): ``authenticate`` decides, so a refusal is the platform's 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from dlplatform.access import AuthCache, Principal
from dlplatform.context import Backend


@dataclass(frozen=True)
class RequestContext:
    backend: Backend
    principal: Principal


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


BEARER_SCHEME = "bearerAuth"
BEARER = HTTPBearer(
    scheme_name=BEARER_SCHEME,
    description="A platform token (`dlp_...`), sent as `Authorization: Bearer <token>`.",
    auto_error=False,
)


def get_context(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> RequestContext:
    """The caller of this request.

    Raises:
        Unauthenticated: no ``Authorization: Bearer`` header, or an unusable token.
        TooManyRequests: the client's address failed to authenticate too often lately.
    """
    backend = get_backend(request)
    token = credentials.credentials.strip() if credentials is not None else None
    cache: AuthCache = request.app.state.auth_cache
    principal = cache.authenticate(backend.store, token, source=client_address(request))
    return RequestContext(backend=backend, principal=principal)


def client_address(request: Request) -> str:
    """The address failed authentications are counted against: the TCP peer as the server saw
    it (never a header a client could forge, such as ``X-Forwarded-For``)."""
    client = request.client
    return client.host[:100] if client is not None and client.host else "unknown"


Ctx = Annotated[RequestContext, Depends(get_context)]
BackendDep = Annotated[Backend, Depends(get_backend)]
