"""Issue #18, finding 11: monitor webhooks reach only public http(s) hosts unless an admin allows
the host; checked when the monitor is created and again, with the host resolved, when it sends
(DNS rebinding). A real HTTP server on loopback stands in for the receiver."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dlplatform.alerts import check_webhook_url, post_webhook
from dlplatform.config import Settings
from dlplatform.errors import InvalidInput
from dlplatform.workflows import build_workflow
from dlplatform.workflows.pipelines import _post

MONITOR = "dlplatform.workflows.pipelines:monitor"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://2852039166/", "link-local"),  # 169.254.169.254 as one number
        ("http://0xa9.0xfe.0xa9.0xfe/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://127.0.0.1:8000/api/v1/users", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://[::1]:8265/", "loopback"),
        ("http://localhost:8265/api/jobs/", "loopback"),
        ("http://dashboard.localhost/", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("https://192.168.1.1/", "private"),
        ("http://100.64.0.1/", "private"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("file:///etc/passwd", "http(s) URL"),
        ("gopher://example.com/", "http(s) URL"),
        ("http:///nohost", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://exa mple.com/", "spaces"),
    ],
)
def test_refused_at_creation_with_the_reason(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_webhook_url(url)


def test_public_hosts_pass_and_admins_may_allow_internal_ones() -> None:
    for url in ("https://hooks.example.com/services/T0/B0", "http://93.184.216.34:8080/x"):
        assert check_webhook_url(url) == url
    assert check_webhook_url("http://10.0.0.5/hook", ["10.0.0.0/8"])
    assert check_webhook_url("http://localhost:9/hook", ["localhost"])
    assert check_webhook_url("http://[fd00::5]/hook", ["fd00::/8"])
    with pytest.raises(InvalidInput, match="private"):
        check_webhook_url("http://10.0.0.5/hook", ["192.168.0.0/16", "alerts.internal"])


def test_the_monitor_refuses_an_internal_webhook_when_it_is_created() -> None:
    params = {"deployment": "iris", "webhook_url": "http://169.254.169.254/latest/meta-data/"}
    with pytest.raises(InvalidInput, match="link-local address"):
        build_workflow(MONITOR, params)
    with pytest.raises(InvalidInput, match="http\\(s\\) URL"):
        build_workflow(MONITOR, {"deployment": "iris", "webhook_url": "file:///etc/passwd"})
    allowed = Settings(webhook_allowed_hosts=["169.254.169.254"])
    assert list(build_workflow(MONITOR, params, settings=allowed).steps) == [
        "measure",
        "check-and-alert",
    ]
    assert build_workflow(MONITOR, {"deployment": "iris", "webhook_url": "https://h.example/x"})


def _resolving_to(address: str) -> Any:
    def fake(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (address, port))]

    return fake


def test_a_name_that_resolves_inside_is_refused_when_sending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name passed the check at creation, then resolves to cloud metadata."""
    url = "http://hooks.example.com/alert"
    assert check_webhook_url(url) == url
    connections: list[Any] = []
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("169.254.169.254"))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: connections.append(a))
    with pytest.raises(InvalidInput, match=r"resolves to 169\.254\.169\.254, a link-local address"):
        post_webhook(url, {"kind": "drift"})
    outcome = _post(url, {"kind": "drift"}, [])  # the monitor's step: logged, not raised
    assert outcome.startswith("refused: ") and "169.254.169.254" in outcome
    monkeypatch.setattr(socket, "getaddrinfo", _resolving_to("::ffff:10.1.2.3"))
    with pytest.raises(InvalidInput, match="private address"):
        post_webhook(url, {"kind": "drift"})
    assert connections == []


@pytest.fixture
def receiver() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = int(self.headers["Content-Length"])
            got.append({"path": self.path, "host": self.headers["Host"],
                        "body": json.loads(self.rfile.read(size))})  # fmt: skip
            redirect = self.path.startswith("/redirect")
            self.send_response(302 if redirect else 204)
            if redirect:  # a redirect to cloud metadata must not be followed
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], got
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_allowed_host_receives_the_alert_and_redirects_are_not_followed(
    receiver: tuple[int, list[dict[str, Any]]],
) -> None:
    port, got = receiver
    url = f"http://127.0.0.1:{port}/hook?team=ml"
    with pytest.raises(InvalidInput, match="loopback"):
        post_webhook(url, {"kind": "accuracy"})
    assert got == []
    assert post_webhook(url, {"kind": "accuracy"}, allowed_hosts=["127.0.0.1"]) == 204
    assert got == [
        {"path": "/hook?team=ml", "host": f"127.0.0.1:{port}", "body": {"kind": "accuracy"}}
    ]
    status = post_webhook(f"http://127.0.0.1:{port}/redirect", {}, allowed_hosts=["127.0.0.0/8"])
    assert status == 302 and len(got) == 2
    assert _post(url, {"kind": "drift"}, ["127.0.0.1"]) == "sent (HTTP 204)"
