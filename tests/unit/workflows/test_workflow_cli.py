"""``dlp workflows``: parameter parsing and one-line errors (no platform is needed for these)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlplatform.cli import app
from dlplatform.cli.workflows import parse_params
from dlplatform.errors import InvalidInput


def test_params_are_json_or_text() -> None:
    assert parse_params(["n=3", "name=iris", 'cfg={"a": [1, 2]}', "flag=true", "s=a=b"]) == {
        "n": 3,
        "name": "iris",
        "cfg": {"a": [1, 2]},
        "flag": True,
        "s": "a=b",
    }
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_params(["novalue"])
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_params(["=1"])


def test_bad_param_and_missing_platform_exit_1_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app, ["workflows", "run", "m:f", "--param", "oops", "--home", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == ["error: --param 'oops' is not KEY=VALUE"]
    result = runner.invoke(app, ["workflows", "list", "--home", str(tmp_path / "nothing")])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")
