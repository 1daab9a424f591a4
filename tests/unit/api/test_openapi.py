"""The OpenAPI document and the offline docs page, from the in-process app (real DuckDB store)."""

from __future__ import annotations

import base64
import hashlib
import re
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.api.docs import STATIC_DIR
from dlplatform.context import Backend

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

BASE = "http://127.0.0.1:8000"
DOCS = f"{API_PREFIX}/docs"
OPENAPI = f"{API_PREFIX}/openapi.json"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
WITHOUT_TOKEN = {("get", f"{API_PREFIX}/healthz")}
ERROR_CODES = ("400", "401", "403", "404", "409", "413", "422")
BINARY = {"type": "string", "format": "binary"}
# Datasets routes (edited elsewhere) allowed to lack a response model, each reported to its owner.
DATASETS_WITHOUT_MODEL: set[tuple[str, str]] = set()


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    with TestClient(create_app(backend), base_url=BASE, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def doc(client: TestClient) -> dict[str, Any]:
    reply = client.get(OPENAPI)
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method, path, operation


def _schema_of(response: dict[str, Any]) -> Any:
    return response.get("content", {}).get("application/json", {}).get("schema")


def _is_model(schema: Any) -> bool:
    """A pydantic model or a list of them: not ``{}``, not a free-form ``dict``."""
    if not isinstance(schema, dict):
        return False
    if schema.get("type") == "array":
        return _is_model(schema.get("items"))
    return "$ref" in schema


def _is_typed(content: dict[str, Any]) -> bool:
    """JSON is a model (or a list of them), or bytes the route declares as sent as stored (a
    workflow step's output); other media types (Arrow, Parquet) only need to be declared."""
    if not content:
        return False
    if "application/json" in content:
        schema = content["application/json"].get("schema")
        return _is_model(schema) or schema == BINARY  # FastAPI never infers BINARY by itself
    return True  # OpenAPI 3.1: binary content may omit its schema


def test_bearer_scheme_is_declared(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"


def test_every_operation_but_healthz_asks_for_the_token(doc: dict[str, Any]) -> None:
    open_ops = {(m, p) for m, p, op in _operations(doc) if not op.get("security")}
    assert open_ops == WITHOUT_TOKEN
    for method, path, op in _operations(doc):
        if (method, path) not in WITHOUT_TOKEN:
            assert {"bearerAuth": []} in op["security"], (method, path)
    docs_paths = [p for p in doc["paths"] if p.startswith((DOCS, OPENAPI))]
    assert docs_paths == []


def test_every_success_response_has_a_schema(doc: dict[str, Any]) -> None:
    offenders = []
    for method, path, op in _operations(doc):
        success = {code: r for code, r in op["responses"].items() if code.startswith("2")}
        if set(success) == {"204"}:
            assert _schema_of(success["204"]) is None, (method, path)
            continue
        bodies = [r.get("content", {}) for code, r in success.items() if code in ("200", "201")]
        if not bodies or not all(_is_typed(content) for content in bodies):
            offenders.append(f"{method.upper()} {path}")
    listed = {f"{m.upper()} {p}" for m, p in DATASETS_WITHOUT_MODEL}
    unexpected = sorted(set(offenders) - listed)
    assert not unexpected, f"operations without a response model: {unexpected}"


def test_errors_are_documented_with_the_error_body(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "message"}
    assert "HTTPValidationError" not in schemas  # FastAPI's 422 shape is never sent
    missing = []
    for method, path, op in _operations(doc):
        ref = "PredictionError" if path == "/models/{name}" else "ErrorBody"
        for code in ERROR_CODES:
            if code in ("400", "409") and ref == "PredictionError":
                continue  # the model endpoint answers neither
            if code in ("401", "403") and not op.get("security"):
                assert code not in op["responses"], (method, path, code)
                continue
            response = op["responses"].get(code)
            if response is None or _schema_of(response) != {"$ref": f"#/components/schemas/{ref}"}:
                missing.append(f"{method.upper()} {path} {code}")
    assert missing == []


def test_inference_endpoint_is_described_but_served_by_serve(
    client: TestClient, doc: dict[str, Any]
) -> None:
    op = doc["paths"]["/models/{name}"]["post"]
    assert "Ray Serve" in op["description"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PredictionRequest"}
    assert _schema_of(op["responses"]["200"]) == {"$ref": "#/components/schemas/PredictionResult"}
    assert op["security"] == [{"bearerAuth": []}, {}]  # {}: deployments with allow_anonymous
    schemas = doc["components"]["schemas"]
    assert schemas["PredictionRequest"]["required"] == ["inputs"]
    assert set(schemas["PredictionResult"]["properties"]) == {
        "outputs",
        "model",
        "version",
        "request_id",
    }
    # not a gateway route: the gateway itself does not answer it
    assert client.post("/models/m", json={"inputs": [[1.0]]}).status_code == 404


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)


def test_docs_page_loads_only_local_assets_without_a_token(client: TestClient) -> None:
    page = client.get(DOCS)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert f"url: '{OPENAPI}'" in html
    assert '"persistAuthorization": true' in html and '"validatorUrl": null' in html
    urls = _asset_urls(html)
    assert len(urls) == 3, urls
    types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in urls:
        assert url.startswith(f"{DOCS}/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert types[url[url.rindex(".") :]] in asset.headers["content-type"], url
        assert asset.headers["x-content-type-options"] == "nosniff"
    assert client.get(OPENAPI).status_code == 200  # the page fetches it without a token


def test_docs_page_csp_allows_exactly_its_inline_script(client: TestClient) -> None:
    page = client.get(DOCS)
    csp = page.headers["content-security-policy"]
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert len(inline) == 1
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in csp
    assert "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-eval" not in csp and page.headers["x-frame-options"] == "DENY"


def test_docs_page_and_assets_pass_the_host_check(client: TestClient) -> None:
    for path in (DOCS, f"{DOCS}/static/swagger-ui.css", OPENAPI):
        reply = client.get(path, headers={"Host": "evil.example"})
        assert reply.status_code == 400 and reply.json()["error"] == "bad_request", path


def test_unknown_asset_and_traversal_are_404(client: TestClient) -> None:
    for path in ("nope.js", "../app.py", "%2e%2e/app.py"):
        reply = client.get(f"{DOCS}/static/{path}")
        assert reply.status_code == 404, path
        assert "mount_docs" not in reply.text


def test_vendored_assets_ship_with_their_license() -> None:
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "NOTICE"):
        assert (STATIC_DIR / name).is_file(), name
    assert "Apache License" in (STATIC_DIR / "LICENSE").read_text()


def test_authorize_sends_the_bearer_header_that_the_routes_accept(
    client: TestClient, doc: dict[str, Any], admin_token: str
) -> None:
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    # what Swagger UI sends for an http scheme: "<Scheme> <value>" in the Authorization header
    header = {"Authorization": f"{scheme['scheme'].capitalize()} {admin_token}"}
    assert client.get(f"{API_PREFIX}/whoami", headers=header).json()["name"] == "admin"
    refused = client.get(f"{API_PREFIX}/whoami")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert refused.json() == {"error": "unauthenticated", "message": "missing bearer token"}
