"""Box A, the HTTP gateway: the FastAPI app at ``API_PREFIX`` (``/api/v1``: routes, bearer auth,
error mapping, OpenAPI docs, the web UI), built by ``create_app(backend)`` and deployed as the
Ray Serve app ``dlp-gateway`` by ``deploy_gateway(settings)``.

An adapter: it may import every component's public API, ``models``, ``metadata``, ``access``,
``context``, ``config`` and ``errors``; no component imports it (``dlp up`` deploys it).
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.api.app import API_PREFIX, create_app
    from dlplatform.api.gateway import deploy_gateway

# Loaded on first use (see dlplatform._lazy): FastAPI and the routes only when the app is built.
_EXPORTS = {
    "API_PREFIX": "dlplatform.api.app",
    "create_app": "dlplatform.api.app",
    "deploy_gateway": "dlplatform.api.gateway",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["API_PREFIX", "create_app", "deploy_gateway"]
