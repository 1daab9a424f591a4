"""The web UI: static assets (HTML, ES modules, CSS) served by the gateway at ``/ui``.

The shell needs no token; every page fetches its data from ``/api/v1`` with the user's token in
the ``Authorization`` header, so the UI obeys exactly the permissions of the API. Assets ship in
the package (no build step, no network at install). Responses carry a strict Content Security
Policy: scripts, styles and data only from the gateway itself, no inline code, no framing. Images
may also come from ``blob:`` URLs: the artifacts page fetches a file with the token and shows it
from memory (an ``<img>`` could not send the token). The charts are uPlot's (MIT, vendored in
``static/vendor/uplot`` with its licence): it draws on canvas and styles through the CSSOM, which
the policy allows, and injects no script or ``<style>``.

Its Python side imports nothing of the platform (the gateway mounts it); the pages reach the
platform only through ``/api/v1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

__all__ = ["ASSETS_DIR", "CONTENT_SECURITY_POLICY", "UI_PATH", "mount_ui"]

ASSETS_DIR = Path(__file__).resolve().parent / "static"
UI_PATH = "/ui"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class _UIFiles(StaticFiles):
    """StaticFiles with the UI's security headers on every response."""

    async def get_response(self, path: str, scope: Any) -> Any:
        response = await super().get_response(path, scope)
        for name, value in _SECURITY_HEADERS.items():
            response.headers[name] = value
        return response


def mount_ui(app: FastAPI) -> None:
    """Serve the UI at ``/ui/`` and redirect ``/`` and ``/ui`` there.

    Mounted inside the app, so the gateway's middleware (Host check, body limit) applies.
    """

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    @app.get(UI_PATH, include_in_schema=False)
    def _ui_root() -> RedirectResponse:
        return RedirectResponse(f"{UI_PATH}/", status_code=307)

    app.mount(UI_PATH, _UIFiles(directory=ASSETS_DIR, html=True), name="ui")
