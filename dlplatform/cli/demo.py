"""``dlp demo``: the main job, end to end (see ``dlplatform.demo``)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer

from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, quiet_ray, settings_for


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @handle_errors
    def demo(
        home: str | None = HomeOpt,
        stop: bool = typer.Option(False, "--stop", help="Stop the platform when done."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Start the platform, then data → training → gate → serving → predictions → lineage."""
        from dlplatform.demo import run_demo  # heavy: pyarrow, numpy (0.3 s), then Ray

        def say(line: str) -> None:
            print(line, file=sys.stderr if as_json else sys.stdout, flush=True)

        with _stdout_to_stderr() if as_json else contextlib.nullcontext():
            settings = settings_for(home)
            quiet_ray(settings)
            result = run_demo(settings, say, stop=stop)
        if as_json:
            emit(result, True)
        else:
            print(f"done in {result.seconds:.0f} s")


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send everything written to fd 1 (Ray's and Serve's log lines, child processes) to stderr,
    so that ``--json`` leaves stdout to the one JSON document."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
