"""The ``dlp`` command. Each component's commands live in ``dlplatform/cli/<component>.py`` as a
``typer.Typer`` named ``app`` and are registered in ``SUBCOMMANDS``.

The CLI talks to the platform only through ``dlplatform.client`` (HTTP); it may import the
components' light spec modules for its options and ``runtime`` for ``dlp up``/``down``, never
Ray or torch at import time (``tests/unit/cli/test_cli_light.py``).
"""

from __future__ import annotations

import importlib
import sys

import typer

from dlplatform.cli import _common

__all__ = ["app", "main"]

app = typer.Typer(
    name="dlp",
    help="dlplatform: datasets, training, serving and workflows on one Ray cluster.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: Rich's help panels import rich.markdown and its parsers, 0.2 s of `dlp --help`
    # (the sub-commands inherit the root's mode).
    rich_markup_mode=None,
)

# command group -> module holding `app` (a typer.Typer); modules holding top-level commands
# expose `register(app)` instead.
SUBCOMMANDS: dict[str, str] = {
    "workflows": "dlplatform.cli.workflows",
    "datasets": "dlplatform.cli.datasets",
    "users": "dlplatform.cli.users",
    "train": "dlplatform.cli.train",
    "runs": "dlplatform.cli.runs",
    "tune": "dlplatform.cli.tune",
    "models": "dlplatform.cli.models",
    "serve": "dlplatform.cli.serve",
    "k8s": "dlplatform.cli.k8s",
    "import": "dlplatform.cli.imports",
    "quotas": "dlplatform.cli.usage",
}
TOP_LEVEL: list[str] = [
    "dlplatform.cli.demo",
    "dlplatform.cli.lab",
    "dlplatform.cli.system",
    "dlplatform.cli.predict",
    "dlplatform.cli.auth",
    "dlplatform.cli.backup",
    "dlplatform.cli.usage",
]


def _register() -> None:
    for name, module in SUBCOMMANDS.items():
        app.add_typer(importlib.import_module(module).app, name=name)
    for module in TOP_LEVEL:
        importlib.import_module(module).register(app)


_register()


@app.callback()
def _root(
    profile: str | None = typer.Option(
        None, "--profile", envvar="DLP_PROFILE", help="Use this `dlp login` profile."
    ),
    url: str | None = typer.Option(
        None, "--url", help="Gateway URL (default $DLP_URL, the profile, or the local platform)."
    ),
) -> None:
    """dlplatform: datasets, training, serving and workflows on one Ray cluster."""
    _common.TARGET.update(profile=profile, url=url)


def main() -> None:
    # What this process never uses but would import on the way, 0.2 s of a 0.8 s command:
    # httpcore imports trio whenever it is installed (Jupyter brings it), and httpx its own
    # command line (rich.syntax, pygments). Both then fall back as when they are absent.
    for unused in ("trio", "httpx._main"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]
    app()
