"""What ``dlp`` prints: ``--json`` on every command, tables that keep ids whole at 80 columns,
wide samples, human units, compare/artifact/download commands, and no Ray or Serve log lines.
Platform commands run in-process against the real gateway app and DuckDB (``cli_as``)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner, Result

from dlplatform import data
from dlplatform.access import SYSTEM
from dlplatform.cli import _common, app
from dlplatform.cli.system import human_resources
from dlplatform.client import JobHandle
from dlplatform.context import Backend
from dlplatform.metadata import ModelVersion, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train.spec import JobLogs

# Commands where --json would make no sense. Empty today: every command takes it. A command added
# here must exist (checked below), so the list cannot go stale.
WITHOUT_JSON: frozenset[str] = frozenset()


def _leaf_commands() -> Iterator[tuple[str, Any]]:
    from typer._click import core  # typer's own click (it vendors one)

    root = typer.main.get_command(app)
    ctx = core.Context(root)

    def walk(command: Any, path: list[str]) -> Iterator[tuple[str, Any]]:
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                yield from walk(command.get_command(ctx, name), [*path, name])
        else:
            yield " ".join(path), command

    yield from walk(root, [])


def test_every_command_takes_json() -> None:
    commands = dict(_leaf_commands())
    assert len(commands) > 60 and {"runs compare", "models download", "train logs"} <= set(commands)
    assert set(commands) >= WITHOUT_JSON, WITHOUT_JSON - set(commands)
    lacking = sorted(
        name for name, command in commands.items()
        if name not in WITHOUT_JSON and "--json" not in {o for p in command.params for o in p.opts}
    )  # fmt: skip
    assert lacking == [], f"commands without --json: {lacking}"


@pytest.fixture
def dlp(cli_as: Callable[[str], None]) -> Callable[..., Result]:
    """``dlp`` in-process at 80 columns, as the admin."""
    runner = CliRunner(env={"COLUMNS": "80"})
    return lambda *argv: runner.invoke(app, list(argv))


def _fits(text: str, width: int = 80) -> None:
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert too_wide == [], too_wide


def test_ids_are_never_cut_at_80_columns(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str,
    dlp: Callable[..., Result],
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    ids = []
    for i in range(3):
        name = f"a-rather-long-experiment-name-number-{i}-with-adam-and-cosine-decay"
        with p.runs.start(name=name, params={f"p{k}": k for k in range(8)},
                          tags={"team": "vision"}) as run:  # fmt: skip
            run.log_metrics({"loss": 0.1 * i, "val_accuracy": 0.9, "throughput": 6600.0})
        ids.append(run.id)
    table = dlp("runs", "list")
    assert table.exit_code == 0, table.output
    _fits(table.stdout)
    for run_id in ids:
        assert run_id in table.stdout
    assert "columns shown at this width" in table.stdout and "--json" in table.stdout
    wide = CliRunner(env={"COLUMNS": "300"}).invoke(app, ["runs", "list"])
    assert "val_accuracy=0.9" in wide.stdout and "columns shown" not in wide.stdout
    long_name = "sensor-readings-from-the-north-sea-platforms-2026-q4-cleaned"  # 61 characters
    data.create_dataset(backend, SYSTEM, long_name, description="a description " * 8)
    data.push(backend, SYSTEM, long_name, pa.table({"x": [1]}))
    datasets = dlp("datasets", "list")
    assert datasets.exit_code == 0 and long_name in datasets.stdout, datasets.output
    _fits(datasets.stdout)
    head = backend.store.get_dataset(long_name).head
    assert head is not None and head in datasets.stdout  # the head commit's id, whole
    history = dlp("datasets", "commits", long_name)  # what people read first fits at 80
    assert history.exit_code == 0, history.output
    _fits(history.stdout)
    header = next(ln for ln in history.stdout.splitlines() if "created_at" in ln)
    assert header.split("┃")[1:5] == [" id               ", " created_at          ",
                                      " rows ", " size  "], header  # fmt: skip
    row = next(ln for ln in history.stdout.splitlines() if head in ln)
    rows, size = (c.strip() for c in row.split("│")[3:5])
    assert rows == "1" and size.endswith(" B") and size[:-2].isdigit(), row  # 1 row, in bytes
    narrow = CliRunner(env={"COLUMNS": "18"}).invoke(app, ["runs", "list"])  # an id alone: 16+4
    assert narrow.exit_code == 0 and all(f"id: {i}\n" in narrow.stdout for i in ids)


def test_a_sample_with_65_columns_is_not_an_empty_grid(
    backend: Backend, dlp: Callable[..., Result]
) -> None:
    data.create_dataset(backend, SYSTEM, "wide")
    data.push(backend, SYSTEM, "wide", pa.table({f"feature_{i:02d}": [i + 0.5, i + 1.5]
                                                 for i in range(65)}))  # fmt: skip
    shown = dlp("datasets", "sample", "wide", "-n", "2")
    assert shown.exit_code == 0, shown.output
    _fits(shown.stdout)
    assert "feature_00" in shown.stdout and "0.5" in shown.stdout and "1.5" in shown.stdout
    assert "of 65 columns shown" in shown.stdout and "feature_64" in shown.stdout  # named
    rows = json.loads(dlp("datasets", "sample", "wide", "-n", "2", "--json").stdout)
    assert len(rows) == 2 and len(rows[0]) == 65


def test_status_shows_sizes_in_human_units() -> None:
    resources = {"CPU": 2.0, "memory": 8 * 2**30, "object_store_memory": 2.5 * 2**30, "GPU": 1.0}
    assert human_resources(resources) == (
        "CPU 2, GPU 1, memory 8.0 GiB, object_store_memory 2.5 GiB"
    )
    assert [_common.human_bytes(n) for n in (0, 1023, 1536, 5 * 2**20)] == [
        "0 B", "1023 B", "1.5 KiB", "5.0 MiB"]  # fmt: skip


def test_compare_marks_what_differs(
    http_platform: Callable[[str], Any], admin_token: str, dlp: Callable[..., Result]
) -> None:
    p = http_platform(admin_token)
    ids = []
    for i, lr in enumerate([0.01, 0.01, 0.1, 0.3]):
        with p.runs.start(name=f"sweep-{i}", params={"lr": lr, "opt": "adam"}) as run:
            run.log_metrics({"loss": 0.5 if i else 0.25, "odd": math.inf})
        ids.append(run.id)
    two = dlp("runs", "compare", ids[0], ids[1])
    assert two.exit_code == 0, two.output
    _fits(two.stdout)
    assert ids[0] in two.stdout and ids[1] in two.stdout
    cells = [line.split("│") for line in two.stdout.splitlines() if line.startswith("│")]
    marked = {c[2].strip() for c in cells if c[1].strip() == "*"}
    assert marked == {"metrics.loss"} and "* the values differ" in two.stdout
    four = dlp("runs", "compare", *ids)  # four ids do not fit in 80 columns: a legend
    assert four.exit_code == 0, four.output
    _fits(four.stdout)
    for i, run_id in enumerate(ids):
        assert f"#{i + 1} = {run_id} (sweep-{i})" in four.stdout
    only = json.loads(dlp("runs", "compare", *ids, "--diff", "--json").stdout)
    assert only["runs"] == ids
    assert [r["key"] for r in only["rows"]] == ["params.lr", "metrics.loss"]
    assert only["rows"][0]["values"] == dict(zip(ids, ["0.01", "0.01", "0.1", "0.3"], strict=True))
    every = json.loads(dlp("runs", "compare", *ids, "--json").stdout)
    odd = next(r for r in every["rows"] if r["key"] == "metrics.odd")
    assert odd == {"key": "metrics.odd", "differs": False, "values": dict.fromkeys(ids, "Infinity")}
    missing = dlp("runs", "compare", ids[0], "run-nope")
    assert missing.exit_code == 1 and missing.stderr.strip().count("\n") == 0
    assert "run-nope" in missing.stderr


def _model_version(backend: Backend, tmp_path: Path) -> None:
    src = tmp_path / "model-src"
    src.mkdir()
    (src / "weights.pt").write_bytes(b"w" * 100)
    (src / "model.json").write_text("{}")
    ref = backend.artifacts.put_dir(src)
    backend.store.add_model_version(ModelVersion(
        model="m", version=0, run_id=None, artifact_sha256=ref.sha256, signature_json="{}",
        created_at=utcnow()), owner="admin")  # fmt: skip


def test_artifacts_and_downloads(
    backend: Backend, http_platform: Callable[[str], Any], admin_token: str,
    dlp: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n" * 300)
    with http_platform(admin_token).runs.start(name="files") as run:
        run.log_artifact(notes, "reports/notes.txt")
    listed = dlp("runs", "artifacts", run.id)
    assert listed.exit_code == 0 and "reports/notes.txt" in listed.stdout
    assert "1.8 KiB" in listed.stdout and "text/plain" in listed.stdout
    files = json.loads(dlp("runs", "artifacts", run.id, "--json").stdout)
    assert [(f["path"], f["size_bytes"]) for f in files] == [("reports/notes.txt", 1800)]
    monkeypatch.chdir(tmp_path)
    got = dlp("runs", "download", run.id, "reports/notes.txt")
    assert got.exit_code == 0, got.output
    assert (tmp_path / "notes.txt").read_text() == notes.read_text() and "sha256" in got.stdout
    refused = dlp("runs", "download", run.id, "../etc/passwd")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: refusing the file path")

    _model_version(backend, tmp_path)
    models = dlp("models", "list")
    assert models.exit_code == 0 and "latest_version" in models.stdout, models.output
    assert [ln.split()[1:4] for ln in models.stdout.splitlines() if "admin" in ln] == [
        ["m", "│", "1"]
    ]
    shown = dlp("models", "artifacts", "m@1", "--json")
    assert [f["path"] for f in json.loads(shown.stdout)] == ["model.json", "weights.pt"]
    out = tmp_path / "out"
    done = dlp("models", "download", "m@1", str(out), "--json")
    assert done.exit_code == 0, done.output
    assert sorted(Path(f["file"]).name for f in json.loads(done.stdout)) == ["model.json",
                                                                            "weights.pt"]  # fmt: skip
    again = dlp("models", "download", "m@1", str(out))
    assert again.exit_code == 1 and "not empty" in again.stderr
    assert dlp("models", "download", "m@1", str(out), "--force").exit_code == 0
    unknown = dlp("models", "download", "m@7", str(tmp_path / "none"))
    assert unknown.exit_code == 1 and not (tmp_path / "none").exists()


def test_train_logs_and_deleting_a_trigger_answer_json(
    backend: Backend, dlp: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    from dlplatform.train.spec import TrainingJobSpec

    spec = TrainingJobSpec(dataset="digits@c-1", label="target")
    backend.store.create_run(Run(id="run-1", owner="admin", status=RunStatus.RUNNING,
                                 spec_json=spec.model_dump_json(), created_at=utcnow()))  # fmt: skip

    def read_logs(self: JobHandle, offset: int = 0) -> JobLogs:
        return JobLogs(text="a\n", offset=offset, next_offset=offset + 2, final=True)

    monkeypatch.setattr(JobHandle, "read_logs", read_logs)
    logs = dlp("train", "logs", "run-1", "--json")
    assert logs.exit_code == 0, logs.output
    assert [json.loads(line) for line in logs.stdout.splitlines()] == [
        {"text": "a\n", "offset": 0, "next_offset": 2, "final": True}]  # fmt: skip
    gone = dlp("workflows", "delete-trigger", "trg-nope", "--json")
    assert gone.exit_code == 1 and gone.stdout == ""  # a failure prints no JSON, one error line


def test_ray_and_serve_lines_go_to_a_file_not_the_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = ("test-dlp-ray", "test-dlp-ray.serve")
    for name in names:
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())  # what Ray and Serve install: the terminal
    path = _common.quiet_loggers(names, tmp_path / "logs" / "ray-noise.log")
    assert _common.quiet_loggers(names, path) == path  # twice: one file handler each
    logging.getLogger("test-dlp-ray").info("Connecting to existing Ray cluster at address")
    logging.getLogger("test-dlp-ray.serve").warning("New http_options will not be applied")
    logging.getLogger("test-dlp-ray.serve").error("a real failure")
    err = capsys.readouterr().err
    assert "Connecting" not in err and "http_options" not in err and "a real failure" in err
    kept = path.read_text()
    assert kept.count("Connecting to existing Ray cluster") == 1 and "http_options" in kept
    for name in names:
        for handler in logging.getLogger(name).handlers:
            handler.close()
        logging.getLogger(name).handlers.clear()
    assert _common.RAY_LOGGERS == ("ray", "ray.serve")
