"""The web UI's static shell: served at /ui without a token, with the right types and headers."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from dlplatform.api.app import create_app
from dlplatform.api.ui import ASSETS_DIR, CONTENT_SECURITY_POLICY
from dlplatform.context import Backend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

JS_FILES = sorted(p.relative_to(ASSETS_DIR).as_posix() for p in ASSETS_DIR.rglob("*.js"))
MODULES = [name for name in JS_FILES if name.startswith("js/")]  # ours, not vendor/
UPLOT = ASSETS_DIR / "vendor" / "uplot"


def test_assets_exist_in_the_package() -> None:
    for name in ("index.html", "style.css", "js/app.js", "js/api.js", "js/dom.js", "js/charts.js"):
        assert (ASSETS_DIR / name).is_file(), name
    pages = {p.name for p in (ASSETS_DIR / "js" / "pages").glob("*.js")}
    assert {
        "datasets.js",
        "runs.js",
        "models.js",
        "lineage.js",
        "workflows.js",
        "admin.js",
    } <= pages


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/ui/", "text/html"),
        ("/ui/index.html", "text/html"),
        ("/ui/style.css", "text/css"),
        ("/ui/vendor/uplot/uPlot.min.css", "text/css"),
        *[(f"/ui/{name}", "javascript") for name in JS_FILES],
    ],
)
def test_assets_served_without_token_with_content_type(
    client: TestClient, path: str, content_type: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    assert content_type in response.headers["content-type"]
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"


def test_root_and_bare_ui_redirect_to_the_shell(client: TestClient) -> None:
    for path in ("/", "/ui"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 307
        assert response.headers["location"] == "/ui/"
    assert "<main" in client.get("/").text


def test_unknown_asset_and_traversal_are_404(client: TestClient) -> None:
    for path in (
        "/ui/nope.js",
        "/ui/../app.py",
        "/ui/%2e%2e/__init__.py",
        "/ui/js/../../__init__.py",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "mount_ui" not in response.text


def test_host_check_applies_to_the_ui(backend: Backend) -> None:
    with TestClient(create_app(backend), base_url="http://evil.example") as c:
        response = c.get("/ui/")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"


def test_every_data_call_needs_a_token(client: TestClient, admin_token: str) -> None:
    for path in ("/api/v1/whoami", "/api/v1/alerts", "/api/v1/audit"):
        assert client.get(path).status_code == 401, path
        response = client.get(path, headers={"Authorization": "Bearer dlp_wrong"})
        assert response.status_code == 401
        assert response.json()["error"] == "unauthenticated"
    ok = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {admin_token}"})
    assert ok.status_code == 200
    assert ok.json()["name"] == "admin"


def test_shell_has_no_inline_script_or_style() -> None:
    html = (ASSETS_DIR / "index.html").read_text()
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S)
    assert scripts and all(s.strip() == "" for s in scripts), "inline script in index.html"
    assert all('src="' in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert "<style" not in html and " style=" not in html
    assert re.search(r"\son[a-z]+=", html) is None, "inline event handler in index.html"


@pytest.mark.parametrize("name", JS_FILES)
def test_scripts_never_render_data_as_html(name: str) -> None:
    source = (ASSETS_DIR / name).read_text()
    for sink in (
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
    ):
        assert sink not in source, f"{name} uses {sink}"
    assert "localStorage" not in source and "document.cookie" not in source, name


def test_token_lives_in_session_storage_only() -> None:
    api = (ASSETS_DIR / "js" / "api.js").read_text()
    assert "sessionStorage" in api
    assert 'credentials: "omit"' in api
    assert "Authorization" in api


def test_stylesheet_has_focus_styles_and_a_narrow_layout() -> None:
    css = (ASSETS_DIR / "style.css").read_text()
    assert ":focus-visible" in css
    assert "@media (max-width" in css


def test_assets_are_package_data() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[4] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["package-data"]["dlplatform"]
    assert "api/ui/**/*" in data


def test_uplot_is_vendored_with_its_licence_and_loaded_by_the_shell() -> None:
    for name in ("uPlot.iife.min.js", "uPlot.min.css", "LICENSE", "NOTICE"):
        assert (UPLOT / name).is_file(), name
    assert "MIT License" in (UPLOT / "LICENSE").read_text()
    html = (ASSETS_DIR / "index.html").read_text()
    # a classic deferred script runs before the (deferred) app module: the global is there
    assert html.index('src="vendor/uplot/uPlot.iife.min.js" defer') < html.index('src="js/app.js"')
    assert 'href="vendor/uplot/uPlot.min.css"' in html


def test_policy_allows_blob_images_only() -> None:
    """The artifacts page shows images it fetched with the token from blob: URLs; scripts,
    styles and connections stay same-origin."""
    directives = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    for name in ("script-src", "style-src", "connect-src", "default-src"):
        assert "blob:" not in directives[name] and "unsafe" not in directives[name], name


_IMPORT = re.compile(r'import\s+(?:\{([^}]*)\}|\*\s+as\s+\w+)\s+from\s+"([^"]+)"')
_EXPORT = re.compile(r"export\s+(?:async\s+)?(?:function|const|let|class)\s+(\w+)")


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_resolve_to_exported_names(name: str) -> None:
    """Each ``import {a, b} from "./x.js"`` names a file that exists and exports a and b (no
    browser needed to catch a typo that would break every page)."""
    source = (ASSETS_DIR / name).read_text()
    for names, target in _IMPORT.findall(source):
        path = ((ASSETS_DIR / name).parent / target).resolve()
        assert path.is_file() and path.is_relative_to(ASSETS_DIR), f"{name}: {target}"
        exported = set(_EXPORT.findall(path.read_text()))
        wanted = {n.split(" as ")[0].strip() for n in names.split(",") if n.strip()}
        assert wanted <= exported, f"{name} imports {wanted - exported} that {target} lacks"
