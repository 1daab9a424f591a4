"""``dlp`` stays light: help and API commands load neither Ray nor torch (each in a fresh process,
since this test session may have loaded them already)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN = """
import sys
from dlplatform.cli import app
from typer.testing import CliRunner
r = CliRunner().invoke(app, {argv!r})
{check}
bad = [m for m in {banned!r} if m in sys.modules]
assert not bad, bad
"""
HELP_OK = "assert r.exit_code == 0, r.output"
UNREACHABLE = "http://127.0.0.1:9"
FAILS_NAMING_URL = f"""
assert r.exit_code == 1, r.output
lines = [x for x in r.stderr.splitlines() if x.strip()]
assert len(lines) == 1 and {UNREACHABLE!r} in lines[0], r.stderr
"""


def _run(argv: list[str], check: str, banned: tuple[str, ...], tmp_path: Path) -> None:
    env = {**os.environ, "DLP_CONFIG_DIR": str(tmp_path / "config"),
           "DLP_HOME": str(tmp_path / "home"), "DLP_TOKEN": "dlp_test-token"}  # fmt: skip
    for var in ("DLP_URL", "DLP_PROFILE", "RAY_ADDRESS"):
        env.pop(var, None)
    code = RUN.format(argv=argv, check=check, banned=banned)
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("argv", [["--help"], ["datasets", "--help"]])
def test_help_loads_no_ray_torch_httpx_pyarrow_or_duckdb(argv: list[str], tmp_path: Path) -> None:
    # nor Rich's help panels (rich.markdown and its parsers: 0.2 s of `dlp --help`)
    banned = ("ray", "torch", "httpx", "pyarrow", "duckdb", "typer.rich_utils", "rich.markdown")
    _run(argv, HELP_OK, banned, tmp_path)


@pytest.mark.parametrize(
    "argv",
    [["datasets", "list"], ["lineage", "commit:c-1"], ["users", "list", "--json"]],
)
def test_api_commands_load_no_ray_or_torch(argv: list[str], tmp_path: Path) -> None:
    """Against a port nothing listens on: exit 1 with one line naming the URL."""
    _run(["--url", UNREACHABLE, *argv], FAILS_NAMING_URL, ("ray", "torch"), tmp_path)
