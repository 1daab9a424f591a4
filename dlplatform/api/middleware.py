"""ASGI middleware of the gateway: Host check, body size limits, and the last-resort 500.

They are plain ASGI (not ``BaseHTTPMiddleware``) so that a request can be refused before its
body is read: a too-large ``Content-Length`` is answered 413 without touching the body, and a
chunked body is counted while the route reads it.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from starlette.exceptions import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

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


def _split_host(value: str) -> str:
    value = value.strip().lower()
    if value.startswith("["):  # [::1]:8000
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return name
    return value


class HostCheckMiddleware:
    """Reject requests whose Host header is not one of the configured names (DNS rebinding).

    A page on ``evil.example`` that resolves its name to 127.0.0.1 still sends
    ``Host: evil.example``; answering only the configured names closes that door on every verb.
    """

    def __init__(self, app: ASGIApp, allowed_hosts: list[str]) -> None:
        self.app = app
        self.allowed = frozenset(h.strip().lower() for h in allowed_hosts)
        self.any_host = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any_host:
            await self.app(scope, receive, send)
            return
        host = _header(scope, b"host")
        if host is None or _split_host(host) not in self.allowed:
            shown = (host or "")[:80]
            await send_error(send, 400, "bad_request", f"host {shown!r} is not served here")
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
    """Any exception that escaped the routes becomes a 500 with a request id (logged here).

    The response carries only the id; the traceback goes to the server log under the same id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        except Exception as exc:
            request_id = uuid.uuid4().hex[:12]
            log.error("request %s (%s %s) failed", request_id, scope.get("method"),
                      scope.get("path"), exc_info=exc)  # fmt: skip
            if not started:
                await send_error(send, 500, "internal", f"internal error (request id {request_id})")
