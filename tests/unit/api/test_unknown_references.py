"""Unknown entities are errors everywhere: every GET route with an entity in its path, taken
from the app's own OpenAPI document (so a new route is covered the day it is added), answers a
reference to nothing with 404 (or 422 for a malformed one), never an empty result."""

from __future__ import annotations

import re

from fixtures_client import bearer
from starlette.testclient import TestClient

# A well-formed reference to nothing for each kind of path parameter.
_NOTHING = {"version": "7", "sha256": "0" * 64, "kind": "dataset"}


def test_every_get_route_with_a_path_entity_is_404_for_an_unknown_one(
    client: TestClient, admin_token: str
) -> None:
    routes = [path for path, ops in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
              if "get" in ops and "{" in path]  # fmt: skip
    assert len(routes) > 15
    answers = {}
    for path in routes:
        url = re.sub(r"\{([^}]+)\}", lambda m: _NOTHING.get(m.group(1), "nosuch-1"), path)
        answers[path] = client.get(url, headers=bearer(admin_token)).status_code
    assert {path: code for path, code in answers.items() if code not in (404, 422)} == {}
    assert list(answers.values()).count(404) > 15
