"""The workflow registry (issue #18, finding 2): a run names a registered workflow and nothing
named in a request is imported; admins register factories through the API, the SDK and the CLI;
the manager's import of a factory turns whatever it raises into a clear reason."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from dlplatform.access import Principal
from dlplatform.cli import app
from dlplatform.context import Backend
from dlplatform.errors import (
    AlreadyExists,
    BackendUnavailable,
    Conflict,
    InvalidInput,
    NotFound,
    PermissionDenied,
)
from dlplatform.metadata import Role
from dlplatform.workflows import (
    WorkflowRegistrationRequest,
    list_registered_workflows,
    register_workflow,
    registry,
    run_workflow,
    unregister_workflow,
)
from dlplatform.workflows import dag as dag_module
from dlplatform.workflows.dag import FactoryUnavailable, load_factory

# A module whose import ends the process (``python -m venv`` without arguments: usage, exit 2).
EXITS_ON_IMPORT = "venv.__main__:x"
SCIENTIST = Principal(name="sam", role=Role.DATA_SCIENTIST)


@pytest.fixture
def no_factory_imports(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a factory is imported (the gateway's side of the trust boundary)."""

    def refuse(path: str) -> Any:
        raise AssertionError(f"imported {path} while handling a request")

    monkeypatch.setattr(dag_module, "load_factory", refuse)
    monkeypatch.setattr("dlplatform.workflows.service.load_factory", refuse, raising=False)


def test_unknown_names_get_one_answer_and_nothing_is_imported(
    backend: Backend, admin: Principal, no_factory_imports: None
) -> None:
    assert "venv.__main__" not in sys.modules
    messages = []
    for ref in (EXITS_ON_IMPORT, "no_such_module_q1:f", "json:dumps", "os:system", "churn"):
        with pytest.raises(InvalidInput) as info:
            run_workflow(backend, admin, ref)
        messages.append(info.value.message.replace(repr(ref), "REF"))
    assert len(set(messages)) == 1, messages  # the same whether the module exists or not
    assert "REF is not registered" in messages[0]
    assert "venv.__main__" not in sys.modules


def test_the_gateway_imports_nothing_a_request_names(
    gateway_transport: httpx.BaseTransport, admin_token: str
) -> None:
    """The reported request: it raised SystemExit inside the gateway and /healthz died."""
    with httpx.Client(transport=gateway_transport, base_url="http://127.0.0.1:8000") as http:
        auth = {"Authorization": f"Bearer {admin_token}"}
        replies = [
            http.post("/api/v1/workflows/runs", json={"workflow": ref}, headers=auth)
            for ref in (EXITS_ON_IMPORT, "no_such_module_q1:x")
        ]
        assert [r.status_code for r in replies] == [422, 422]
        assert "is not registered" in replies[0].json()["message"]
        assert "venv.__main__" not in sys.modules
        trigger = {"workflow": EXITS_ON_IMPORT, "cron": "* * * * *"}
        reply = http.post("/api/v1/workflows/triggers", json=trigger, headers=auth)
        assert reply.status_code == 422 and "is not registered" in reply.json()["message"]
        assert http.get("/api/v1/healthz").status_code == 200
    assert "venv.__main__" not in sys.modules


def test_builtins_and_their_old_paths_resolve_without_an_import(
    backend: Backend, admin: Principal, no_factory_imports: None
) -> None:
    store = backend.store
    for ref in ("train_and_deploy", "dlplatform.workflows.pipelines:train_and_deploy"):
        found = registry.resolve(store, ref)
        assert (found.name, found.source) == ("train_and_deploy", "builtin")
        # resolution passes; starting needs the manager on the cluster
        with pytest.raises(BackendUnavailable):
            run_workflow(backend, admin, ref, {"dataset": "d", "commit": "c", "label": "y"})
    names = {r.name for r in list_registered_workflows(backend, admin)}
    assert {"train_and_deploy", "monitor", "quality_check"} <= names


def test_admins_register_and_unregister_factories(backend: Backend, admin: Principal) -> None:
    request = WorkflowRegistrationRequest(
        name="churn", target="my_pkg.flows:churn", description="weekly churn model"
    )
    with pytest.raises(PermissionDenied, match="not admin"):
        register_workflow(backend, SCIENTIST, request)
    created = register_workflow(backend, admin, request)
    assert (created.source, created.registered_by) == ("admin", admin.name)
    assert registry.resolve(backend.store, "churn").target == "my_pkg.flows:churn"
    assert registry.resolve(backend.store, "my_pkg.flows:churn").name == "churn"  # alias
    listed = {r.name: r for r in list_registered_workflows(backend, SCIENTIST)}
    assert listed["churn"].description == "weekly churn model"
    with pytest.raises(AlreadyExists):
        register_workflow(backend, admin, request)
    with pytest.raises(AlreadyExists, match="built in"):
        register_workflow(
            backend, admin, WorkflowRegistrationRequest(name="monitor", target="x.y:monitor")
        )
    with pytest.raises(Conflict, match="built in"):
        unregister_workflow(backend, admin, "monitor")
    with pytest.raises(PermissionDenied):
        unregister_workflow(backend, SCIENTIST, "churn")
    unregister_workflow(backend, admin, "churn")
    with pytest.raises(NotFound):
        unregister_workflow(backend, admin, "churn")
    with pytest.raises(InvalidInput, match="not registered"):
        registry.resolve(backend.store, "churn")
    audit = backend.store.list_audit(actor=admin.name)
    assert {"workflow.register", "workflow.unregister"} <= {a.action for a in audit}
    denied = backend.store.list_audit(actor=SCIENTIST.name, outcome="denied")
    assert {a.action for a in denied} == {"workflow.register", "workflow.unregister"}


def test_entry_points_are_read_from_package_metadata(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, no_factory_imports: None
) -> None:
    group = registry.ENTRY_POINT_GROUP
    points = [
        EntryPoint(name="ep_flow", value="some_pkg.flows:ep_flow", group=group),
        EntryPoint(name="Bad Name", value="some_pkg.flows:x", group=group),
        EntryPoint(name="bad_target", value="some_pkg/flows", group=group),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: points)
    found = registry.resolve(backend.store, "ep_flow")
    assert (found.source, found.target) == ("entry_point", "some_pkg.flows:ep_flow")
    names = {r.name for r in registry.list_registrations(backend.store)}
    assert "ep_flow" in names and "bad_target" not in names
    with pytest.raises(InvalidInput, match="not registered"):
        registry.resolve(backend.store, "bad_target")


def test_a_factory_whose_import_exits_is_a_clear_reason_not_an_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the manager imports may raise anything; the run fails with the reason instead."""
    (tmp_path / "dlp_exits_on_import.py").write_text("import sys\nsys.exit(3)\n")
    (tmp_path / "dlp_interrupts_on_import.py").write_text("raise KeyboardInterrupt\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(FactoryUnavailable, match=r"cannot import module .*SystemExit: 3"):
        load_factory("dlp_exits_on_import:flow")
    with pytest.raises(FactoryUnavailable, match="KeyboardInterrupt"):
        load_factory("dlp_interrupts_on_import:flow")
    with pytest.raises(FactoryUnavailable, match="not a workflow factory"):
        load_factory("os:system")


# --- over HTTP and the CLI (the ``cli_as`` gateway, real DuckDB) -----------------------------


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner(env={"COLUMNS": "250"})
    yield lambda *argv: runner.invoke(app, list(argv))


def test_register_list_and_unregister_with_the_cli(
    backend: Backend,
    dlp: Callable[..., Result],
    cli_as: Callable[[str], None],
    http_platform: Callable[[str], Any],
) -> None:
    created = dlp("workflows", "register", "churn", "my_pkg.flows:churn", "--description", "w",
                  "--json")  # fmt: skip
    assert created.exit_code == 0, created.output
    assert json.loads(created.stdout)["registered_by"] == "admin"
    listed = json.loads(dlp("workflows", "registered", "--json").stdout)
    assert {r["name"]: r["source"] for r in listed}["churn"] == "admin"
    assert "my_pkg.flows:churn" in dlp("workflows", "registered").stdout
    bad = dlp("workflows", "register", "churn2", "my_pkg/flows")
    assert bad.exit_code == 1 and "MODULE:FACTORY" in bad.output
    taken = dlp("workflows", "register", "churn", "my_pkg.flows:churn")
    assert taken.exit_code == 1 and "exists already" in taken.output

    from dlplatform import access
    from dlplatform.access import UserSpec

    sam = access.create_user(backend, access.SYSTEM, UserSpec(name="sam", role=Role.DATA_SCIENTIST))
    cli_as(sam.token)
    refused = dlp("workflows", "register", "mine", "my_pkg.flows:mine")
    assert refused.exit_code == 1 and "not admin" in refused.output
    assert dlp("workflows", "unregister", "churn").exit_code == 1
    assert "churn" in dlp("workflows", "registered").stdout  # viewing needs workflow.view only
    with pytest.raises(PermissionDenied):
        http_platform(sam.token).workflows.register("mine", "my_pkg.flows:mine")

    cli_as(access.issue_token(backend.store, "admin")[0])
    gone = dlp("workflows", "unregister", "churn")
    assert gone.exit_code == 0 and gone.stdout.strip() == "unregistered churn"
    assert "not registered" in dlp("workflows", "unregister", "churn").output
    assert "built in" in dlp("workflows", "unregister", "monitor").output
