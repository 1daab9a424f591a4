"""Dependencies every route uses: the request's ``Backend`` and authenticated ``Principal``.

A route declares ``ctx: Ctx`` and passes ``ctx.backend`` and ``ctx.principal`` to one service
function. Credentials come only from the ``Authorization: Bearer`` header (no cookies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from dlplatform.access import Principal, authenticate
from dlplatform.context import Backend


@dataclass(frozen=True)
class RequestContext:
    backend: Backend
    principal: Principal


def get_backend(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def get_context(request: Request) -> RequestContext:
    backend = get_backend(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = authenticate(backend.store, token.strip() if scheme.lower() == "bearer" else None)
    return RequestContext(backend=backend, principal=principal)


Ctx = Annotated[RequestContext, Depends(get_context)]
BackendDep = Annotated[Backend, Depends(get_backend)]
