"""`dlp up` → HTTP with the token file → `dlp status` → `dlp up` again → `dlp users create` →
`dlp down`, all as real subprocesses on a head of their own (not the session's ray_cluster)."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dlplatform import runtime

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _session_members(session_id: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id:
                members.append(int(entry.name))
    return members


def _tcp_listeners() -> dict[int, tuple[str, int]]:
    """Socket inode → (address, port) of every listening TCP socket on the machine."""
    out: dict[int, tuple[str, int]] = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # LISTEN
                continue
            hex_addr, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_addr)
            if width == 8:
                addr = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            out[int(fields[9])] = (addr, int(hex_port, 16))
    return out


def _listening(pids: list[int]) -> dict[int, list[tuple[str, int]]]:
    """pid → the TCP addresses it listens on."""
    listeners = _tcp_listeners()
    found: dict[int, list[tuple[str, int]]] = {}
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes = [int(link[8:-1]) for link in links if link.startswith("socket:[")]
        found[pid] = [listeners[i] for i in inodes if i in listeners]
    return found


def _loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


@pytest.fixture
def home() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dlp-up-", dir="/tmp"))  # short: Ray's socket paths
    yield path
    cluster = path / "cluster.json"
    if cluster.exists():  # the test failed half-way: stop what it started
        _dlp("down", "--home", str(path))
    shutil.rmtree(path, ignore_errors=True)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DLP_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # token auth stays on: RAY_AUTH_MODE is unset
    return env


def _dlp(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from dlplatform.cli import main; main()", *args],
        env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def test_up_status_users_down(home: Path) -> None:
    port = _free_port()
    up = _dlp("up", "--home", str(home), "--port", str(port), "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    info = json.loads(up.stdout)
    assert info["api_url"] == f"http://127.0.0.1:{port}/api/v1" and info["started"] is True
    token_file = Path(info["token_file"])
    assert token_file.parent == home
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "ray_auth_token").stat().st_mode) == 0o600
    cluster = json.loads((home / "cluster.json").read_text())
    assert cluster["auth_mode"] == "token" and cluster["pids"]
    pids = cluster["pids"]
    token = token_file.read_text().strip()
    api = info["api_url"]

    assert httpx.get(f"{api}/healthz", timeout=30).status_code == 200
    me = httpx.get(f"{api}/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and me.json()["name"] == "admin"
    assert httpx.get(f"{api}/whoami", timeout=30).status_code == 401

    # Serve's HAProxy ingress answers on the API port, from this home's private directory,
    # and nothing the head started listens beyond loopback (HAProxy's stats and Prometheus
    # listeners and the replicas' gRPC servers default to every interface in Ray 2.60).
    members = _session_members(cluster["session_id"])
    listening = _listening(members)
    haproxy = [pid for pid in members if "haproxy" in _cmdline(pid).split(" ")[0]]
    assert haproxy, "no HAProxy in the head's session"
    assert all("/tmp/dlp-hap-" in _cmdline(pid) for pid in haproxy)
    assert ("127.0.0.1", port) in [a for pid in haproxy for a in listening[pid]]
    exposed = {(pid, _cmdline(pid)[:60], addr) for pid, addrs in listening.items()
               for addr, _ in addrs if not _loopback(addr)}  # fmt: skip
    assert not exposed, exposed

    status = _dlp("status", "--home", str(home), "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    st = json.loads(status.stdout)
    assert st["running"] and st["metadata_actor"] and st["gateway_healthy"]
    assert {a["name"]: a["status"] for a in st["apps"]}["dlp-gateway"] == "RUNNING"

    again = _dlp("up", "--home", str(home), "--port", str(port), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["started"] is False
    assert token_file.read_text().strip() == token  # the admin token is created only once

    created = _dlp("users", "create", "ursula", "--role", "viewer", "--home", str(home), "--json")
    assert created.returncode == 0, created.stderr[-3000:]
    new_token = json.loads(created.stdout)["token"]
    me = httpx.get(f"{api}/whoami", headers={"Authorization": f"Bearer {new_token}"}, timeout=30)
    assert me.json() == {"name": "ursula", "role": "viewer", "groups": []}

    down = _dlp("down", "--home", str(home), "--json")
    assert down.returncode == 0, down.stderr[-3000:]
    assert json.loads(down.stdout)["stopped"] is True
    assert not [pid for pid in pids if _alive(pid)]
    assert not _session_members(cluster["session_id"])  # nor anything the head spawned later
    assert not (home / "cluster.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{api}/healthz", timeout=5)
    # down returns once its ports are free: `dlp down && dlp up` on the same port works at once
    assert runtime._port_free(port)
