"""The HTTP SDK and the ``dlp`` CLI as a remote user has them, against MLflow's client and CLI.

Run: ``python benchmarks/client_bench.py`` (about 4-5 minutes on 2 cores; needs MLflow, in the
``bench`` extra, and ``curl``). Starts a platform with ``dlp up --home <tmp> --port <free>`` and a
local ``mlflow server`` (sqlite backend, 127.0.0.1, a free port, 1 worker), then measures, side by
side in one run on this machine:

- a fresh CLI process, wall time (median of ``--cli-n``): ``dlp --help``, ``dlp datasets list
  --json``, ``dlp models list --json`` against ``mlflow experiments search``
  (``MLFLOW_TRACKING_URI`` set), ``curl`` of the same routes (the floor of an HTTP call from a new
  process) and ``python -c pass`` (the floor of any Python CLI, beside ``dlp --help``); the CPU
  seconds each process used are reported beside it, as wall time on a shared machine includes
  waiting for a core;
- a warm client, p50 of ``--warm-n`` calls each (alternating rounds with MLflow): get a dataset,
  list its 10 commits, get a training job (its run), against ``MlflowClient.get_experiment``,
  ``search_runs`` (10 runs) and ``get_run``; logging 1,000 metric points in one call
  (``p.training.log_metrics``, ``POST /runs/{id}/metrics``) against ``MlflowClient.log_batch``
  (48 calls each: MLflow takes about 0.3 s a call here);
- ``to_arrow()`` over HTTP of a 2,000,000-row version against ``pyarrow.parquet.read_table`` of
  the same data from a local file (throughput, median of 3).

Nothing in this process imports Ray or torch: the platform is reached over HTTP only, as from a
laptop. Prints a Markdown table and writes ``benchmarks/results/client_bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from _results import row, write_results  # noqa: E402

import dlplatform as dlp  # noqa: E402
from dlplatform.client import JobHandle, Platform  # noqa: E402

CLI_RATIO = 0.5  # a dlp command vs MLflow's nearest command
CLI_MAX_S = 1.0
HELP_MAX_S = 0.5
WARM_RATIO = 0.5  # a warm SDK call vs MlflowClient's
READ_RATIO = 0.5  # to_arrow() over HTTP vs a local Parquet read
METRICS_PER_CALL = 1000
LOG_BATCH_N = 48  # calls of each 1,000-point log (MLflow takes ~0.3 s a call here)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray's and the platform's variables (exactly the defaults)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DLP_", "MLFLOW_"))}
    return {**env, **extra}


def _wait_http(url: str, timeout_s: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=5).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout_s:g} s")
        time.sleep(0.5)


# --- servers ----------------------------------------------------------------------------------


@contextlib.contextmanager
def platform_up(home: Path) -> Iterator[tuple[str, str]]:
    """``dlp up --home HOME --port FREE`` as a user runs it; ``dlp down --home HOME`` at the end.
    Yields (base URL, admin token)."""
    port = _free_port()
    env = _clean_env()
    try:
        done = subprocess.run(
            ["dlp", "up", "--home", str(home), "--port", str(port), "--json"],
            env=env, capture_output=True, text=True, timeout=420, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"dlp up failed ({done.returncode}): {done.stderr[-2000:]}")
        info = json.loads(done.stdout)
        token = Path(info["token_file"]).read_text().strip()
        yield f"http://127.0.0.1:{port}", token
    finally:
        down = subprocess.run(
            ["dlp", "down", "--home", str(home)],
            env=env, capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        say(f"  dlp down: {(down.stdout or down.stderr).strip()[-300:]}")


@contextlib.contextmanager
def mlflow_server(tmp: Path) -> Iterator[str]:
    """``mlflow server`` on sqlite, 127.0.0.1, a free port, 1 worker; stopped by its PID."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server",
            "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
            "--default-artifact-root", str(tmp / "mlflow-artifacts"),
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        ],
        env=_clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", timeout_s=180)
        yield url
    finally:
        try:  # the server and its worker: the process group of the PID started here
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)


# --- data on both sides -----------------------------------------------------------------------


def _table(rows: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    cols: dict[str, Any] = {f"f{i}": rng.normal(size=rows) for i in range(4)}
    cols["y"] = rng.integers(0, 3, rows)
    return pa.table(cols)


def setup_platform(p: Platform, big_file: Path) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    small = p.datasets.create(f"bench-small-{tag}")
    for i in range(10):
        small.push(_table(100, seed=i), message=f"batch {i}")
    job = p.training.submit(dataset=small.name, model="mlp", label="y", workers=1, epochs=1)
    job.cancel()  # a job's GET reads its run either way; keep the CPUs for the measurements
    log_run = p.runs.start(name=f"bench-log-{tag}")  # open: it takes the 1,000-point batches
    big = p.datasets.create(f"bench-big-{tag}")
    t0 = time.perf_counter()
    commit = big.push(big_file, message="2,000,000 rows")
    say(f"  pushed {commit.row_count:,} rows in {time.perf_counter() - t0:.1f} s")
    return {"small": small.name, "job": job.id, "log_run": log_run.id, "big": big.name,
            "big_commit": commit.id}  # fmt: skip


def setup_mlflow(url: str) -> dict[str, Any]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    exp = client.create_experiment(f"bench-{uuid.uuid4().hex[:6]}")
    runs = []
    for i in range(10):
        run = client.create_run(exp)
        client.log_param(run.info.run_id, "batch", str(i))
        runs.append(run.info.run_id)
    target = client.create_run(exp).info.run_id  # log_batch goes here
    return {"client": client, "exp": exp, "run": runs[0], "log_run": target}


# --- fresh CLI processes ----------------------------------------------------------------------


def _timed_process(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one run; raises when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {done.returncode}: {done.stderr[-500:]!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def bench_cli(url: str, token: str, mlflow_url: str, n: int, tmp: Path) -> dict[str, Any]:
    ours = _clean_env(DLP_URL=url, DLP_TOKEN=token, DLP_CONFIG_DIR=str(tmp / "dlp-config"),
                      DLP_HOME=str(tmp / "no-home"))  # fmt: skip
    theirs = _clean_env(MLFLOW_TRACKING_URI=mlflow_url)
    auth = f"Authorization: Bearer {token}"
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "dlp --help": (["dlp", "--help"], ours),
        "dlp datasets list --json": (["dlp", "datasets", "list", "--json"], ours),
        "dlp models list --json": (["dlp", "models", "list", "--json"], ours),
        "mlflow experiments search": (
            [sys.executable, "-m", "mlflow", "experiments", "search"], theirs
        ),
        "curl /api/v1/datasets": (
            ["curl", "-sf", "-o", "/dev/null", "-H", auth, f"{url}/api/v1/datasets"], ours
        ),
        "curl /api/v1/models": (
            ["curl", "-sf", "-o", "/dev/null", "-H", auth, f"{url}/api/v1/models"], ours
        ),
        "python -c pass": ([sys.executable, "-c", "pass"], ours),
    }  # fmt: skip
    # The `dlp` and `mlflow` entry points are pyenv shims here; run the real scripts so neither
    # pays for a shell wrapper. `python -m mlflow` is what MLflow's own script runs.
    dlp_bin = Path(sys.executable).with_name("dlp")
    if dlp_bin.exists():
        for name, (cmd, env) in commands.items():
            if cmd[0] == "dlp":
                commands[name] = ([str(dlp_bin), *cmd[1:]], env)
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    # Rounds: every command once per round, so load drifts hit all alike (no warm-up round:
    # the median of n drops the first, cold, run; MLflow's CLI alone takes ~10 s a run here).
    for _ in range(n):
        for name, (cmd, env) in commands.items():
            samples[name].append(_timed_process(cmd, env))
    out = {}
    for name, runs in samples.items():
        out[name] = {
            "wall_s": statistics.median(w for w, _ in runs),
            "cpu_s": statistics.median(c for _, c in runs),
        }
        say(f"  {name}: wall {out[name]['wall_s']:.3f} s, CPU {out[name]['cpu_s']:.3f} s")
    return out


# --- warm clients -----------------------------------------------------------------------------


def _p50_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _p95_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(0.95 * (len(ordered) - 1))] * 1000


def bench_warm(p: Platform, mine: dict[str, Any], ml: dict[str, Any], n: int) -> dict[str, Any]:
    from mlflow.entities import Metric

    client = ml["client"]
    small = p.datasets.get(mine["small"])
    job = JobHandle(p.http, mine["job"])
    now_ms = int(time.time() * 1000)
    calls: dict[str, Callable[[], Any]] = {
        "get dataset": lambda: p.datasets.get(mine["small"]),
        "list commits": small.commits,
        "get run": job.status,
        "mlflow get_experiment": lambda: client.get_experiment(ml["exp"]),
        "mlflow search_runs": lambda: client.search_runs([ml["exp"]]),
        "mlflow get_run": lambda: client.get_run(ml["run"]),
    }
    step = {"i": 0}

    def log_batch() -> None:
        start = step["i"]
        step["i"] += METRICS_PER_CALL
        metrics = [
            Metric("loss", float(s), now_ms, s) for s in range(start, start + METRICS_PER_CALL)
        ]
        client.log_batch(ml["log_run"], metrics=metrics)

    calls["mlflow log_batch 1,000"] = log_batch
    ours_step = {"i": 0}

    def log_metrics() -> None:
        start = ours_step["i"]
        ours_step["i"] += METRICS_PER_CALL
        points = [("loss", float(s), s) for s in range(start, start + METRICS_PER_CALL)]
        assert p.training.log_metrics(mine["log_run"], points) == METRICS_PER_CALL

    calls["log metrics 1,000"] = log_metrics
    assert len(small.commits()) == 10 and len(client.search_runs([ml["exp"]])) == 11
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():  # warm-up: connections, caches
        for _ in range(5):
            fn()
    rounds = 4
    for _ in range(rounds):
        for name, fn in calls.items():
            # the 1,000-point logs: fewer calls (MLflow's take ~0.3 s each here)
            calls_n = LOG_BATCH_N if "1,000" in name else n
            for _ in range(math.ceil(calls_n / rounds)):
                t0 = time.perf_counter()
                fn()
                samples[name].append(time.perf_counter() - t0)
    out = {}
    for name, s in samples.items():
        out[name] = {"p50_ms": _p50_ms(s), "p95_ms": _p95_ms(s), "n": len(s)}
        say(f"  {name}: p50 {out[name]['p50_ms']:.2f} ms, p95 {out[name]['p95_ms']:.2f} ms "
            f"(n={len(s)})")  # fmt: skip
    return out


# --- bulk read --------------------------------------------------------------------------------


def bench_read(p: Platform, mine: dict[str, Any], big_file: Path, reps: int, url: str,
               token: str) -> dict[str, Any]:  # fmt: skip
    """to_arrow() against a local read_table, and the transport's floor: `curl` fetching the
    same route into /dev/null (no hashing, no decoding), with the same server behind it."""
    version = p.datasets.get(mine["big"]).get(mine["big_commit"])
    local = pq.read_table(big_file)
    remote = version.to_arrow()
    assert remote.num_rows == local.num_rows and remote.sort_by("f0").equals(local.sort_by("f0"))
    size = local.nbytes
    route = f"{url}/api/v1/datasets/{mine['big']}/commits/{mine['big_commit']}/parquet"
    curl = ["curl", "-sf", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", route]
    http_s, local_s, curl_s = [], [], []
    for _ in range(reps):  # rounds, so load drifts hit all three alike
        t0 = time.perf_counter()
        version.to_arrow()
        http_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        pq.read_table(big_file)
        local_s.append(time.perf_counter() - t0)
        curl_s.append(_timed_process(curl, _clean_env())[0])
    out = {
        "rows": local.num_rows,
        "mb": size / 1e6,
        "http_mb_s": size / 1e6 / statistics.median(http_s),
        "local_mb_s": size / 1e6 / statistics.median(local_s),
        "curl_mb_s": size / 1e6 / statistics.median(curl_s),
        "http_s": statistics.median(http_s),
        "local_s": statistics.median(local_s),
        "curl_s": statistics.median(curl_s),
    }
    say(f"  to_arrow() {out['http_s']:.2f} s ({out['http_mb_s']:.0f} MB/s), read_table "
        f"{out['local_s']:.2f} s ({out['local_mb_s']:.0f} MB/s), curl of the route "
        f"{out['curl_s']:.2f} s ({out['curl_mb_s']:.0f} MB/s) for {out['mb']:.0f} MB")  # fmt: skip
    return out


# --- report -----------------------------------------------------------------------------------


def report(cli: dict[str, Any], warm: dict[str, Any], read: dict[str, Any], args: Any) -> None:
    ml_cli = cli["mlflow experiments search"]["wall_s"]
    cli_target = f"<= {CLI_RATIO}x and < {CLI_MAX_S:g} s"
    rows = [
        row(f"fresh `dlp --help`, wall, median of {args.cli_n}", cli["dlp --help"]["wall_s"],
            "s", "`python -c pass`", cli["python -c pass"]["wall_s"], f"< {HELP_MAX_S} s",
            cli["dlp --help"]["wall_s"] < HELP_MAX_S),
    ]  # fmt: skip
    for name in ("dlp datasets list --json", "dlp models list --json"):
        wall = cli[name]["wall_s"]
        rows.append(
            row(f"fresh `{name}`, wall, median of {args.cli_n}", wall, "s",
                "`mlflow experiments search`", ml_cli, cli_target,
                wall <= CLI_RATIO * ml_cli and wall < CLI_MAX_S)
        )  # fmt: skip
    for name, base in (("dlp --help", "python -c pass"),
                       ("dlp datasets list --json", "mlflow experiments search"),
                       ("dlp models list --json", "mlflow experiments search")):  # fmt: skip
        rows.append(
            row(f"fresh `{name}`, CPU time of the process", cli[name]["cpu_s"], "s",
                f"`{base}` CPU time", cli[base]["cpu_s"], "reported", None)
        )  # fmt: skip
    for name, ours in (("curl /api/v1/datasets", "dlp datasets list --json"),
                       ("curl /api/v1/models", "dlp models list --json")):  # fmt: skip
        rows.append(
            row(f"fresh `{name}` (the floor), wall", cli[name]["wall_s"], "s", f"`{ours}`",
                cli[ours]["wall_s"], "reported", None)
        )  # fmt: skip
    warm_target = f"<= {WARM_RATIO}x"
    for ours, theirs, label in (
        ("get dataset", "mlflow get_experiment", "get a dataset"),
        ("list commits", "mlflow search_runs", "list 10 commits"),
        ("get run", "mlflow get_run", "get a run (training job GET)"),
    ):
        value, base = warm[ours]["p50_ms"], warm[theirs]["p50_ms"]
        rows.append(
            row(f"warm SDK p50: {label}, n={warm[ours]['n']}", value, "ms",
                f"MlflowClient.{theirs.split()[1]}", base, warm_target,
                value <= WARM_RATIO * base)
        )  # fmt: skip
    value, base = warm["log metrics 1,000"]["p50_ms"], warm["mlflow log_batch 1,000"]["p50_ms"]
    rows.append(
        row(f"warm SDK p50: log {METRICS_PER_CALL:,} metric points in one call, "
            f"n={warm['log metrics 1,000']['n']}", value, "ms", "MlflowClient.log_batch", base,
            warm_target, value <= WARM_RATIO * base)
    )  # fmt: skip
    rows.append(
        row(f"to_arrow() over HTTP, {read['rows']:,} rows ({read['mb']:.0f} MB), median of "
            f"{args.read_reps}", read["http_mb_s"], "MB/s", "local pyarrow.parquet.read_table",
            read["local_mb_s"], f">= {READ_RATIO}x", read["http_mb_s"] >= READ_RATIO *
            read["local_mb_s"])
    )  # fmt: skip
    rows.append(
        row("the same route fetched by `curl` into /dev/null (the transport's floor: no hash, "
            "no decode)", read["curl_mb_s"], "MB/s", "local pyarrow.parquet.read_table",
            read["local_mb_s"], "reported", None)
    )  # fmt: skip
    write_results("client_bench", rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli-n", type=int, default=5, help="runs of each CLI command")
    parser.add_argument("--warm-n", type=int, default=200, help="calls of each warm request")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the bulk read")
    parser.add_argument("--read-reps", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dlp-client-bench-") as name:
        tmp = Path(name)
        big_file = tmp / "big.parquet"
        pq.write_table(_table(args.rows, seed=42), big_file)
        say(f"dlp up --home {tmp / 'home'} ...")
        with platform_up(tmp / "home") as (url, token):
            say(f"  {url} up after {time.monotonic() - started:.0f} s; mlflow server ...")
            with mlflow_server(tmp) as mlflow_url, dlp.connect(url, token) as p:
                say(f"  {mlflow_url} up; setting up data on both ...")
                mine = setup_platform(p, big_file)
                assert "ray" not in sys.modules and "torch" not in sys.modules  # HTTP only
                ml = setup_mlflow(mlflow_url)
                say(f"fresh CLI processes, {args.cli_n} rounds ...")
                cli = bench_cli(url, token, mlflow_url, args.cli_n, tmp)
                say(f"warm clients, {args.warm_n} calls each ...")
                warm = bench_warm(p, mine, ml, args.warm_n)
                say(f"to_arrow() of {args.rows:,} rows vs read_table ...")
                read = bench_read(p, mine, big_file, args.read_reps, url, token)
    say(f"done in {time.monotonic() - started:.0f} s")
    report(cli, warm, read, args)


if __name__ == "__main__":
    main()
