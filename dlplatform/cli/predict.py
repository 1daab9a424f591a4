"""Top-level ``dlp predict`` (online, through the deployment) and ``dlp batch-predict``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, console, emit, fail, handle_errors

MAX_INPUT_BYTES = 64 * 1024 * 1024


def _read_input(value: str) -> Any:
    """``--input``: inline JSON, or a path to a JSON file (``{"inputs": [...]}`` or a list)."""
    text = value
    if not value.lstrip().startswith(("[", "{")):
        path = Path(value)
        if not path.is_file():
            fail(f"--input {value!r} is neither JSON nor an existing file")
        if path.stat().st_size > MAX_INPUT_BYTES:
            fail(f"--input file is larger than {MAX_INPUT_BYTES} bytes")
        text = path.read_text()
    try:
        data = json.loads(text)
    except ValueError as exc:
        fail(f"--input is not valid JSON: {exc}")
    if isinstance(data, dict):
        if "inputs" not in data:
            fail('--input object must have "inputs": [row, ...]')
        return data["inputs"]
    return data


def predict(
    name: str = typer.Argument(..., help="The deployment (model name)."),
    input: str = typer.Option(
        ..., "--input", help='JSON rows or a file: [[1,2,3]] or {"inputs": ...}'
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Predict with a deployed model (same validation and logging as POST /models/NAME)."""
    inputs = _read_input(input)
    p = _common.platform(home)
    emit(p.serving.predict(name, inputs), as_json)


def batch_predict(
    model: str = typer.Argument(..., help="NAME[@VERSION|@ALIAS]"),
    dataset: str = typer.Argument(..., help="DATASET[@COMMIT] (default: head)"),
    output: str = typer.Option(..., "--output", help="Dataset to commit the predictions to."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Inference actors."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Predict every row of a dataset version; commit rows + a prediction column to --output.

    The gateway runs the job on the cluster and answers once the output commit exists; a
    spinner on stderr shows the wait."""
    p = _common.platform(home)
    waiting: contextlib.AbstractContextManager[object] = (
        console.status(f"predicting {dataset} with {model}")
        if console.is_terminal and not as_json
        else contextlib.nullcontext()
    )
    with waiting:
        result = p.serving.batch_predict(model, dataset, output, workers=workers)
    if as_json:
        emit(result, True)
        return
    print(
        f"{result.rows} predictions of {result.model}@{result.version} on "
        f"{result.input_dataset}@{result.input_commit} -> {result.output_dataset}@"
        f"{result.output_commit} ({result.seconds:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    app.command("predict")(handle_errors(predict))
    app.command("batch-predict")(handle_errors(batch_predict))
