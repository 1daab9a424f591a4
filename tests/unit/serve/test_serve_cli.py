"""``dlp serve`` over HTTP (the ``cli_as`` gateway, real DuckDB, no Ray): option and split
validation before connecting, what travels to the gateway, one error line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dlplatform import serve
from dlplatform.access import Principal
from dlplatform.cli import app
from dlplatform.context import Backend
from dlplatform.metadata import Deployment
from dlplatform.metadata.records import utcnow
from dlplatform.serve.spec import DeploymentInfo, DeploymentSpec


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner(env={"COLUMNS": "250"})
    yield lambda *argv: runner.invoke(app, list(argv))


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (["3=abc"], "use VERSION=WEIGHT"),
        (["3"], "use VERSION=WEIGHT"),
        (["3=90", "4=20"], "must sum to 100, got 110"),
        (["0=100"], "version 0 must be >= 1"),
        (["3=101"], "must be 0-100"),
    ],
)
def test_a_bad_split_fails_before_connecting(
    tmp_path: Path, split: list[str], message: str
) -> None:
    env = {"DLP_TOKEN": "", "DLP_URL": "", "DLP_HOME": str(tmp_path)}  # nothing runs here
    result = CliRunner().invoke(app, ["serve", "traffic", "m", *split], env=env)
    assert message in _one_error_line(result)


def test_bad_deploy_options_fail_before_connecting(tmp_path: Path) -> None:
    env = {"DLP_TOKEN": "", "DLP_URL": "", "DLP_HOME": str(tmp_path)}
    runner = CliRunner()
    both = runner.invoke(app, ["serve", "deploy", "m", "--max-rows", "0", "--max-batch-size", "0"],
                         env=env)  # fmt: skip
    line = _one_error_line(both)
    assert "max_rows:" in line and "max_batch_size:" in line
    assert runner.invoke(app, ["serve", "deploy", "m", "--max-rows", "x"], env=env).exit_code == 2


def test_deploy_sends_the_ref_and_options(
    dlp: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the gateway's deploy receives (the deploy itself needs Ray Serve)."""
    calls: list[tuple[str, DeploymentSpec]] = []

    def fake_deploy(
        backend: Backend, principal: Principal, ref: str, spec: DeploymentSpec
    ) -> DeploymentInfo:
        calls.append((ref, spec))
        now = utcnow()
        record = Deployment(name="digits-mlp", model="digits-mlp", version=3,
                            config_json=spec.model_dump_json(), traffic_json='{"3": 100}',
                            status="RUNNING", created_by=principal.name, created_at=now,
                            updated_at=now)  # fmt: skip
        return DeploymentInfo.of(record)

    monkeypatch.setattr(serve, "deploy", fake_deploy)
    done = dlp("serve", "deploy", "digits-mlp@production", "--min-replicas", "2", "--shared")
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == (
        "digits-mlp: version 3 serving at POST /models/digits-mlp (RUNNING)"
    )
    ref, spec = calls[0]
    assert ref == "digits-mlp@production"
    assert (spec.min_replicas, spec.max_replicas, spec.shared) == (2, 2, True)
    as_json = dlp("serve", "deploy", "digits-mlp", "--allow-anonymous", "--json")
    assert json.loads(as_json.stdout)["config"]["allow_anonymous"] is True
    assert calls[1][0] == "digits-mlp" and calls[1][1].allow_anonymous


def test_list_undeploy_and_traffic_answer_from_the_store(
    backend: Backend, dlp: Callable[..., Result]
) -> None:
    assert dlp("serve", "list").stdout.strip() == "no deployments"
    assert json.loads(dlp("serve", "list", "--json").stdout) == []
    assert "does not exist" in _one_error_line(dlp("serve", "undeploy", "nope"))
    assert "does not exist" in _one_error_line(dlp("serve", "traffic", "nope", "1=100"))
    now = utcnow()
    backend.store.put_deployment(
        Deployment(
            name="m",
            model="m",
            version=1,
            created_by="admin",
            created_at=now,
            updated_at=now + timedelta(seconds=1),
        )
    )
    # the deployment exists; its version does not: the gateway's answer, as one line
    assert "error: " in _one_error_line(dlp("serve", "traffic", "m", "1=50", "2=50"))
