"""The models list's "Latest version" column: the API sends ``latest_version``, the field the UI
reads (it read one the API never sent, so the column was always "—")."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

from fixtures_client import bearer

from dlplatform.api.ui import ASSETS_DIR
from dlplatform.context import Backend
from dlplatform.metadata import Model, ModelSummary, ModelVersion
from dlplatform.metadata.records import utcnow

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def _version(model: str) -> ModelVersion:
    return ModelVersion(
        model=model, version=0, run_id=None, artifact_sha256="0" * 64, signature_json="{}",
        created_at=utcnow(),
    )  # fmt: skip


def test_models_list_sends_each_models_latest_version(
    backend: Backend, client: TestClient, admin_token: str, http_platform: Callable[[str], Any]
) -> None:
    store = backend.store
    for _ in range(3):
        store.add_model_version(_version("three"))
    store.add_model_version(_version("one"))
    store.create_model(Model(name="empty", owner="admin", created_at=utcnow()))

    response = client.get("/api/v1/models", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    latest = {m["name"]: m["latest_version"] for m in response.json()}
    assert latest == {"empty": None, "one": 1, "three": 3}

    listed = http_platform(admin_token).models.list()  # the SDK reads the same answer
    assert all(isinstance(m, ModelSummary) for m in listed)
    assert [(m.name, m.latest_version) for m in listed] == [
        ("empty", None),
        ("one", 1),
        ("three", 3),
    ]


def test_the_ui_reads_a_field_the_models_route_documents(client: TestClient) -> None:
    """The field the page renders in "Latest version" is in GET /models' response schema."""
    source = (ASSETS_DIR / "js" / "pages" / "models.js").read_text()
    cell = re.search(r'label: "Latest version".*?render: \(m\) => (.*?)\},\n', source, re.S)
    assert cell is not None, "the models list has no Latest version column"
    read = set(re.findall(r"\bm\.([a-z_]+)", cell.group(1)))
    spec = client.get("/api/v1/openapi.json").json()
    items = spec["paths"]["/api/v1/models"]["get"]["responses"]["200"]["content"][
        "application/json"
    ]
    ref = items["schema"]["items"]["$ref"].rsplit("/", 1)[1]
    fields = set(spec["components"]["schemas"][ref]["properties"])
    assert read and read <= fields, f"the UI reads {read - fields} that GET /models does not send"
