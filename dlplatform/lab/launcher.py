"""``dlp lab``: JupyterLab inside the platform's environment, as the user whose token started it.

Bound to 127.0.0.1 by default with Jupyter's token auth on; the working directory is
``<home>/lab``; the kernel environment carries ``DLP_URL`` and ``DLP_TOKEN`` (and ``DLP_HOME``)
so that ``dlplatform.connect()`` in a notebook reaches the gateway as that user. Kernels get no
Ray address or Ray credentials: notebooks are clients of the gateway like any other.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from pydantic import BaseModel

from dlplatform.config import Settings
from dlplatform.errors import BackendUnavailable, InvalidInput

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


class LabInfo(BaseModel, frozen=True, extra="forbid"):
    url: str  # with the Jupyter token; print it once, like Jupyter does
    port: int
    pid: int
    workdir: str


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str, port: int, tries: int = 20) -> int:
    """``port`` if free, else the next free one (at most ``tries`` further).

    Raises:
        InvalidInput: none of them is free.
    """
    for candidate in range(port, port + tries):
        if _port_free(host, candidate):
            return candidate
    raise InvalidInput(f"ports {port}-{port + tries - 1} on {host} are all busy; pass --port")


def lab_env(settings: Settings, token: str, url: str | None = None) -> dict[str, str]:
    """The environment of the lab and its kernels: where the gateway is and whose token to use
    (without ``url``, ``connect()`` finds the platform running under ``DLP_HOME``)."""
    env = dict(os.environ)
    env["DLP_HOME"] = str(settings.home)
    env["DLP_TOKEN"] = token
    if url:
        env["DLP_URL"] = url
    return env


def start_lab(
    settings: Settings,
    token: str,
    *,
    url: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8888,
) -> tuple[subprocess.Popen[bytes], LabInfo]:
    """Start JupyterLab in the background, its kernels connecting to the gateway at ``url`` with
    ``token``; the caller waits on or stops the process.

    Raises:
        BackendUnavailable: JupyterLab is not installed (``pip install -e ".[lab]"``).
    """
    if shutil.which("jupyter-lab") is None and not _has_module("jupyterlab"):
        raise BackendUnavailable('JupyterLab is not installed: pip install -e ".[lab]"')
    chosen = pick_port(host, port)
    workdir = settings.home / "lab"
    workdir.mkdir(parents=True, exist_ok=True)
    for example in sorted(NOTEBOOKS.glob("*.ipynb")) if NOTEBOOKS.is_dir() else []:
        target = workdir / example.name
        if not target.exists():
            shutil.copyfile(example, target)
    jupyter_token = secrets.token_hex(24)
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={host}", f"--port={chosen}",
        "--port-retries=0", f"--ServerApp.root_dir={workdir}",
        f"--IdentityProvider.token={jupyter_token}", "--ServerApp.allow_remote_access=False",
    ]  # fmt: skip
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI run as root; Jupyter refuses otherwise
    log = open(settings.home / "lab.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=lab_env(settings, token, url), stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://{host}:{chosen}/lab?token={jupyter_token}"
    return proc, LabInfo(url=url, port=chosen, pid=proc.pid, workdir=str(workdir))


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None
