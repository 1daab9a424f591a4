"""Property-based requests from the OpenAPI document (schemathesis): no input gives a 5xx.

Runs the real gateway app in-process over a real DuckDB store, with a valid admin token, and a
bounded number of examples per operation. Every route any component adds is covered automatically.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from dlplatform.api.app import API_PREFIX, create_app
from dlplatform.context import Backend

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25


@pytest.fixture
def api_schema(backend: Backend) -> Any:
    # schemathesis's in-process client sends `Host: testserver`: allow it for this app only.
    settings = backend.settings.model_copy(update={"allowed_hosts": ["127.0.0.1", "testserver"]})
    app = create_app(Backend(store=backend.store, artifacts=backend.artifacts, settings=settings))
    return schemathesis.openapi.from_asgi(f"{API_PREFIX}/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_error_for_any_generated_request(case: Any, admin_token: str) -> None:
    response = case.call(headers={"Authorization": f"Bearer {admin_token}"})
    assert b"Traceback" not in response.content  # bodies may be binary (Arrow, zip)
    case.validate_response(response, checks=[not_a_server_error])
