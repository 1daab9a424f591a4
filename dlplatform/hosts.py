"""The Host header check against DNS rebinding: one rule for the gateway and the model endpoints.

A page on ``evil.example`` whose name resolves to 127.0.0.1 still makes the browser send
``Host: evil.example``; answering only the configured names (``Settings.allowed_hosts``, any
port) closes that door on every verb. The gateway applies it as its outermost middleware
(``api.middleware.HostCheckMiddleware``), each model replica first thing on every request, past
every ingress Serve may put in front of it (``serve.deployment``).
"""

from __future__ import annotations

from collections.abc import Iterable


class AllowedHosts:
    """The Host header values a server answers: the configured names, on any port (``*``: all)."""

    __slots__ = ("any_host", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(name.strip().lower() for name in names)
        self.any_host = "*" in self.names

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header (None: none sent) may be answered."""
        return self.any_host or (header is not None and host_name(header) in self.names)

    @staticmethod
    def refusal(header: str | None) -> str:
        """The message of the 400 answer to a refused ``Host`` header."""
        return f"host {(header or '')[:80]!r} is not served here"


def host_name(header: str) -> str:
    """The name part of a ``Host`` header, lower case: ``[::1]:8000`` → ``[::1]``,
    ``Example.COM:80`` → ``example.com``."""
    value = header.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[: end + 1] if end > 0 else value
    name, sep, port = value.rpartition(":")
    if sep and port.isdigit():
        return name
    return value


__all__ = ["AllowedHosts", "host_name"]
