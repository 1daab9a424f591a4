"""The SDK's HTTP client over the in-process gateway (real routes, real DuckDB; no socket).

- ``gateway_transport``: an httpx transport into ``create_app(backend)`` for the test's backend.
- ``http_platform(token)``: a ``dlplatform.client.Platform`` as the owner of ``token``.
- ``client``: a Starlette test client of the gateway app; ``lenient_client``: the same on port
  8000 that answers a server error as a 500 instead of raising it in the test; ``bearer(token)``:
  the Authorization header; ``run(*args, token=None)``: the ``dlp`` command in-process.
- ``cli_as``: makes the ``dlp`` command's ``platform()`` use ``http_platform``; call it with a
  token to switch users (the admin's by default).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator

import httpx
import pytest

from dlplatform.context import Backend

with warnings.catch_warnings():  # starlette prefers httpx2; the client is on httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

CLIENT_BASE = "http://127.0.0.1:8000"


@pytest.fixture
def gateway_transport(backend: Backend) -> Iterator[httpx.BaseTransport]:
    from dlplatform.api.app import create_app

    with TestClient(create_app(backend), base_url=CLIENT_BASE) as tc:
        yield tc._transport


@pytest.fixture
def http_platform(gateway_transport: httpx.BaseTransport) -> Callable[[str], object]:
    from dlplatform.client import HttpClient, Platform

    def make(token: str) -> Platform:
        return Platform(HttpClient(CLIENT_BASE, token, transport=gateway_transport, retries=0))

    return make


@pytest.fixture
def cli_as(
    http_platform: Callable[[str], object], admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str], None]:
    from dlplatform.cli import _common

    who = {"token": admin_token}
    monkeypatch.setattr(_common, "platform", lambda home=None, **_: http_platform(who["token"]))

    def switch(token: str) -> None:
        who["token"] = token

    return switch


@pytest.fixture
def client(backend: Backend) -> Iterator[TestClient]:
    """The gateway app over the test's backend, as a Starlette test client (Host 127.0.0.1)."""
    from dlplatform.api.app import create_app

    with TestClient(create_app(backend), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
def lenient_client(backend: Backend) -> Iterator[TestClient]:
    from dlplatform.api.app import create_app

    with TestClient(create_app(backend), base_url=CLIENT_BASE, raise_server_exceptions=False) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def run(cli_as: Callable[[str], None], admin_token: str) -> Callable[..., object]:
    """``run(*args, token=None)``: the ``dlp`` command in-process, as the admin or ``token``."""
    from typer.testing import CliRunner

    from dlplatform.cli import app as dlp

    runner = CliRunner()

    def invoke(*args: str, token: str | None = None) -> object:
        cli_as(token or admin_token)
        return runner.invoke(dlp, list(args))

    return invoke
