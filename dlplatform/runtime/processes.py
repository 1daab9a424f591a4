"""Processes and ports of this machine, read from ``/proc`` and probed with sockets: a
session's members and offspring, which recorded pids still live, free ports.

Light: no Ray, no settings.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)


def _proc_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, parent, process group,
    session, ...) of a live, non-zombie process, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return None if fields[0] in ("Z", "X") else fields


def proc_stat(pid: int) -> tuple[int, int] | None:
    """(process group, session) of a live, non-zombie process, or None."""
    fields = _proc_fields(pid)
    return None if fields is None else (int(fields[2]), int(fields[3]))


def session_pids(session_id: int) -> list[int]:
    """Every live process of the session led by ``session_id`` (the head and all it spawned)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = proc_stat(int(entry.name))
            if stat is not None and stat[1] == session_id:
                out.append(int(entry.name))
    return sorted(out)


def offspring(session_id: int) -> dict[int, int]:
    """pid → session of every live process outside the session ``session_id`` that descends
    from one of its members: Ray's job supervisors start each job's driver (a training job's
    ``python -m dlplatform.train.entrypoint``) in a session of its own."""
    parents: dict[int, tuple[int, int]] = {}  # pid -> (parent, session)
    for entry in Path("/proc").iterdir():
        fields = _proc_fields(int(entry.name)) if entry.name.isdigit() else None
        if fields is not None:
            parents[int(entry.name)] = (int(fields[1]), int(fields[3]))
    out: dict[int, int] = {}
    for pid, (parent, session) in parents.items():
        ancestor, hops = parent, 0  # hops: a pid reused during the scan could make a loop
        while session != session_id and ancestor in parents and hops < 64:
            if parents[ancestor][1] == session_id:
                out[pid] = session
                break
            ancestor, hops = parents[ancestor][0], hops + 1
    return out


def alive(pids: list[int], session_id: int | None) -> list[int]:
    """Recorded pids that still run in the recorded session (a reused pid does not count)."""
    alive = []
    for pid in pids:
        stat = proc_stat(pid)
        if stat is not None and (session_id is None or stat[1] == session_id):
            alive.append(pid)
    return alive


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_ports(count: int, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct free ports chosen by the kernel, none of them in ``avoid`` (the
    gateway's port: Ray once gave its client server the port the gateway was about to take)."""
    socks = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            if s.getsockname()[1] in avoid:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. SO_REUSEADDR as servers set it: the
    TIME_WAIT connections a just-stopped gateway leaves do not count as in use (without it
    ``dlp down && dlp up`` on the same port failed for about a minute)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


PORTS_FREE_WAIT_S = 10.0
"""How long ``down`` waits for the ports its head used to be free again (a process that has
exited can hold a listening socket a moment longer while the kernel closes it)."""


def wait_ports_free(ports: list[int]) -> list[int]:
    """Wait until every port in ``ports`` could be listened on again, for up to
    ``PORTS_FREE_WAIT_S``; returns those still taken (logged: something else holds them)."""
    deadline = time.monotonic() + PORTS_FREE_WAIT_S
    while True:
        taken = [p for p in ports if p and not port_free(p)]
        if not taken or time.monotonic() > deadline:
            if taken:
                log.warning("ports %s are still in use after the head stopped", taken)
            return taken
        time.sleep(0.1)
