"""Top-level ``dlp predict`` (online, through the deployment) and ``dlp batch-predict``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from dlplatform.cli._common import HomeOpt, JsonOpt, emit, fail, handle_errors, platform

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
    from dlplatform.serve import predict as predict_rows

    inputs = _read_input(input)
    p = platform(home)
    emit(predict_rows(p.backend, p.principal, name, inputs), as_json)


def batch_predict(
    model: str = typer.Argument(..., help="NAME[@VERSION|@ALIAS]"),
    dataset: str = typer.Argument(..., help="DATASET[@COMMIT] (default: head)"),
    output: str = typer.Option(..., "--output", help="Dataset to commit the predictions to."),
    workers: int = typer.Option(1, "--workers", min=1, max=64, help="Inference actors."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Predict every row of a dataset version; commit rows + a prediction column to --output."""
    from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn

    from dlplatform.cli._common import console
    from dlplatform.serve import batch_predict as run

    p = platform(home)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"predicting {dataset} with {model}", total=None)

        def on_progress(done: int, total: int) -> None:
            bar.update(task, description="writing predictions", completed=done, total=total or None)

        result = run(
            p.backend, p.principal, model, dataset, output, workers=workers, progress=on_progress
        )
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
