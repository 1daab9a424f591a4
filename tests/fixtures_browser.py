"""Browser fixtures: headless Chromium (Debian's package, driven by Selenium) and a live gateway.

Chromium comes from the system (``apt-get install -y chromium chromium-driver``); Selenium talks to
``/usr/bin/chromedriver`` directly, so nothing is downloaded. ``live_gateway(app)`` serves an ASGI
app with uvicorn on a free loopback port in a background thread.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["browser"]  # the fixture conftest re-exports; import the helpers by name

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
# CI may collect them from elsewhere: DLP_UI_SCREENSHOT_DIR (a test setting, read only here)
SCREENSHOT_DIR = Path(
    os.environ.get("DLP_UI_SCREENSHOT_DIR")
    or Path(tempfile.gettempdir()) / "dlplatform-ui-screenshots"
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """A headless Chromium (Selenium WebDriver) with a fresh profile, 1280x800, for the session."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(
                f"{path} is missing: install Chromium with "
                "`apt-get update && apt-get install -y chromium chromium-driver`"
            )
    profile = tempfile.mkdtemp(prefix="dlp-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1280,800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def live_gateway(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1:<free port> until the block ends; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def screenshot(driver: Any, name: str) -> Path:
    """Save a PNG of the whole page under SCREENSHOT_DIR (kept as a test artifact)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOT_DIR / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
