"""The HTTP transport of the SDK and CLI: one httpx connection pool, timeouts, retries, and the
gateway's ``{"error", "message"}`` answers turned back into the platform's typed exceptions.

Retries: a request is retried (exponential backoff from ``backoff_s``, at most ``retries`` times)
when the connection could not be made, or, for idempotent requests only, when the connection broke
or a proxy answered for a gateway or model replica that is restarting: 502/503/504, or a 500 that
the platform did not write (Serve's HAProxy ingress turns its 502/503/504 into a plain-text 500;
the platform's own errors are JSON and are not retried). Idempotent means GET, HEAD, PUT, DELETE,
any request carrying an ``Idempotency-Key`` (the server honours it, e.g. dataset pushes), or a call
that says so (``idempotent=True``: predictions, see ``ServingClient.predict``). A streaming body is
re-created for each attempt from the factory given in ``body``.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from dlplatform.errors import (
    BackendUnavailable,
    DLPlatformError,
    NotFound,
    Unauthenticated,
    error_for_code,
)

T = TypeVar("T")
API_PREFIX = "/api/v1"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRY_STATUS = frozenset({502, 503, 504})
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}

BodyFactory = Callable[[], Iterable[bytes]]


def _adapter(kind: Any) -> TypeAdapter[Any]:
    adapter = _ADAPTERS.get(kind)
    if adapter is None:
        adapter = _ADAPTERS[kind] = TypeAdapter(kind)
    return adapter


def error_from_response(response: httpx.Response, what: str) -> DLPlatformError:
    """The typed error a non-2xx answer stands for, with the server's message."""
    try:
        body = json.loads(response.read() or b"null")
    except (ValueError, httpx.HTTPError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return error_for_code(body["error"], str(body.get("message", "")))
    status = response.status_code
    if status == 401:
        return Unauthenticated(f"{what}: the gateway refused the token (401)")
    if status == 404:
        return NotFound(f"{what}: not found (404); is {response.request.url.host} a dlplatform "
                        "gateway?")  # fmt: skip
    if status >= 500:
        return BackendUnavailable(f"{what}: the gateway answered {status}")
    return DLPlatformError(f"{what}: unexpected answer {status}")


class HttpClient:
    """A typed JSON client of one gateway (``url`` is its base, e.g. ``http://127.0.0.1:8000``).

    Thread-safe (httpx's pool); close it, or use it as a context manager, when done.
    """

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff_s = backoff_s
        headers = {"User-Agent": "dlplatform-client/1"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)),
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- requests ---------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        stream: bool = False,
        idempotent: bool = False,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response (streamed when ``stream``) or raise.

        ``idempotent``: the caller knows that sending the request twice is safe (else the method
        or an ``Idempotency-Key`` header decides)."""
        url = path if path.startswith("/") else f"{API_PREFIX}/{path}"
        what = f"{method} {self.url}{url}"
        idempotent = (
            idempotent or method in _IDEMPOTENT or bool(headers and "Idempotency-Key" in headers)
        )
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            request = self._http.build_request(
                method,
                url,
                params=clean,
                json=json_body,
                content=None if body is None else body(),
                headers=headers,
                timeout=httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s,
            )
            retry_reason = ""
            try:
                response = self._http.send(request, stream=stream)
            except httpx.ConnectError as exc:
                retry_reason = f"cannot reach the platform at {self.url}: {_reason(exc)}"
            except httpx.TimeoutException as exc:
                if not idempotent:
                    raise BackendUnavailable(f"{what}: no answer in time ({exc})") from None
                retry_reason = f"{what}: no answer in time"
            except httpx.TransportError as exc:
                if not idempotent:
                    raise BackendUnavailable(f"{what}: connection lost ({_reason(exc)})") from None
                retry_reason = f"{what}: connection lost ({_reason(exc)})"
            else:
                if response.is_success:
                    return response
                if not (idempotent and _from_a_proxy(response)):
                    try:
                        raise error_from_response(response, what)
                    finally:
                        response.close()
                retry_reason = f"{what}: the gateway answered {response.status_code}"
                response.close()
            if attempt >= self.retries:
                raise BackendUnavailable(retry_reason)
            time.sleep(self.backoff_s * (2**attempt))
            attempt += 1

    def call(
        self,
        method: str,
        path: str,
        kind: Any = None,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        body: BodyFactory | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        idempotent: bool = False,
    ) -> Any:
        """One JSON call; the answer is validated as ``kind`` (a model, ``list[Model]``, ...).
        ``idempotent``: safe to send twice, so retried like a GET (see the module docstring)."""
        response = self._send(
            method,
            path,
            params=params,
            json_body=_jsonable(json_body),
            body=body,
            headers=headers,
            timeout_s=timeout_s,
            idempotent=idempotent,
        )
        if kind is None or response.status_code == 204:
            return None
        try:
            return _adapter(kind).validate_json(response.content)
        except ValueError as exc:
            raise DLPlatformError(f"{method} {path}: unexpected answer ({exc})") from None

    def get(self, path: str, kind: Any, **params: Any) -> Any:
        return self.call("GET", path, kind, params=params)

    def get_all(self, path: str, item: Any, *, page_size: int, **params: Any) -> list[Any]:
        """Every item of a paginated list route (``limit``/``offset``), one page per request
        until a page comes back short; items are validated as ``item``. A gateway that answers
        more than ``page_size`` (one that does not page this route) is taken at its word."""
        items: list[Any] = []
        while True:
            page = self.get(path, list[item], limit=page_size, offset=len(items), **params)
            items.extend(page)
            if len(page) != page_size:
                return items

    def post(self, path: str, kind: Any, json_body: Any = None, **params: Any) -> Any:
        return self.call("POST", path, kind, json_body=json_body, params=params)

    def delete(self, path: str, kind: Any = None) -> Any:
        return self.call("DELETE", path, kind)

    @contextlib.contextmanager
    def stream(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
        timeout_s: float | None = None,
    ) -> Iterator[httpx.Response]:  # fmt: skip
        """A streamed 2xx response (retried like any GET until its headers arrive)."""
        response = self._send(method, path, params=params, timeout_s=timeout_s, stream=True)
        try:
            yield response
        finally:
            response.close()


def _from_a_proxy(response: httpx.Response) -> bool:
    """Whether an error answer came from a proxy whose backend is down or restarting (worth a
    retry), not from the platform: 502/503/504, or a 500 without the platform's JSON body (Serve's
    HAProxy answers its own 502/503/504 as ``500 Internal Server Error`` in plain text)."""
    if response.status_code in _RETRY_STATUS:
        return True
    content_type = response.headers.get("content-type", "")
    return response.status_code == 500 and "json" not in content_type


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_unset=False)
    return value
