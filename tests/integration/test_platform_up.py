"""One platform of its own, started by a real `dlp up` (not the session's ray_cluster), for
the life of this module; the tests run in file order against it:

1. `dlp up` → HTTP with the token file → `dlp status` → `dlp up` again → `dlp users create`;
2. serving survives its own processes dying: a model replica, the gateway's replica and HAProxy
   are killed (SIGKILL, by PID, members of this head's session only) under concurrent clients;
3. a hard stop: every process of the platform is killed at once (a power cut, not `dlp down`)
   with a training job, a workflow and dataset pushes in flight; the DuckDB file passes its
   integrity check and `dlp up` on the same home brings everything back;
4. `dlp down` stops every process, and frees the port for the next `dlp up`.

One platform start serves all four (each start costs a minute of the suite's budget). The
failover figures are printed (`pytest -s`).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from dlplatform.client import Platform, connect
from dlplatform.errors import DLPlatformError
from dlplatform.metadata import RunStatus
from dlplatform.metadata.backup import check_database
from dlplatform.runtime.processes import port_free

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


def _descendants(roots: list[int]) -> list[int]:
    """Live processes below ``roots`` in the process tree (by parent pid), e.g. the Ray job
    drivers that the head's job supervisors start in sessions of their own."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        kids = children.get(todo.pop(), [])
        found += kids
        todo += kids
    return found


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


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DLP_"))}
    env["RAY_USAGE_STATS_ENABLED"] = "0"  # token auth stays on: RAY_AUTH_MODE is unset
    return env


def _dlp(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from dlplatform.cli import main; main()", *args],
        env=_env(), capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip


def _ray_log_lines(output: str) -> list[str]:
    """Lines of Ray's or Serve's loggers (``2026-... INFO worker.py:...``, ``INFO ... serve``)."""
    return [line for line in output.splitlines() if re.search(r"\b(DEBUG|INFO|WARNING)\b", line)]


@dataclass(frozen=True)
class Up:
    """The platform this module started: where it answers and the first `dlp up`'s answer."""

    home: Path
    port: int
    api: str
    token: str
    info: dict[str, Any]

    def cluster(self) -> dict[str, Any]:
        """The current ``cluster.json`` (a new one after each start)."""
        return json.loads((self.home / "cluster.json").read_text())  # type: ignore[no-any-return]

    def members(self) -> list[int]:
        return _session_members(self.cluster()["session_id"])

    def processes(self) -> set[int]:
        """Every process of the platform: its head's session and what that session started
        in sessions of their own (job drivers)."""
        members = self.members()
        return set(members) | set(_descendants(members))

    def named(self, prefix: str) -> list[int]:
        """Members of the head's session whose command line starts with ``prefix``."""
        return [pid for pid in self.members() if _cmdline(pid).startswith(prefix)]

    def haproxy(self) -> list[int]:
        return [pid for pid in self.members() if "haproxy" in _cmdline(pid).split(" ")[0]]

    def client(self) -> Platform:
        return connect(url=self.api, token=self.token)


@pytest.fixture(scope="module")
def platform() -> Iterator[Up]:
    home = Path(tempfile.mkdtemp(prefix="dlp-up-", dir="/tmp"))  # short: Ray's socket paths
    try:
        port = _free_port()
        started = time.monotonic()
        up = _dlp("up", "--home", str(home), "--port", str(port), "--json")
        assert up.returncode == 0, up.stderr[-3000:]
        print(f"\ndlp up: {time.monotonic() - started:.1f} s")
        info = json.loads(up.stdout)
        token = Path(info["token_file"]).read_text().strip()
        yield Up(home=home, port=port, api=info["api_url"], token=token, info=info)
    finally:
        if (home / "cluster.json").exists():  # a test failed half-way: stop what it started
            _dlp("down", "--home", str(home))
        shutil.rmtree(home, ignore_errors=True)


MODEL = "m-failover"
ROW = [0.1, 0.2, 0.3, 0.4]


@pytest.fixture(scope="module")
def served(platform: Up) -> str:
    """A model version deployed with two replicas. The version comes from a tracked run that
    logs an untrained built-in MLP through the SDK (a training job would take a minute more of
    the suite's budget); it is stored and served like a trained one."""
    from dlplatform.client.runs import RunsClient
    from dlplatform.models.artifact import BUILTIN_BUILDER
    from dlplatform.models.builtin import build_model
    from dlplatform.models.spec import ModelSignature

    started = time.monotonic()
    config = {"model": "mlp", "input_shape": [4], "num_outputs": 2, "params": {"hidden": 8}}
    signature = ModelSignature(kind="tabular", features=("f0", "f1", "f2", "f3"),
                               dtypes=("double",) * 4, input_shape=(4,), task="classification",
                               label="y", classes=(0, 1))  # fmt: skip
    with platform.client() as p:
        with RunsClient(p.http).start(name=MODEL) as run:
            version = run.log_model(build_model(config), signature, name=MODEL,
                                    builder=BUILTIN_BUILDER, config=config)  # fmt: skip
        info = p.serving.deploy(MODEL, min_replicas=2, max_replicas=2, num_cpus=0.1)
        assert info.replicas == 2, info
        assert p.serving.predict(MODEL, [ROW]).version == version.version
    print(f"\nmodel registered and deployed with 2 replicas: {time.monotonic() - started:.1f} s")
    return MODEL


class _Load:
    """``threads`` threads calling ``call(client_state)`` in a loop until stopped; each call's
    (start, end, error) is recorded (error "" when it succeeded)."""

    def __init__(self, call: Callable[[Any], None], make: Callable[[], Any], threads: int) -> None:
        self._call, self._make = call, make
        self._stop = threading.Event()
        self.results: list[tuple[float, float, str]] = []
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def _loop(self) -> None:
        state = self._make()
        try:
            while not self._stop.is_set():
                started, error = time.monotonic(), ""
                try:
                    self._call(state)
                except (httpx.HTTPError, DLPlatformError, AssertionError) as exc:
                    error = f"{type(exc).__name__}: {str(exc)[:120]}"
                self.results.append((started, time.monotonic(), error))
                if error:
                    time.sleep(0.05)  # a refused connection comes back at once
        finally:
            state.close()

    def __enter__(self) -> _Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=60)

    def failed(self, since: float) -> list[str]:
        return [error for start, end, error in self.results if error and end >= since]

    def served_after(self, since: float) -> int:
        return sum(1 for start, _, error in self.results if not error and start >= since)

    def outage_s(self, since: float) -> float:
        """From ``since`` to the end of the first success that started after the last failure
        (0 when nothing failed)."""
        failures = [end for _, end, error in self.results if error and end >= since]
        if not failures:
            return 0.0
        after = [end for start, end, error in self.results if not error and start >= failures[-1]]
        return (min(after) if after else float("inf")) - since

    def wait_recovered(self, since: float, timeout_s: float) -> None:
        """Until the last 10 calls, all started 1 s or more after ``since``, have succeeded (or
        the timeout)."""
        deadline = since + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.2)
            last = self.results[-10:]
            if len(last) == 10 and last[0][0] > since + 1 and not any(e for *_, e in last):
                return


def _raw_client(platform: Up) -> httpx.Client:
    auth = {"Authorization": f"Bearer {platform.token}"}
    return httpx.Client(base_url=f"http://127.0.0.1:{platform.port}", headers=auth, timeout=30)


def _raw_predict(client: httpx.Client) -> None:
    reply = client.post(f"/models/{MODEL}", json={"inputs": [ROW]})
    assert reply.status_code == 200, f"{reply.status_code} {reply.text[:80]}"


def _raw_health(client: httpx.Client) -> None:
    reply = client.get("/api/v1/healthz")
    assert reply.status_code == 200, f"{reply.status_code} {reply.text[:80]}"


def _kill(pid: int) -> float:
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def _settled_haproxy(platform: Up) -> int:
    """The HAProxy process once it has stayed the same for 3 s: each change of the replicas
    behind it (the new gateway replica) makes Serve start a new one in its place."""
    seen, since = platform.haproxy(), time.monotonic()
    deadline = since + 60
    while len(seen) != 1 or time.monotonic() - since < 3:
        assert time.monotonic() < deadline, f"HAProxy did not settle: {seen}"
        time.sleep(0.25)
        now = platform.haproxy()
        if now != seen:
            seen, since = now, time.monotonic()
    return seen[0]


def _api_outage(platform: Up, pid: int, what: str, timeout_s: float = 120) -> None:
    """SIGKILL ``pid`` while raw HTTP and SDK clients call ``/healthz``; assert that the API
    answers again by itself within ``timeout_s``, and print for how long it did not."""
    raw = _Load(_raw_health, lambda: _raw_client(platform), threads=2)
    sdk = _Load(lambda p: p.health(), platform.client, threads=1)
    with raw, sdk:
        time.sleep(1.0)
        killed = _kill(pid)
        raw.wait_recovered(killed, timeout_s=timeout_s)
    gap = raw.outage_s(killed)
    assert gap < timeout_s, (
        f"the API did not come back after {what} died: {raw.failed(killed)[-3:]}"
    )
    print(f"{what} killed: API unanswered for {gap:.1f} s; {len(raw.failed(killed))} raw "
          f"requests and {len(sdk.failed(killed))} SDK calls failed")  # fmt: skip


def test_up_status_users(platform: Up) -> None:
    home, port, info, token, api = (platform.home, platform.port, platform.info, platform.token,
                                    platform.api)  # fmt: skip
    assert info["api_url"] == f"http://127.0.0.1:{port}/api/v1" and info["started"] is True
    token_file = Path(info["token_file"])
    assert token_file.parent == home
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / "ray_auth_token").stat().st_mode) == 0o600
    cluster = platform.cluster()
    assert cluster["auth_mode"] == "token" and cluster["pids"]

    assert httpx.get(f"{api}/healthz", timeout=30).status_code == 200
    me = httpx.get(f"{api}/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert me.status_code == 200 and me.json()["name"] == "admin"
    assert httpx.get(f"{api}/whoami", timeout=30).status_code == 401

    _assert_ingress_private(platform)

    status = _dlp("status", "--home", str(home), "--json")
    assert status.returncode == 0, status.stderr[-3000:]
    st = json.loads(status.stdout)
    assert st["running"] and st["metadata_actor"] and st["gateway_healthy"]
    assert {a["name"]: a["status"] for a in st["apps"]}["dlp-gateway"] == "RUNNING"
    plain = _dlp("status", "--home", str(home))  # sizes in GiB, no Ray or Serve log lines
    assert plain.returncode == 0 and "GiB" in plain.stdout, plain.stderr[-3000:]
    assert not _ray_log_lines(status.stderr + plain.stdout + plain.stderr)

    again = _dlp("up", "--home", str(home), "--port", str(port), "--json")
    assert again.returncode == 0, again.stderr[-3000:]
    assert not _ray_log_lines(again.stderr)  # they go to <home>/logs/ray-noise.log
    assert json.loads(again.stdout)["started"] is False
    assert token_file.read_text().strip() == token  # the admin token is created only once

    created = _dlp("users", "create", "ursula", "--role", "viewer", "--home", str(home), "--json")
    assert created.returncode == 0, created.stderr[-3000:]
    new_token = json.loads(created.stdout)["token"]
    me = httpx.get(f"{api}/whoami", headers={"Authorization": f"Bearer {new_token}"}, timeout=30)
    assert me.json() == {"name": "ursula", "role": "viewer", "groups": []}


def _assert_ingress_private(platform: Up) -> None:
    """Serve's HAProxy ingress answers on the API port, from this home's private directory, and
    nothing the head started listens beyond loopback (HAProxy's stats and Prometheus listeners
    and the replicas' gRPC servers default to every interface in Ray 2.60)."""
    members = platform.members()
    listening = _listening(members)
    haproxy = platform.haproxy()
    assert haproxy, "no HAProxy in the head's session"
    assert all("/tmp/dlp-hap-" in _cmdline(pid) for pid in haproxy)
    assert ("127.0.0.1", platform.port) in [a for pid in haproxy for a in listening.get(pid, [])]
    exposed = {(pid, _cmdline(pid)[:60], addr) for pid, addrs in listening.items()
               for addr, _ in addrs if not _loopback(addr)}  # fmt: skip
    assert not exposed, exposed


def test_serving_survives_its_own_processes_dying(platform: Up, served: str) -> None:
    """A model replica, then the gateway's replica, then HAProxy, each SIGKILLed under
    concurrent clients: the SDK's clients see no failed prediction (it retries them), raw HTTP
    clients a few; the gateway and HAProxy come back by themselves. Figures are printed."""
    # 1. One of the model's two replicas dies under load.
    replicas = platform.named(f"ray::ServeReplica:model-{served}:")
    assert len(replicas) == 2, replicas
    raw = _Load(_raw_predict, lambda: _raw_client(platform), threads=3)
    sdk = _Load(lambda p: p.serving.predict(served, [ROW]), platform.client, threads=2)
    with raw, sdk:
        time.sleep(1.5)
        killed = _kill(replicas[0])
        time.sleep(3.0)
    assert raw.served_after(killed) > 0 and sdk.served_after(killed) > 0
    assert sdk.failed(killed) == [], sdk.failed(killed)
    raw_failed = raw.failed(killed)
    assert len(raw_failed) <= 10, raw_failed  # bounded: the requests the dead replica held
    print(f"\nmodel replica killed: {len(raw.results)} raw HTTP requests, {len(raw_failed)} "
          f"failed {sorted(set(raw_failed))}; {len(sdk.results)} SDK predictions, 0 failed")  # fmt: skip
    # 2. The gateway's only replica dies: the API is back once Serve has replaced it.
    (gateway,) = platform.named("ray::ServeReplica:dlp-gateway:")
    _api_outage(platform, gateway, "gateway replica")

    # 3. HAProxy dies: Serve's controller restarts it after its health checks fail.
    haproxy = _settled_haproxy(platform)
    _api_outage(platform, haproxy, "HAProxy")
    assert platform.haproxy() != [haproxy]
    _assert_ingress_private(platform)  # the new HAProxy went through the loopback wrapper too
    with platform.client() as p:  # Serve replaced the dead model replica by itself
        assert p.serving.predict(served, [ROW]).outputs
        _wait("a new model replica", lambda: p.serving.get(served).replicas == 2, timeout_s=60)


def _table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 4))
    cols = {f"f{i}": pa.array(x[:, i]) for i in range(4)}
    cols["y"] = pa.array((x.sum(axis=1) > 2).astype(np.int64))
    return pa.table(cols)


def _pusher(p: Platform, dataset: str, acked: list[str], stop: threading.Event) -> None:
    """Append small commits until stopped or the platform stops answering; every commit the
    platform acknowledged goes into ``acked``."""
    with p:
        handle = p.datasets.get(dataset)
        n = 0
        while not stop.is_set():
            n += 1
            try:
                commit = handle.push(_table(4, n), mode="append", message=f"push {n}")
            except DLPlatformError:
                return
            acked.append(commit.id)


def _wait(what: str, done: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def test_a_hard_stop_then_up_brings_everything_back(platform: Up, served: str) -> None:
    """SIGKILL every process of the platform at once with a training job running, a workflow
    mid-step and dataset pushes in flight; then `dlp up` on the same home."""
    home, began = platform.home, time.monotonic()
    folder = home / "wf"
    folder.mkdir()
    p = platform.client()
    p.datasets.create("hard-stop-train").push(_table(256, 0), mode="overwrite")
    p.datasets.create("hard-stop-pushes").push(_table(4, 0), mode="overwrite")
    p.workflows.register("durable", "tests.integration.wf_demo:durable")
    wf = p.workflows.run("durable", {"folder": str(folder)})
    # batch_size=1: millions of steps, so the job is still running when the power goes
    job = p.training.submit(dataset="hard-stop-train", label="y", epochs=10_000, workers=1,
                            batch_size=1, params={"hidden": 8})  # fmt: skip
    _wait("the job to start", lambda: job.status().run.status is RunStatus.RUNNING)
    # A small job runs on the warm pool (no driver process of its own). Otherwise its Ray job's
    # driver runs in a session of its own, below the head's job supervisor; on a loaded machine
    # it may take long to appear: the run is RUNNING as far as the store knows.
    on_pool = (job.status().run.name or "").startswith("pool-")
    entry = f"dlplatform.train.entrypoint --run-id {job.id}"
    deadline = time.monotonic() + (0 if on_pool else 60)
    while not (driver := any(entry in _cmdline(pid) for pid in platform.processes())):
        if time.monotonic() > deadline:
            break
        time.sleep(0.3)
    _wait("the workflow's blocker step", lambda: (folder / "blocker.pid").exists())

    acked: list[str] = []
    stop = threading.Event()
    pushers = [
        threading.Thread(target=_pusher, args=(platform.client(), "hard-stop-pushes", acked, stop))
        for _ in range(2)
    ]
    for t in pushers:
        t.start()
    _wait("acknowledged pushes", lambda: len(acked) >= 4)

    # The power cut: every process of the platform, until none is left (the raylet may start a
    # worker while its siblings die).
    killed: set[int] = set()
    deadline = time.monotonic() + 30
    while left := platform.processes():
        assert time.monotonic() < deadline, f"processes {left} survive SIGKILL"
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= left
        time.sleep(0.1)
    assert not [pid for pid in platform.cluster()["pids"] if _alive(pid)]
    assert not [pid for pid in killed if _alive(pid)]  # job drivers included
    stop.set()
    for t in pushers:
        t.join(timeout=60)
    acked_now = list(acked)
    print(f"\nhard stop after {time.monotonic() - began:.1f} s of set-up: {len(killed)} processes "
          f"killed (the training job's driver among them: {driver}); {len(acked_now)} pushes "
          "acknowledged")  # fmt: skip

    check_database(home / "metadata.duckdb")  # the file as the power cut left it (WAL included)

    started = time.monotonic()
    up = _dlp("up", "--home", str(home), "--port", str(platform.port), "--json")
    assert up.returncode == 0, up.stderr[-3000:]
    assert json.loads(up.stdout)["started"] is True
    print(f"dlp up after the hard stop: {time.monotonic() - started:.1f} s")

    # every acknowledged push is stored, and nothing beyond what was in flight
    stored = [c.id for c in p.datasets.get("hard-stop-pushes").commits()]
    assert set(acked_now) <= set(stored)
    assert len(stored) <= 1 + len(acked_now) + len(pushers)
    # runs, models and deployments are back; the deployment answers with both replicas
    assert p.models.get(served).version >= 1
    assert p.serving.get(served).replicas == 2
    assert p.serving.predict(served, [ROW]).model == served
    # the job that was running failed, saying why
    _wait("the orphaned job to fail", lambda: job.status().run.status.is_final, timeout_s=60)
    run = job.status().run
    assert run.status is RunStatus.FAILED and "platform stopped" in (run.error or ""), run
    # the workflow resumed by itself: the finished step did not run again, the interrupted did
    (folder / "go").write_text("go")
    detail = p.workflows.wait(wf.id, timeout_s=180)
    assert detail.run.status is RunStatus.SUCCEEDED, detail
    assert (folder / "first.count").read_text().count("x") == 1
    assert (folder / "blocker.count").read_text().count("x") == 2
    p.close()
    print(f"everything back and checked {time.monotonic() - started:.1f} s after `dlp up` began")


def test_down_stops_everything_and_frees_the_port(platform: Up) -> None:
    cluster = platform.cluster()
    pids = cluster["pids"]
    down = _dlp("down", "--home", str(platform.home), "--json")
    assert down.returncode == 0, down.stderr[-3000:]
    assert json.loads(down.stdout)["stopped"] is True
    assert not [pid for pid in pids if _alive(pid)]
    assert not _session_members(cluster["session_id"])  # nor anything the head spawned later
    assert not (platform.home / "cluster.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{platform.api}/healthz", timeout=5)
    # down returns once its ports are free: `dlp down && dlp up` on the same port works at once
    assert port_free(platform.port)
