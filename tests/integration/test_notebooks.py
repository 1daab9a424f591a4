"""The example notebooks run top to bottom in a real kernel against a real platform; the lab
starts with token auth on loopback; a revoked token gets a short, clear error in a notebook."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from nbclient import NotebookClient

from dlplatform.access import issue_token
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.lab import start_lab

pytestmark = pytest.mark.integration
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _kernel_env(settings: Settings, url: str, token: str) -> dict[str, str]:
    """A kernel of the lab on the head node: the gateway's URL and a user's token; Ray's
    address so that ``to_ray()`` can read parts directly."""
    import ray

    env = dict(os.environ)
    env.update(
        DLP_URL=url,
        DLP_TOKEN=token,
        RAY_ADDRESS=ray.get_runtime_context().gcs_address,
        MPLBACKEND="Agg",
    )
    return env


def _run(
    book: nbformat.NotebookNode, cwd: Path, env: dict[str, str], *, allow_errors: bool = False
) -> nbformat.NotebookNode:
    client = NotebookClient(
        book, timeout=900, kernel_name="python3", allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )  # fmt: skip
    client.execute(env=env)
    return book


@pytest.mark.parametrize(
    "name", ["01_quickstart.ipynb", "02_data_exploration.ipynb", "03_troubleshooting.ipynb"]
)
def test_notebook_runs_top_to_bottom(
    name: str, gateway_url: str, gateway_backend: Backend, gateway_admin_token: str, tmp_path: Path
) -> None:
    book = nbformat.read(NOTEBOOKS / name, as_version=4)
    done = _run(
        book, tmp_path, _kernel_env(gateway_backend.settings, gateway_url, gateway_admin_token)
    )
    errors = [
        o for c in done.cells for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    assert all(c.get("execution_count") for c in done.cells if c.cell_type == "code")


def test_revoked_token_gives_a_short_error(
    gateway_url: str, gateway_backend: Backend, tmp_path: Path
) -> None:
    token, info = issue_token(gateway_backend.store, "admin")
    gateway_backend.store.revoke_token(info.id)
    book = nbformat.v4.new_notebook()
    book.cells = [
        nbformat.v4.new_code_cell("import dlplatform as dlp\np = dlp.connect()\np.whoami()")
    ]
    # The cell still ends in error (the kernel reports it); what the user sees is one line.
    done = _run(
        book, tmp_path, _kernel_env(gateway_backend.settings, gateway_url, token), allow_errors=True
    )
    text = "".join(o.get("text", "") for o in done.cells[0].outputs)
    assert "Unauthenticated (unauthenticated): invalid or revoked token" in text
    assert "Traceback" not in text and "File " not in text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_lab_starts_with_token_auth_and_skips_a_busy_port(settings: Settings) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", _free_port()))
    busy.listen()
    port = busy.getsockname()[1]
    proc, info = start_lab(settings, "dlp_token_for_kernels", port=port)
    try:
        assert info.port != port  # the busy port was skipped, not fought over
        token = info.url.split("token=", 1)[1]
        base = f"http://127.0.0.1:{info.port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                ok = httpx.get(f"{base}/api/status", headers={"Authorization": f"token {token}"})
                if ok.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "JupyterLab did not start"
            assert proc.poll() is None, (settings.home / "lab.log").read_text()[-2000:]
            time.sleep(0.5)
        assert httpx.get(f"{base}/api/status").status_code == 403  # token auth is on
        assert Path(info.workdir) == settings.home / "lab"
        assert (Path(info.workdir) / "01_quickstart.ipynb").is_file()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        busy.close()
