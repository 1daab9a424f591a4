"""``dlp datasets``: create, push (with progress), list, show, commits, rollback, sample, export,
delete, gc."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import (
    HomeOpt,
    JsonOpt,
    console,
    emit,
    fail,
    handle_errors,
    human_bytes,
)
from dlplatform.metadata import Commit, CommitMode, DatasetType

app = typer.Typer(no_args_is_help=True, help="Datasets: versioned commits of tabular data.")

COMMIT_COLUMNS = ["id", "created_at", "rows", "size", "message", "author", "mode", "parent",
                  "version_hash"]  # fmt: skip
"""``dlp datasets commits`` columns, the ones people read first on the left (a narrow terminal
drops columns from the right; ``--json`` has every field)."""


@contextmanager
def _progress(
    label: str, enabled: bool, *, unit: str = "bytes"
) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on stderr (when it is a terminal), fed by the client's
    ``progress(done, total)`` callback; ``unit`` is ``bytes`` (uploads) or ``rows``."""
    if not enabled or not console.is_terminal:
        yield None
        return
    # rich.progress costs ~30 ms to import: only where a bar is drawn
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    with Progress(
        TextColumn(label), BarColumn(), count, TimeRemainingColumn(), console=console
    ) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=max(total, done))

        yield update


def _short(commit: Commit) -> dict[str, object]:
    return {
        "id": commit.id,
        "created_at": commit.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": f"{commit.row_count:,}",
        "size": human_bytes(commit.size_bytes),
        "message": commit.message,
        "author": commit.author,
        "mode": getattr(commit.mode, "value", commit.mode),
        "parent": commit.parent,
        "version_hash": commit.version_hash[:16],
    }


@app.command("create")
@handle_errors
def create(
    name: str = typer.Argument(..., help="Dataset name (lowercase)."),
    description: str = typer.Option("", "--description", help="What the data is."),
    type_: DatasetType = typer.Option(
        DatasetType.TABULAR, "--type", help="tabular, image or text."
    ),
    schema: Path | None = typer.Option(
        None, "--schema", help='JSON file: [{"name": ..., "type": "int64"}, ...].'
    ),
    group: list[str] = typer.Option([], "--group", help="Restrict to this group (repeatable)."),
    tag: list[str] = typer.Option([], "--tag", help="A tag (repeatable)."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Create an empty dataset."""
    spec = None
    if schema is not None:
        try:
            spec = schema.read_text()
        except OSError as exc:
            fail(f"cannot read schema file {schema}: {exc.strerror}")
    p = _common.platform(home)
    ds = p.datasets.create(
        name, description=description, type=type_, schema=spec, groups=group, tags=tag
    )
    if as_json:
        emit(ds.dataset, True)
    else:
        print(f"created dataset {ds.name}")


@app.command("push")
@handle_errors
def push(
    name: str = typer.Argument(..., help="Dataset name."),
    files: list[Path] = typer.Argument(..., help="Parquet, CSV, JSON lines or Arrow IPC files."),
    mode: CommitMode = typer.Option(CommitMode.APPEND, "--mode", help="append or overwrite."),
    message: str = typer.Option("", "--message", "-m", help="Commit message."),
    parent: str | None = typer.Option(None, "--parent", help="Commit this push builds on."),
    format_: str | None = typer.Option(None, "--format", help="parquet, csv, jsonl or arrow."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Push files as one new commit (progress on stderr)."""
    for f in files:
        if not f.is_file():
            fail(f"{f} is not a file")
    p = _common.platform(home)
    handle = p.datasets.get(name)
    with _progress(f"push {name}", not as_json) as progress:
        commit = handle.push(
            list(files), mode=mode, message=message, parent=parent, format=format_,
            progress=progress,
        )  # fmt: skip
    if as_json:
        emit(commit, True)
    else:
        print(
            f"committed {commit.id} to {name}: {commit.row_count} rows, {commit.size_bytes} bytes, "
            f"version {commit.version_hash[:16]}"
        )
        if commit.notes:
            print(f"notes: {commit.notes}")


@app.command("list")
@handle_errors
def list_(home: str | None = HomeOpt, as_json: bool = JsonOpt) -> None:
    """List the datasets you can see."""
    p = _common.platform(home)
    emit(p.datasets.list(), as_json,
         columns=["name", "type", "description", "groups", "head", "created_by"], title="datasets")  # fmt: skip


@app.command("show")
@handle_errors
def show(
    ref: str = typer.Argument(..., help="NAME or NAME@COMMIT."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """A dataset, one of its commits (the head by default) and the commit's column statistics."""
    name, _, commit_id = ref.partition("@")
    p = _common.platform(home)
    handle = p.datasets.get(name)
    ds = handle.dataset
    version = handle.get(commit_id) if (commit_id or ds.head) else None
    commit = version.commit if version is not None else None
    stats = version.describe() if version is not None else None
    if as_json:
        emit({"dataset": ds, "commit": commit, "stats": stats}, True)
        return
    emit(ds, False, columns=["name", "description", "type", "tags", "groups", "head", "created_by"])
    if commit is None or stats is None:
        print("no commits yet")
        return
    emit(commit, False, columns=["id", "parent", "mode", "message", "author", "created_at",
                                 "row_count", "size_bytes", "version_hash", "notes"])  # fmt: skip
    rows = []
    for c in stats.columns:
        top = ", ".join(f"{t.value} ({t.count})" for t in c.top)
        rows.append({"column": c.name, "type": c.type, "count": c.count, "nulls": c.nulls,
                     "min": c.min, "max": c.max, "mean": c.mean,
                     "distinct~": c.approx_distinct, "top": top})  # fmt: skip
    emit(rows, False, title="column statistics")


@app.command("commits")
@handle_errors
def commits(
    name: str = typer.Argument(..., help="Dataset name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The dataset's commits, newest first."""
    p = _common.platform(home)
    history = p.datasets.get(name).commits()
    if as_json:
        emit(history, True)
    else:
        emit([_short(c) for c in history], False, columns=COMMIT_COLUMNS, title="commits")


@app.command("rollback")
@handle_errors
def rollback(
    name: str = typer.Argument(..., help="Dataset name."),
    commit: str = typer.Argument(..., help="The commit whose content becomes the new head."),
    message: str = typer.Option("", "--message", "-m"),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Make a new head commit with the content of COMMIT (history is kept)."""
    p = _common.platform(home)
    new = p.datasets.get(name).rollback(commit, message=message)
    if as_json:
        emit(new, True)
    else:
        print(f"rolled {name} back to {commit}: new head {new.id} ({new.row_count} rows)")


@app.command("sample")
@handle_errors
def sample(
    ref: str = typer.Argument(..., help="NAME or NAME@COMMIT."),
    n: int = typer.Option(10, "-n", help="Rows to show."),
    seed: int = typer.Option(0, "--seed"),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show N rows drawn from a version."""
    p = _common.platform(home)
    rows = p.datasets.resolve(ref).sample(n, seed=seed).to_pylist()
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
    else:
        emit(rows, False, title="rows")


@app.command("export")
@handle_errors
def export(
    ref: str = typer.Argument(..., help="NAME or NAME@COMMIT."),
    directory: Path = typer.Argument(..., help="Empty or new directory for the Parquet parts."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download a version (row count checked) to DIR as one Parquet file."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        fail(f"{directory} exists and is not an empty directory")
    p = _common.platform(home)
    version = p.datasets.resolve(ref)
    with _progress(f"export {ref}", not as_json, unit="rows") as progress:
        files = version.export(directory, progress=progress)
    if as_json:
        emit([str(f) for f in files], True)
    else:
        print(f"exported {len(files)} part(s) to {directory}")


@app.command("delete")
@handle_errors
def delete(
    name: str = typer.Argument(..., help="Dataset name."),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Soft-delete a dataset (its data stays while lineage points at it; see gc)."""
    p = _common.platform(home)
    ds = p.datasets.get(name).delete()
    if as_json:
        emit(ds, True)
    else:
        print(f"deleted dataset {name}")


@app.command("gc")
@handle_errors
def gc(
    min_age_s: float = typer.Option(
        3600, "--min-age-s", help="Keep unreferenced objects younger than this."
    ),
    home: str | None = HomeOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Purge deleted datasets nothing references and delete unreferenced artifacts."""
    p = _common.platform(home)
    emit(p.datasets.gc(min_age_s=min_age_s), as_json)
