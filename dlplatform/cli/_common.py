"""What every CLI command shares: connecting, output (--json), and errors → exit codes.

Exit codes: 0 success, 1 a failed operation (one line on stderr), 2 usage errors (typer's own).
Commands that talk to the platform go through the SDK's HTTP client (``platform()``); this module
and every command module import nothing heavy at the top, so ``dlp --help`` and API commands load
neither Ray nor torch.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dlplatform.errors import DLPlatformError, InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dlplatform.client import Platform
    from dlplatform.config import Settings
    from dlplatform.metadata.records import ArtifactFile

F = TypeVar("F", bound=Callable[..., Any])
# Set once per process by the root command's options (``dlp --profile NAME --url URL ...``).
TARGET: dict[str, str | None] = {"profile": None, "url": None}
console = Console(stderr=True)
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON.")
HomeOpt = typer.Option(None, "--home", help="Platform home (default $DLP_HOME or ~/.dlplatform).")


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit."""
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first}", file=sys.stderr)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn platform errors into exit code 1 with one clear line (never a traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DLPlatformError as exc:
            fail(exc.message)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug or a foreign error: one line, never a traceback
            fail(f"{type(exc).__name__}: {exc}")

    return wrapper  # type: ignore[return-value]


def platform(home: str | None = None) -> Platform:
    """The SDK's HTTP client for this command (see ``dlplatform.connect``): ``--url`` or
    ``DLP_URL``, ``--profile``/``DLP_PROFILE``, else the platform running under ``home``."""
    from dlplatform.client import connect  # heavy: httpx, kept off `dlp --help`

    return connect(TARGET["url"], None, TARGET["profile"], home=home)


def settings_for(home: str | None = None, **overrides: Any) -> Settings:
    """The settings of a command that starts processes (``up``, ``down``, ``lab``, ``demo``):
    env and config file, then ``--home`` and other options."""
    from dlplatform.config import load_settings  # heavy: pydantic-settings (70 ms)

    return load_settings(home=home, **overrides)


RAY_LOGGERS = ("ray", "ray.serve")
"""The loggers Ray and Serve give a terminal handler when imported (INFO and up)."""


def quiet_ray(settings: Settings) -> Path:
    """Keep Ray's and Serve's own log lines ("Connecting to existing Ray cluster", "Started
    Serve", deployment updates) out of a command's output: they go to
    ``<home>/logs/ray-noise.log``; only their errors still reach the terminal. For the commands
    that start or join Ray (``up``, ``down``, ``status``, ``demo``); returns the log's path.
    """
    import ray  # noqa: F401  the command joins Ray next: its logger is set up on import
    from ray import serve  # noqa: F401  so is Serve's (the command uses Serve too)

    return quiet_loggers(RAY_LOGGERS, settings.home / "logs" / "ray-noise.log")


def quiet_loggers(names: tuple[str, ...], path: Path, level: int = logging.ERROR) -> Path:
    """Send the records of loggers ``names`` to the file ``path``, and only those at ``level``
    or above to the handlers they had (the terminal). Idempotent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_file = logging.FileHandler(path, encoding="utf-8", delay=True)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in names:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                if Path(handler.baseFilename) == path.absolute():
                    break  # done before
            else:
                handler.setLevel(max(handler.level, level))
        else:
            logger.addHandler(to_file)
    return path


M = TypeVar("M", bound="BaseModel")


def parse_model(spec_type: type[M], /, **values: Any) -> M:
    """Build a spec from command-line values; a bad value is an ``InvalidInput`` naming it."""
    try:
        return spec_type(**values)
    except ValueError as exc:
        if not isinstance(exc, ValidationError):
            raise
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or spec_type.__name__
        raise InvalidInput(f"{where}: {err['msg']}") from None


def _plain(value: Any) -> Any:
    if hasattr(value, "model_dump"):  # a pydantic record (pydantic loads only when used)
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def emit(
    value: Any,
    as_json: bool,
    *,
    columns: list[str] | None = None,
    title: str = "",
    ids: list[str] | None = None,
) -> None:
    """Print records: JSON with ``--json``, otherwise a table (lists) or key/value lines.

    A table fits the terminal without cutting an id: the columns ``ids`` (default: those
    ``is_id_column`` names) are never wrapped or shortened; other columns fold their text, and
    those that do not fit at all are left out, from the right, with a note naming them
    (``--json`` has everything). When the ids alone are too wide, each row is printed as
    ``key: value`` lines instead.
    """
    data = _plain(value)
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    out = Console()
    if isinstance(data, list):
        if not data:
            out.print(f"no {title or 'items'}")
            return
        cols = columns or list(data[0].keys())
        rows = [[_cell(row.get(c)) for c in cols] for row in data]
        whole = [c for c in cols if (is_id_column(c) if ids is None else c in ids)]
        _table(out, cols, rows, title, whole)
    elif isinstance(data, dict):
        for k, v in data.items():
            if columns is None or k in columns:
                out.print(f"[bold]{escape(str(k))}[/bold]: {escape(_cell(v))}")
    else:
        out.print(escape(str(data)))


ID_COLUMNS = frozenset(
    {"id", "name", "commit", "head", "entity", "path", "file", "model", "deployment", "ref"}
)
_FOLDED_MAX = 24  # a folded column asks for at most this many characters when columns compete


def is_id_column(name: str) -> bool:
    """Whether a table column holds something a user copies whole (an id, a name, a path)."""
    return name in ID_COLUMNS or name.endswith(("_id", "_commit"))


def _table(
    out: Console, cols: list[str], rows: list[list[str]], title: str, keep: list[str]
) -> None:
    def width_of(i: int) -> int:
        return max(len(cols[i]), *(max(map(len, r[i].splitlines() or [""])) for r in rows))

    ids = [i for i, c in enumerate(cols) if c in keep]
    budget = out.width - 1 - 3 * len(ids) - sum(width_of(i) for i in ids)
    if budget < 0:  # the ids alone do not fit: one block of lines per row
        for n, row in enumerate(rows):
            if n:
                out.print()
            for i, (c, cell) in enumerate(zip(cols, row, strict=True)):  # ids never wrap
                out.print(f"[bold]{escape(c)}[/bold]: {escape(cell)}", soft_wrap=i in ids)
        return
    shown = set(ids)
    for i in range(len(cols)):
        need = 3 + min(width_of(i), _FOLDED_MAX)
        if i not in shown and need <= budget:
            shown.add(i)
            budget -= need
    table = Table(title=title or None)
    for i, c in enumerate(cols):
        if i in shown:
            if i in ids:
                table.add_column(c, no_wrap=True, min_width=width_of(i))
            else:
                table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*(escape(cell) for i, cell in enumerate(row) if i in shown))
    out.print(table)
    hidden = [c for i, c in enumerate(cols) if i not in shown]
    if hidden:
        named = hidden if len(hidden) <= 6 else [*hidden[:4], "...", hidden[-1]]
        out.print(
            f"[dim]{len(shown)} of {len(cols)} columns shown at this width (--json or a wider "
            f"terminal shows all); not shown: {escape(', '.join(named))}[/dim]"
        )


def human_bytes(size: float) -> str:
    """``1536`` → ``1.5 KiB``: sizes as people read them (``--json`` keeps the bytes)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    step = 0
    while abs(size) >= 1024 and step < len(units) - 1:
        size /= 1024
        step += 1
    return f"{size:.0f} B" if step == 0 else f"{size:.1f} {units[step]}"


def emit_files(files: list[ArtifactFile], as_json: bool, title: str) -> None:
    """Stored files (``dlp runs artifacts``, ``dlp models artifacts``): every field with
    ``--json``, else a table of path, size, media type and the sha256's first 12 digits."""
    rows = [{"path": f.path, "size": human_bytes(f.size_bytes), "media_type": f.media_type,
             "sha256": f.sha256[:12]} for f in files]  # fmt: skip
    emit(files if as_json else rows, as_json, title=title)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)
