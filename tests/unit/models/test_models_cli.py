"""``dlp models`` over HTTP (the ``cli_as`` gateway, real DuckDB, no Ray or torch): versions
registered in the store, shown, promoted and their alias history."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner, Result

from dlplatform.access import issue_token
from dlplatform.cli import app
from dlplatform.context import Backend
from dlplatform.metadata import ModelVersion, Role, User
from dlplatform.metadata.records import utcnow


def _add_version(backend: Backend, model: str, accuracy: float) -> ModelVersion:
    return backend.store.add_model_version(
        ModelVersion(model=model, version=0, run_id=None, artifact_sha256="0" * 64,
                     signature_json="{}", metrics_json=json.dumps({"val_accuracy": accuracy}),
                     dataset_commit="c-abc", created_at=utcnow()),
        owner="admin",
    )  # fmt: skip


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner(env={"COLUMNS": "250"})
    yield lambda *argv: runner.invoke(app, list(argv))


def test_list_show_promote_and_history(backend: Backend, dlp: Callable[..., Result]) -> None:
    assert dlp("models", "list").stdout.strip() == "no models"
    _add_version(backend, "digits-mlp", 0.8)
    _add_version(backend, "digits-mlp", 0.9)

    models = json.loads(dlp("models", "list", "--json").stdout)
    assert [(m["name"], m["owner"]) for m in models] == [("digits-mlp", "admin")]
    table = dlp("models", "show", "digits-mlp")
    assert table.exit_code == 0 and "0.9" in table.stdout and "c-abc" in table.stdout
    versions = json.loads(dlp("models", "show", "digits-mlp", "--json").stdout)
    assert [v["version"] for v in versions] == [2, 1]  # newest first

    first = dlp("models", "promote", "digits-mlp", "1", "--alias", "production")
    assert first.exit_code == 0, first.output
    assert first.stdout.strip() == "digits-mlp: production -> version 1"
    moved = dlp("models", "promote", "digits-mlp", "2", "--alias", "production")
    assert moved.stdout.strip() == "digits-mlp: production -> version 2 (was 1)"
    copied = dlp("models", "promote", "digits-mlp", "production", "--alias", "staging", "--json")
    assert copied.exit_code == 0 and json.loads(copied.stdout)["version"] == 2

    one = json.loads(dlp("models", "show", "digits-mlp@production", "--json").stdout)
    assert one["version"] == 2 and set(one["aliases"]) == {"production", "staging"}
    assert json.loads(dlp("models", "show", "digits-mlp@1", "--json").stdout)["aliases"] == []
    history = json.loads(dlp("models", "history", "digits-mlp", "--json").stdout)
    assert [(e["alias"], e["version"], e["previous_version"]) for e in history] == [
        ("production", 1, None),
        ("production", 2, 1),
        ("staging", 2, None),
    ]
    assert "production" in dlp("models", "history", "digits-mlp").stdout


def test_missing_models_and_denied_promotions_are_one_line(
    backend: Backend, dlp: Callable[..., Result], cli_as: Callable[[str], None]
) -> None:
    _add_version(backend, "digits-mlp", 0.8)
    for argv in (
        ("models", "show", "nope"),
        ("models", "show", "digits-mlp@7"),
        ("models", "promote", "digits-mlp", "7", "--alias", "production"),
        ("models", "promote", "digits-mlp", "0", "--alias", "production"),
    ):
        result = dlp(*argv)
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert result.exit_code == 1 and len(lines) == 1, (argv, result.output)
        assert lines[0].startswith("error: ")
    assert dlp("models", "promote", "digits-mlp", "1").exit_code == 2  # --alias is required

    backend.store.create_user(User(name="vic", role=Role.VIEWER, created_at=utcnow()))
    cli_as(issue_token(backend.store, "vic")[0])
    assert dlp("models", "show", "digits-mlp@1").exit_code == 0
    denied = dlp("models", "promote", "digits-mlp", "1", "--alias", "production")
    assert denied.exit_code == 1 and denied.output.startswith("error: ")
