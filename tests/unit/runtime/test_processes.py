"""Ports `dlp up` chooses: a just-stopped gateway's port is free again at once, and Ray's ports
never take the gateway's."""

from __future__ import annotations

import socket

from dlplatform.runtime.processes import free_ports, port_free


def test_a_port_with_only_time_wait_connections_is_free() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server side closes first: its end stays in TIME_WAIT
    client.close()
    server.close()
    assert port_free(port)


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert not port_free(server.getsockname()[1])


def test_free_ports_avoid_the_gateway_port() -> None:
    taken = free_ports(3)
    again = free_ports(20, set(taken))
    assert len(set(again)) == 20 and not set(again) & set(taken)
