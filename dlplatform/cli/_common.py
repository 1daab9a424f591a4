"""What every CLI command shares: connecting, output (--json), and errors → exit codes.

Exit codes: 0 success, 1 a failed operation (one line on stderr), 2 usage errors (typer's own).
Commands that talk to the platform go through the SDK's HTTP client (``platform()``); this module
and every command module import nothing heavy at the top, so ``dlp --help`` and API commands load
neither Ray nor torch.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console

from dlplatform.errors import DLPlatformError, InvalidInput

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dlplatform.client import Platform
    from dlplatform.config import Settings

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
    from dlplatform.client import connect

    return connect(TARGET["url"], None, TARGET["profile"], home=home)


def settings_for(home: str | None = None, **overrides: Any) -> Settings:
    """The settings of a command that starts processes (``up``, ``down``, ``lab``, ``demo``):
    env and config file, then ``--home`` and other options."""
    from dlplatform.config import load_settings

    return load_settings(home=home, **overrides)


M = TypeVar("M", bound="BaseModel")


def parse_model(spec_type: type[M], /, **values: Any) -> M:
    """Build a spec from command-line values; a bad value is an ``InvalidInput`` naming it."""
    try:
        return spec_type(**values)
    except ValueError as exc:
        from pydantic import ValidationError  # loaded already: spec_type is a pydantic model

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


def emit(value: Any, as_json: bool, *, columns: list[str] | None = None, title: str = "") -> None:
    """Print records: JSON with ``--json``, otherwise a table (lists) or key/value lines."""
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
        from rich.table import Table

        table = Table(title=title or None)
        for c in cols:
            table.add_column(c)
        for row in data:
            table.add_row(*(_cell(row.get(c)) for c in cols))
        out.print(table)
    elif isinstance(data, dict):
        for k, v in data.items():
            if columns is None or k in columns:
                out.print(f"[bold]{k}[/bold]: {_cell(v)}")
    else:
        out.print(str(data))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)
