"""The API docs page (Swagger UI), served with its assets from the package: no CDN, no network.

FastAPI's default page loads Swagger UI from a CDN, which an air-gapped cluster cannot reach. The
page here loads ``swagger-ui-bundle.js`` and ``swagger-ui.css`` from ``<docs_url>/static/``:
the files of the npm package ``swagger-ui-dist`` 5.35.0 (Apache-2.0, ``LICENSE`` and ``NOTICE``
beside them in ``docs_static/``), copied unchanged. To upgrade, copy the same files from a newer
``npm pack swagger-ui-dist``.

The page and its assets need no token (the page asks for one with "Authorize" and keeps it in the
browser's local storage, ``persistAuthorization``). Like the web UI they carry a Content Security
Policy: everything from the gateway itself, the page's one inline script allowed by its hash,
no framing. Swagger UI's online validator badge is off (it would call an outside host).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "SWAGGER_UI_PARAMETERS", "content_security_policy", "mount_docs"]

STATIC_DIR = Path(__file__).resolve().parent / "docs_static"
SWAGGER_UI_PARAMETERS: dict[str, Any] = {
    "persistAuthorization": True,  # the token survives a reload of the page
    "validatorUrl": None,  # no badge fetched from validator.swagger.io
    "displayRequestDuration": True,
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
# Checked in headless Chromium: with this policy the page renders, "Authorize" and "Try it out"
# work, and no violation is reported (Swagger UI sets styles through the DOM, not inline).
_CSP = (
    "default-src 'none'; script-src 'self' {script_hashes}; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class _DocsFiles(StaticFiles):
    """StaticFiles that also sends the security headers (the assets are never framed or sniffed)."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        response.headers.update(_SECURITY_HEADERS)
        return response


def content_security_policy(html: str) -> str:
    """The docs page's CSP: its inline scripts are allowed by their sha256, nothing else inline."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _INLINE_SCRIPT.findall(html)
    )
    return _CSP.format(script_hashes=hashes)


def mount_docs(app: FastAPI, docs_url: str) -> None:
    """Serve the docs page at ``docs_url`` and its assets under ``<docs_url>/static/``.

    Mounted inside the app, so the gateway's middleware (Host check, body limit) applies.
    """
    static_url = f"{docs_url}/static"

    @app.get(docs_url, include_in_schema=False)
    def _docs(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}{static_url}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{static_url}/swagger-ui.css",
            swagger_favicon_url=f"{root}{static_url}/favicon-32x32.png",
            swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
        )
        html = bytes(page.body).decode()
        page.headers.update(_SECURITY_HEADERS)
        page.headers["Content-Security-Policy"] = content_security_policy(html)
        page.headers["Cache-Control"] = "no-cache"
        return page

    app.mount(static_url, _DocsFiles(directory=STATIC_DIR), name="docs-static")
