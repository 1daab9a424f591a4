"""``dlp lab``: start JupyterLab connected to the running platform."""

from __future__ import annotations

import time

import typer

from dlplatform.cli import _common
from dlplatform.cli._common import HomeOpt, JsonOpt, emit, handle_errors, settings_for


def register(app: typer.Typer) -> None:
    @app.command("lab")
    @handle_errors
    def lab(
        home: str | None = HomeOpt,
        port: int = typer.Option(8888, "--port", min=1, max=65535),
        ip: str = typer.Option("127.0.0.1", "--ip", help="Bind address (loopback by default)."),
        as_json: bool = JsonOpt,
    ) -> None:
        """Start JupyterLab (the `lab` extra); notebooks connect as the token's user."""
        from dlplatform.lab import start_lab  # heavy: httpx and the settings (70 ms)

        p = _common.platform(home)  # the gateway and token the notebooks will use
        principal = p.whoami()  # fail here, not in the first notebook
        token = p.target.token if p.target is not None else None
        proc, info = start_lab(settings_for(home), token or "", url=p.url, host=ip, port=port)
        if info.port != port:
            print(f"port {port} is busy; using {info.port}")
        emit(info, as_json)
        if not as_json:
            print(f"JupyterLab for {principal.name}: {info.url}")
        try:
            while proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
