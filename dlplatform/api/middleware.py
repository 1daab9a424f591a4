"""ASGI middleware of the gateway: Host check, body size limits, and the last-resort 500.

The last-resort 500 (``CatchAllMiddleware``) also catches what is not an ``Exception``: code a
route calls may raise ``SystemExit`` or ``KeyboardInterrupt`` (an imported module calling
``sys.exit()``), and asyncio lets those end the event loop, so one request would stop the gateway
for good. Only cancellation (``asyncio.CancelledError``: a client went away, shutdown) and
``GeneratorExit`` pass through.

They are plain ASGI (not ``BaseHTTPMiddleware``) so that a request can be refused before its
body is read: a too-large ``Content-Length`` is answered 413 without touching the body, and a
chunked body is counted while the route reads it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException

from dlplatform.hosts import AllowedHosts

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
OnFailure = Callable[[Scope, str, BaseException], Awaitable[None]]

log = logging.getLogger("dlplatform.api")


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer with the gateway's JSON error body."""
    body = json.dumps({"error": code, "message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's ``Authorization: Bearer`` header, if any."""
    scheme, _, token = (_header(scope, b"authorization") or "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


class HostCheckMiddleware:
    """Reject requests whose Host header is not one of the configured names (DNS rebinding;
    ``dlplatform.hosts`` holds the rule, which the model endpoints apply too)."""

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.hosts = AllowedHosts(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.hosts.any_host:
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if not self.hosts.allows(host):
            await send_error(send, 400, "bad_request", self.hosts.refusal(host))
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class BodyLimit:
    """A larger (or smaller) body limit for requests of ``method`` whose path matches."""

    method: str
    path: re.Pattern[str]
    limit_bytes: int


class BodyLimitMiddleware:
    """413 for request bodies over the limit, before they are read into memory."""

    def __init__(self, app: ASGIApp, default_bytes: int, limits: list[BodyLimit]) -> None:
        self.app = app
        self.default_bytes = default_bytes
        self.limits = limits

    def limit_for(self, method: str, path: str) -> int:
        for rule in self.limits:
            if rule.method == method and rule.path.search(path):
                return rule.limit_bytes
        return self.default_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("method", "GET"), scope.get("path", ""))
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                await send_error(send, 400, "bad_request", "invalid Content-Length header")
                return
            if size > limit:
                await send_error(
                    send, 413, "too_large", f"request body of {size} bytes exceeds {limit} bytes"
                )
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # HTTPException passes FastAPI's body parsing unchanged (others become 400)
                    raise HTTPException(413, f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, counting_receive, send)


class CatchAllMiddleware:
    """Any exception that escaped the routes becomes a 500 with a request id (logged here),
    ``SystemExit`` and ``KeyboardInterrupt`` raised by called code included (see the module
    docstring).

    The response carries only the id; the traceback goes to the server log under the same id.
    ``on_failure(scope, request_id, exc)`` is awaited afterwards (the app audits the failure);
    its own errors are logged, never raised.
    """

    def __init__(self, app: ASGIApp, on_failure: OnFailure | None = None) -> None:
        self.app = app
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:  # SystemExit must not end the event loop
            request_id = uuid.uuid4().hex[:12]
            log.error("request %s (%s %s) failed: %s", request_id, scope.get("method"),
                      scope.get("path"), type(exc).__name__, exc_info=exc)  # fmt: skip
            if not started:
                await send_error(send, 500, "internal", f"internal error (request id {request_id})")
            if self.on_failure is not None:
                try:
                    await self.on_failure(scope, request_id, exc)
                except Exception:
                    log.exception("request %s: recording the failure failed", request_id)
