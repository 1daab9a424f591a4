"""``dlp lab`` without JupyterLab or Ray: the token is checked at the gateway first, and the
kernels get the gateway's URL and the token (no Ray address or Ray credentials)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dlplatform import lab
from dlplatform.cli import app
from dlplatform.config import Settings
from dlplatform.lab.launcher import LabInfo, lab_env


def test_kernel_env_names_the_gateway_and_the_token(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DLP_URL", "DLP_RAY_ADDRESS", "DLP_NAMESPACE", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    env = lab_env(settings, "dlp_secret", "http://127.0.0.1:8000")
    assert (env["DLP_URL"], env["DLP_TOKEN"]) == ("http://127.0.0.1:8000", "dlp_secret")
    assert env["DLP_HOME"] == str(settings.home)
    assert not {"DLP_RAY_ADDRESS", "DLP_NAMESPACE", "RAY_ADDRESS"} & set(env)
    assert "DLP_URL" not in lab_env(settings, "dlp_secret")  # connect() finds DLP_HOME's platform


def test_lab_checks_the_token_then_starts_with_the_gateway_url(
    cli_as: Callable[[str], None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    started: list[dict[str, object]] = []

    def fake_start(settings: Settings, token: str, **kw: object) -> tuple[object, LabInfo]:
        started.append({"home": settings.home, **kw})
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        proc.wait()
        return proc, LabInfo(url="http://127.0.0.1:8888/lab?token=t", port=8888, pid=proc.pid,
                             workdir=str(settings.home / "lab"))  # fmt: skip

    monkeypatch.setattr(lab, "start_lab", fake_start)
    home = str(tmp_path / "h")
    ok = CliRunner().invoke(app, ["lab", "--home", home, "--port", "8888"])
    assert ok.exit_code == 0, ok.output
    assert "JupyterLab for admin: http://127.0.0.1:8888/lab?token=t" in ok.stdout
    assert started == [{"home": Path(home), "url": "http://127.0.0.1:8000", "host": "127.0.0.1",
                        "port": 8888}]  # fmt: skip

    cli_as("dlp_not_a_token")
    refused = CliRunner().invoke(app, ["lab", "--home", home])
    assert refused.exit_code == 1 and refused.output.startswith("error: ")
    assert len(started) == 1  # nothing started for a refused token
