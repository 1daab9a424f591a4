"""Alerts for every entry point: list open (or all) alerts, resolve one; deliver them to webhooks.

Alerts are raised by the platform itself (drift and error-rate monitors, failed workflow steps)
through ``store.create_alert``; people look at them and resolve them here. Viewing needs
``model.view`` (every role that sees models sees what went wrong with them); resolving needs
``deploy.manage``. Both calls are audited.

Webhooks (the ``monitor`` workflow's ``webhook_url``) are requests the platform makes on a user's
behalf from inside the cluster, so they must not reach what only the cluster can reach (cloud
metadata at 169.254.169.254, the Ray dashboard, the gateway on loopback, private services).
``check_webhook_url`` runs when the monitor is created (a 4xx names the problem) and
``post_webhook`` checks again when it sends: it resolves the host itself, checks every address
and connects to the checked one (a name that resolves elsewhere by then, DNS rebinding, is
refused), and never follows redirects. Only http(s); no loopback, link-local, private, shared,
multicast, reserved or unspecified targets unless the admin lists the host or network in
``Settings.webhook_allowed_hosts``.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import InvalidInput
from dlplatform.metadata import Alert
from dlplatform.metadata.records import check_page

if TYPE_CHECKING:
    from dlplatform.context import Backend

MAX_ALERTS_PAGE = 500
_MAX_SCANNED = 100_000


def list_alerts(
    backend: Backend,
    principal: Principal,
    *,
    include_resolved: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """One page of alerts, newest first, and the total number matching.

    Raises:
        InvalidInput: ``limit`` outside 1..MAX_ALERTS_PAGE or a negative ``offset``.
        PermissionDenied: the caller lacks ``model.view``.
    """
    check_page(limit, offset, MAX_ALERTS_PAGE)
    store = backend.store
    authorize(store, principal, Permission.MODEL_VIEW, "alerts")
    every = store.list_alerts(include_resolved=include_resolved, limit=_MAX_SCANNED)
    page = every[offset : offset + limit]
    audit(store, principal, "alerts.view", "alerts", f"returned {len(page)} of {len(every)}")
    return page, len(every)


def resolve_alert(backend: Backend, principal: Principal, alert_id: int) -> Alert:
    """Mark an alert resolved. Resolving a resolved alert is harmless (it keeps its first time).

    Raises:
        InvalidInput: a non-positive id.
        PermissionDenied: the caller lacks ``deploy.manage``.
        NotFound: no such alert.
    """
    if not isinstance(alert_id, int) or alert_id < 1:
        raise InvalidInput(f"alert id must be a positive integer, got {str(alert_id)[:20]!r}")
    store = backend.store
    target = f"alert:{alert_id}"
    authorize(store, principal, Permission.DEPLOY_MANAGE, target)
    alert = store.get_alert(alert_id)
    if alert.resolved_at is None:
        alert = store.resolve_alert(alert_id)
    audit(store, principal, "alerts.resolve", target, f"kind={alert.kind}")
    return alert


# --- webhooks ---------------------------------------------------------------------------------

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_ALLOW_HINT = (
    "an admin can allow it in the setting webhook_allowed_hosts (DLP_WEBHOOK_ALLOWED_HOSTS)"
)
MAX_WEBHOOK_URL = 2000


def _literal_ip(host: str) -> IPAddress | None:
    """The address ``host`` spells, also in the legacy IPv4 forms resolvers accept
    (``2852039166``, ``0xa9.0xfe.0xa9.0xfe``, ``127.1``); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefx." for c in host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def _forbidden(ip: IPAddress) -> str | None:
    """Why a webhook may not reach ``ip`` (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return _forbidden(embedded)
    for kind, flag in (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
    ):
        if flag:
            return kind
    if not ip.is_global:  # private ranges, 100.64/10, documentation and reserved blocks
        return "private"
    return None


def _allowance(allowed_hosts: Sequence[str]) -> tuple[set[str], list[IPNetwork]]:
    """(allowed names, allowed networks) from the setting's entries."""
    names: set[str] = set()
    networks: list[IPNetwork] = []
    for entry in allowed_hosts:
        text = entry.strip().lower().strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.rstrip("."))
    return names, networks


def _split(url: str) -> tuple[SplitResult, str, int]:
    if not isinstance(url, str) or not url or len(url) > MAX_WEBHOOK_URL:
        raise InvalidInput(
            f"webhook_url must be an http(s) URL of at most {MAX_WEBHOOK_URL} characters"
        )
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("webhook_url must not contain spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput(f"webhook_url must be an http(s) URL, got scheme {parts.scheme!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise InvalidInput(f"webhook_url {url[:80]!r} has no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise InvalidInput(f"webhook_url {url[:80]!r} has an invalid port") from None
    return parts, host, port


def check_webhook_url(url: str, allowed_hosts: Sequence[str] = ()) -> str:
    """Check a webhook URL when it is given (no DNS lookup: ``post_webhook`` resolves).

    Raises:
        InvalidInput: not http(s), no host, or a host that is (or spells) a loopback,
            link-local, private, multicast, reserved or unspecified address, or ``localhost``,
            unless ``allowed_hosts`` lists the host or a network holding the address.
    """
    _, host, _ = _split(url)
    names, networks = _allowance(allowed_hosts)
    if host in names:
        return url
    ip = _literal_ip(host)
    if ip is None:
        if host == "localhost" or host.endswith(".localhost"):
            raise InvalidInput(f"webhook host {host!r} is loopback; {_ALLOW_HINT}")
        return url
    reason = _forbidden(ip)
    if reason is not None and not any(ip in net for net in networks):
        raise InvalidInput(f"webhook host {host!r} is a {reason} address; {_ALLOW_HINT}")
    return url


def _checked_address(host: str, port: int, allowed_hosts: Sequence[str]) -> str:
    """The address to connect to: ``host`` resolved now, each of its addresses checked."""
    names, networks = _allowance(allowed_hosts)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise InvalidInput(f"webhook host {host!r} does not resolve: {exc}") from None
    addresses = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
    if not addresses:
        raise InvalidInput(f"webhook host {host!r} does not resolve")
    if host in names:
        return addresses[0]
    for address in addresses:
        ip = ipaddress.ip_address(address)
        reason = _forbidden(ip)
        if reason is not None and not any(ip in net for net in networks):
            raise InvalidInput(
                f"webhook host {host!r} resolves to {address}, a {reason} address; {_ALLOW_HINT}"
            )
    return addresses[0]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to ``host`` (its Host header) over a socket to an address checked beforehand."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        super().__init__(host, port, timeout=timeout_s)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ``host`` (certificate checked for that name) over a socket to a checked address."""

    def __init__(self, host: str, port: int, address: str, timeout_s: float) -> None:
        self.tls = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout_s, context=self.tls)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(sock, server_hostname=self.host)


def post_webhook(
    url: str, body: dict[str, Any], *, allowed_hosts: Sequence[str] = (), timeout_s: float = 10.0
) -> int:
    """POST ``body`` as JSON to ``url``; returns the response status (redirects are not
    followed). The URL is checked again and its host resolved and checked here, and the request
    goes to the checked address.

    Raises:
        InvalidInput: the URL or an address its host resolves to is refused (see
            ``check_webhook_url``), or the host does not resolve.
        OSError: the request failed (connection, TLS, timeout).
    """
    check_webhook_url(url, allowed_hosts)
    parts, host, port = _split(url)
    address = _checked_address(host, port, allowed_hosts)
    kind = _PinnedHTTPSConnection if parts.scheme.lower() == "https" else _PinnedHTTPConnection
    connection = kind(host, port, address, timeout_s)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST", path, body=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "User-Agent": "dlplatform-webhook"},
        )  # fmt: skip
        response = connection.getresponse()
        response.read(64 * 1024)
        return int(response.status)
    except http.client.HTTPException as exc:
        raise OSError(f"webhook {host}: {type(exc).__name__}: {exc}") from exc
    finally:
        connection.close()
