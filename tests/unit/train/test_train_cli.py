"""``dlp train`` and ``dlp tune`` over HTTP (the ``cli_as`` gateway, real DuckDB, no Ray): jobs
created in the store, validation before connecting, one error line and exit 1 on failure."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from typer.testing import CliRunner, Result

from dlplatform.access import issue_token
from dlplatform.cli import app
from dlplatform.client import JobHandle
from dlplatform.context import Backend
from dlplatform.metadata import MetricPoint, Role, Run, RunStatus, User
from dlplatform.metadata.records import utcnow
from dlplatform.train.spec import JobLogs, TrainingJobSpec
from dlplatform.train.tune import build_spec

SPEC = TrainingJobSpec(dataset="digits@c-1", label="target", epochs=2)


def _run(backend: Backend, run_id: str, status: RunStatus, **fields: object) -> Run:
    run = Run(id=run_id, owner="admin", status=status, spec_json=SPEC.model_dump_json(),
              created_at=utcnow(), **fields)  # type: ignore[arg-type]  # fmt: skip
    return backend.store.create_run(run)


def _epoch(backend: Backend, run_id: str, step: int, loss: float) -> None:
    backend.store.log_metrics([MetricPoint(run_id=run_id, key=k, value=v, step=step)
                               for k, v in (("loss", loss), ("val_accuracy", 1 - loss))])  # fmt: skip


def _one_error_line(result: Result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Iterator[Callable[..., Result]]:
    runner = CliRunner(env={"COLUMNS": "250"})  # tables wide enough to show whole cells
    yield lambda *argv: runner.invoke(app, list(argv))


def test_list_status_metrics_and_logs_of_jobs_in_the_store(
    backend: Backend, dlp: Callable[..., Result]
) -> None:
    _run(backend, "run-done", RunStatus.SUCCEEDED,
         result_json=json.dumps({"model_version": "digits-mlp@1"}))  # fmt: skip
    _run(backend, "run-wait", RunStatus.QUEUED)
    _epoch(backend, "run-done", 0, 0.5)
    _epoch(backend, "run-done", 1, 0.25)

    listed = dlp("train", "list", "--json")
    assert listed.exit_code == 0, listed.output
    jobs = json.loads(listed.stdout)
    assert {j["run"]["id"] for j in jobs} == {"run-done", "run-wait"}
    queued = next(j for j in jobs if j["run"]["id"] == "run-wait")
    assert queued["queue_position"] == 1 and queued["spec"]["dataset"] == "digits@c-1"
    only = json.loads(dlp("train", "list", "--status", "succeeded", "--json").stdout)
    assert [j["run"]["id"] for j in only] == ["run-done"]
    table = dlp("train", "list")
    assert table.exit_code == 0 and "run-done" in table.stdout and "digits-mlp@1" in table.stdout

    status = dlp("train", "status", "run-done", "--json")
    assert status.exit_code == 0 and json.loads(status.stdout)["model_version"] == "digits-mlp@1"
    plain = dlp("train", "status", "run-wait")
    assert "queue: 1" in plain.stdout and "waiting_reason" in plain.stdout

    rows = json.loads(dlp("train", "metrics", "run-done", "--json").stdout)
    assert rows == [{"epoch": 0.0, "loss": 0.5, "val_accuracy": 0.5},
                    {"epoch": 1.0, "loss": 0.25, "val_accuracy": 0.75}]  # fmt: skip
    logs = dlp("train", "logs", "run-done", "--follow")
    assert logs.exit_code == 0 and logs.stdout == ""  # never started: no output, and final


def test_failures_are_one_line_and_exit_1(backend: Backend, dlp: Callable[..., Result]) -> None:
    _run(backend, "run-done", RunStatus.SUCCEEDED)
    missing = dlp("train", "status", "run-nope")
    assert missing.exit_code == 1 and "run-nope" in _one_error_line(missing)
    finished = dlp("train", "cancel", "run-done")
    assert finished.exit_code == 1 and "already finished" in _one_error_line(finished)
    bad_status = dlp("train", "list", "--status", "sleeping")
    assert bad_status.exit_code == 1 and "SLEEPING" in _one_error_line(bad_status)
    no_dataset = dlp("train", "submit", "--dataset", "nope", "--label", "y")
    assert no_dataset.exit_code == 1 and "nope" in _one_error_line(no_dataset)
    bad_param = dlp("train", "submit", "--dataset", "d", "--label", "y", "--param", "oops")
    assert bad_param.exit_code == 1
    assert _one_error_line(bad_param) == "error: --param 'oops' is not KEY=VALUE"
    usage = dlp("train", "submit", "--dataset", "d", "--label", "y", "--workers", "two")
    assert usage.exit_code == 2


def test_another_users_view_is_its_own(backend: Backend, cli_as: Callable[[str], None]) -> None:
    _run(backend, "run-done", RunStatus.SUCCEEDED)
    backend.store.create_user(User(name="vic", role=Role.VIEWER, created_at=utcnow()))
    token, _ = issue_token(backend.store, "vic")
    cli_as(token)
    runner = CliRunner()
    assert runner.invoke(app, ["train", "status", "run-done"]).exit_code == 0
    denied = runner.invoke(app, ["train", "cancel", "run-done"])
    assert denied.exit_code == 1 and "error: " in denied.output


def test_wait_prints_each_epoch_once_and_returns_the_final_job(
    backend: Backend,
    http_platform: Callable[[str], object],
    admin_token: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``submit --wait`` follows the job through the client (the submit itself needs Ray)."""
    from dlplatform.cli.train import _wait

    _run(backend, "run-1", RunStatus.QUEUED)
    script = [
        lambda: backend.store.update_run("run-1", status=RunStatus.RUNNING),
        lambda: _epoch(backend, "run-1", 0, 0.5),
        lambda: None,  # a poll without news prints nothing
        lambda: _epoch(backend, "run-1", 1, 0.25),
        lambda: backend.store.update_run(
            "run-1", status=RunStatus.SUCCEEDED,
            result_json=json.dumps({"model_version": "digits-mlp@1"}),
        ),
    ]  # fmt: skip
    original = JobHandle.status

    def scripted(self: JobHandle) -> object:
        if script:
            script.pop(0)()
        return original(self)

    monkeypatch.setattr(JobHandle, "status", scripted)
    monkeypatch.setattr("dlplatform.client.training.time.sleep", lambda _s: None)
    final = _wait(http_platform(admin_token), "run-1", SPEC.epochs)
    assert final.status == "SUCCEEDED" and final.model_version == "digits-mlp@1"
    err = capsys.readouterr().err
    assert err.count("epoch 0 ") == 1 and err.count("epoch 1 ") == 1
    assert "epoch 1 loss=0.25 val_accuracy=0.75" in err
    assert "run-1: RUNNING" in err and "run-1: SUCCEEDED" in err


def test_logs_follow_reads_from_the_offset_until_final(
    backend: Backend, dlp: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(backend, "run-1", RunStatus.RUNNING)
    chunks = {0: JobLogs(text="a\n", offset=0, next_offset=2, final=False),
              2: JobLogs(text="", offset=2, next_offset=2, final=False),
              }  # fmt: skip
    seen: list[int] = []

    def read_logs(self: JobHandle, offset: int = 0) -> JobLogs:
        seen.append(offset)
        if len(seen) == 3:
            return JobLogs(text="b\n", offset=2, next_offset=4, final=True)
        return chunks[offset]

    monkeypatch.setattr(JobHandle, "read_logs", read_logs)
    monkeypatch.setattr("dlplatform.client.training.time.sleep", lambda _s: None)
    followed = dlp("train", "logs", "run-1", "-f")
    assert followed.exit_code == 0 and followed.stdout == "a\nb\n"
    assert seen == [0, 2, 2]
    seen.clear()
    once = dlp("train", "logs", "run-1")
    assert once.stdout == "a\n" and seen == [0]


def test_tune_status_list_and_cancel(backend: Backend, dlp: Callable[..., Result]) -> None:
    spec = build_spec(training=SPEC.model_dump(), space={"lr": "uniform(0.1,0.2)"}, samples=2)
    backend.store.create_run(Run(id="run-tune1", kind="tune", owner="admin",
                                 status=RunStatus.SUCCEEDED, spec_json=spec.model_dump_json(),
                                 created_at=utcnow()))  # fmt: skip
    for i, (status, loss) in enumerate([("STOPPED", 2.0), ("SUCCEEDED", 0.5)]):
        rid = f"run-tune1.t{i}"
        backend.store.create_run(Run(id=rid, kind="trial", parent_id="run-tune1", owner="admin",
                                     status=status, created_at=utcnow()))  # fmt: skip
        backend.store.log_params(rid, {"space.lr": (0.1, 0.15)[i]})
        backend.store.log_metrics([MetricPoint(run_id=rid, key="val_loss", value=loss)])

    shown = dlp("tune", "status", "run-tune1", "--json")
    assert shown.exit_code == 0, shown.output
    assert [t["id"] for t in json.loads(shown.stdout)["trials"]] == ["run-tune1.t1", "run-tune1.t0"]
    table = dlp("tune", "status", "run-tune1")
    assert table.exit_code == 0 and "trials by val_loss (min)" in table.stdout
    assert "lr=0.15" in table.stdout and "STOPPED" in table.stdout
    listed = dlp("tune", "list", "--json")
    assert [j["run"]["id"] for j in json.loads(listed.stdout)] == ["run-tune1"]
    assert "run-tune1" in dlp("tune", "list").stdout
    finished = dlp("tune", "cancel", "run-tune1")
    assert finished.exit_code == 1 and _one_error_line(finished)
    missing = dlp("tune", "status", "run-nope")
    assert missing.exit_code == 1 and "run-nope" in _one_error_line(missing)


def test_reproduce_refuses_with_one_line(backend: Backend, dlp: Callable[..., Result]) -> None:
    """What comes back before a re-run is queued (the queued path: test_training_e2e)."""
    _run(backend, "run-live", RunStatus.RUNNING)
    result = dlp("train", "reproduce", "run-live")
    assert result.exit_code == 1
    assert "run-live is RUNNING: reproduce it once it has ended" in _one_error_line(result)
    result = dlp("train", "reproduce", "run-nope", "--wait")
    assert result.exit_code == 1 and "run-nope" in _one_error_line(result)
