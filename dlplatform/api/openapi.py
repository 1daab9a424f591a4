"""The gateway's OpenAPI document: bearer auth, the error body, and the inference endpoint.

FastAPI builds most of it from the routes: each route's return annotation is its response model,
and ``get_context``'s ``HTTPBearer`` declares the ``bearerAuth`` scheme on every route taking
``Ctx``. This module adds what the routes cannot say themselves:

- ``ERROR_RESPONSES``: the error body ``{"error": code, "message": ...}`` (``ErrorBody``) for each
  4xx/5xx the app's handlers answer, in place of FastAPI's own 422 shape, which this app never
  sends. ``include_router`` attaches them to every route; an operation without ``security``
  (``/healthz``) does not list 401/403.
- ``POST /models/{name}``: inference is answered by the model's Ray Serve application on the same
  host and port, not by the gateway. A route object that is never mounted describes it, so the
  document shows it with its schemas and auth while the gateway still answers it 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from dlplatform.api.deps import BEARER, BEARER_SCHEME
from dlplatform.serve.spec import (
    ROUTE_PREFIX,
    PredictionError,
    PredictionRequest,
    PredictionResult,
)

__all__ = ["ERROR_RESPONSES", "PREDICT_PATH", "ErrorBody", "install_openapi"]


class ErrorBody(BaseModel, frozen=True, extra="forbid"):
    """Every error the gateway answers (``dlplatform.errors`` maps ``error`` back to a class)."""

    error: str = Field(description="A stable code: `not_found`, `invalid_input`, ...")
    message: str = Field(description="What went wrong, for people; 500s carry a request id.")


def _error(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    return {"model": model, "description": description}


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _error("Bad request (`bad_request`), e.g. a Host header this gateway does not serve."),
    401: _error(
        "No, unknown or revoked token (`unauthenticated`); the reply has `WWW-Authenticate: "
        "Bearer`."
    ),
    403: _error("The token's role lacks the permission (`permission_denied`)."),
    404: _error(
        "No such entity or route (`not_found`); also a dataset restricted to groups the caller "
        "is in none of (answered exactly as a missing one)."
    ),
    409: _error("It exists already, or is in the wrong state (`already_exists`, `conflict`)."),
    413: _error("The request body is over the limit (`too_large`)."),
    429: _error(
        "Too many failed authentications from this address lately (`too_many_requests`); "
        "`Retry-After` says how many seconds to wait."
    ),
    422: _error("Invalid input (`invalid_input`, `schema_mismatch`); the message names the field."),
    500: _error("Internal error; the message has a request id that is also in the server log."),
    503: _error("Ray, the metadata actor or Serve cannot be reached (`unavailable`)."),
}
"""Error responses every gateway operation documents (one body for all of them)."""

_AUTH_CODES = ("401", "403", "429")

PREDICT_PATH = f"{ROUTE_PREFIX}/{{name}}"
_PREDICT_DESCRIPTION = f"""\
Predict with a deployed model. **Served by the model's Ray Serve application**, not by the \
gateway: same host and port, outside `/api/v1` (`{ROUTE_PREFIX}/<deployment name>`).

Each row of `inputs` is checked against the served version's signature (422 says what was \
expected); more rows than the deployment's `max_rows` are 413. Concurrent requests are batched. \
Needs a token whose role has the `predict` permission, unless the deployment was made with \
`allow_anonymous` (then a request without an `Authorization` header is served). The response \
headers `X-DLP-Request-Id` and `X-Model-Version` repeat `request_id` and `version`. Send the \
true label later with `POST /api/v1/feedback` and the `request_id`.
"""


def _predict(
    name: Annotated[
        str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$", description="The deployment's name.")
    ],
    body: PredictionRequest,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> PredictionResult:
    """Never called: its signature describes ``POST /models/{name}`` to FastAPI."""
    raise NotImplementedError("POST /models/{name} is served by the model's Serve application")


def _prediction_error(description: str) -> dict[str, Any]:
    return _error(description, PredictionError)


_PREDICT_ROUTE = APIRoute(
    PREDICT_PATH,
    _predict,
    methods=["POST"],
    tags=["inference"],
    summary="Predict",
    description=_PREDICT_DESCRIPTION,
    operation_id="predict",
    responses={
        200: {
            "description": "One output per input row.",
            "headers": {
                "X-DLP-Request-Id": {"schema": {"type": "string"}},
                "X-Model-Version": {"schema": {"type": "integer"}},
            },
        },
        401: _prediction_error("No, unknown or revoked token (`unauthenticated`)."),
        403: _prediction_error("The token's role lacks `predict` (`permission_denied`)."),
        404: _prediction_error("No model is deployed under this name (`not_found`)."),
        413: _prediction_error("The body or the number of rows is over the limit (`too_large`)."),
        422: _prediction_error("Not JSON, no `inputs`, or a row not matching the signature."),
        500: _prediction_error("The prediction failed; `request_id` names it in the log."),
    },
)


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (served at ``app.openapi_url``) the document described above."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=[*app.routes, _PREDICT_ROUTE],
                tags=app.openapi_tags,
                servers=app.servers,
                separate_input_output_schemas=app.separate_input_output_schemas,
            )
            _finish(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override


def _finish(doc: dict[str, Any]) -> None:
    """Drop 401/403 where no token is asked; let the model endpoint take anonymous requests."""
    for path, operations in doc.get("paths", {}).items():
        for operation in operations.values():
            if not operation.get("security"):
                for code in _AUTH_CODES:
                    operation.get("responses", {}).pop(code, None)
            elif path == PREDICT_PATH:
                # {} = no credentials: accepted when the deployment has `allow_anonymous`
                operation["security"] = [{BEARER_SCHEME: []}, {}]
