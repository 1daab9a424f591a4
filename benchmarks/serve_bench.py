"""Online inference, side by side: in-process call, plain FastAPI, MLflow ``models serve``, and the
platform's default deployment on Ray Serve, all driven by ``wrk`` on loopback.

    python benchmarks/serve_bench.py [--duration 6] [--rounds 5] [--skip-mlflow]

One row per JSON request (a built-in MLP over 64 features, 10 classes), bearer token on. At
concurrency 1 (p50/p99 latency) and 32 (throughput, p50/p99). The plain FastAPI server does the
same work per request as the platform's replica (token check, JSON, validation against the
signature, forward pass, JSON reply with a request id) with as many uvicorn workers as the
deployment has replicas; MLflow serves the same weights (``--env-manager local``, same worker
count). The platform is started as ``dlp up`` starts it (its own Ray head with Serve's HAProxy
ingress on loopback), and the model deployed with ``DeploymentSpec()`` defaults and prediction
logging on. The platform and the FastAPI server run side by side and are measured in
alternating rounds, MLflow too (each figure is the median over the rounds): on a shared 2-core VM the speed
drifts by ±20% within a minute, and back-to-back blocks would measure the drift.

Needs ``wrk`` (Debian: ``apt-get install wrk``). Prints a Markdown table and writes
``benchmarks/results/serve_bench.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import row, write_results  # noqa: E402

FEATURES = 64
CLASSES = 10
TOKEN = "dlp_benchtoken_" + "x" * 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up in {timeout_s:.0f} s")


def _row_values() -> list[float]:
    return [round((i % 17) / 16, 4) for i in range(FEATURES)]


# --- the model -------------------------------------------------------------------------------


def make_model(directory: Path) -> tuple[Any, Any, dict[str, Any]]:
    """A seeded built-in MLP saved in the registry's artifact layout (weights.pt + model.json)."""
    import torch

    from dlplatform.models.artifact import BUILTIN_BUILDER, FORMAT
    from dlplatform.models.builtin import build_model
    from dlplatform.models.spec import ModelSignature

    torch.manual_seed(0)
    features = tuple(f"px{i}" for i in range(FEATURES))
    signature = ModelSignature(
        kind="tabular",
        features=features,
        dtypes=("double",) * FEATURES,
        input_shape=(FEATURES,),
        task="classification",
        label="digit",
        classes=tuple(range(CLASSES)),
    )
    config = {"model": "mlp", "input_shape": [FEATURES], "num_outputs": CLASSES, "params": {}}
    module = build_model(config).eval()
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(module.state_dict(), directory / "weights.pt")
    meta = {
        "format": FORMAT,
        "model_config": config,
        "signature": signature.model_dump(mode="json"),
        "builder": BUILTIN_BUILDER,
        "code_version": "bench",
    }
    (directory / "model.json").write_text(json.dumps(meta))
    return module, signature, config


def in_process(module: Any, signature: Any, seconds: float) -> dict[str, float]:
    """The floor: validation + encoding + forward pass + JSON, called in a loop."""
    import torch

    from dlplatform.serve._model import ServedModel

    torch.set_num_threads(1)
    served = ServedModel(
        model="bench", version=1, module=module, signature=signature, params={}, max_rows=1024
    )
    body = json.dumps({"inputs": [_row_values()]}).encode()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        outputs = served.predict(served.encode(json.loads(body)["inputs"]))
        json.dumps({"outputs": outputs, "model": "bench", "version": 1})
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "p50_ms": times[len(times) // 2],
        "p99_ms": times[int(len(times) * 0.99)],
        "rps": len(times) / seconds,
    }


# --- wrk -------------------------------------------------------------------------------------

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text.strip())
    if m is None:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def wrk(
    url: str, concurrency: int, seconds: float, body: str, token: str | None
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        headers = 'wrk.headers["Content-Type"] = "application/json"\n'
        if token:
            headers += f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f.write(f'wrk.method = "POST"\nwrk.body = [==[{body}]==]\n{headers}')
        script = f.name
    try:
        # warm-up (connections, replicas' lazy paths), then the measured run
        subprocess.run(
            ["wrk", "-t1", f"-c{concurrency}", "-d2s", "-s", script, url],
            capture_output=True,
            text=True,
            check=True,
        )
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{int(seconds)}s",
                "--latency",
                "-s",
                script,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", out, re.M))
    if "50" not in lat or "99" not in lat:
        raise RuntimeError(f"wrk measured no successful request at {url}:\n{out[-800:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "rps": rps,
        "non_2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def _report(name: str, m: dict[str, Any]) -> None:
    c1, c32 = m["c1"], m["c32"]
    bad = int(c1["non_2xx"] + c32["non_2xx"])
    print(
        f"  {name}: c1 p50 {c1['p50_ms']:.3f} ms p99 {c1['p99_ms']:.2f} ms | c32 "
        f"{c32['rps']:.0f} req/s p50 {c32['p50_ms']:.2f} ms p99 {c32['p99_ms']:.2f} ms"
        f"{' | non-2xx: ' + str(bad) if bad else ''}",
        file=sys.stderr,
    )


def interleaved(
    targets: dict[str, tuple[str, str | None]], body: str, rounds: int, seconds: float
) -> dict[str, dict[str, Any]]:
    """Each target measured ``rounds`` times, alternating with the others at each concurrency,
    so a drift of the machine's speed (±20% within a minute on a shared VM) falls on all of
    them alike. Each figure is the median over the rounds; error counts are summed."""
    runs: dict[str, dict[str, list[dict[str, float]]]] = {
        name: {"c1": [], "c32": []} for name in targets
    }
    for r in range(rounds):
        for level, concurrency in (("c1", 1), ("c32", 32)):
            for name, (url, token) in targets.items():
                runs[name][level].append(wrk(url, concurrency, seconds, body, token))
        for name in targets:
            _report(f"{name}, round {r + 1}", {k: v[-1] for k, v in runs[name].items()})
    out: dict[str, dict[str, Any]] = {}
    for name, levels in runs.items():
        out[name] = {}
        for level, samples in levels.items():
            merged = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
            merged["non_2xx"] = sum(s["non_2xx"] for s in samples)
            out[name][level] = merged
        _report(f"{name}, median of {rounds}", out[name])
    return out


# --- servers ---------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def fastapi_server(model_dir: Path, workers: int) -> Iterator[tuple[str, str]]:
    """A running plain FastAPI + uvicorn server of the model: yields (url, token)."""
    port = _free_port()
    env = {
        **os.environ,
        "DLP_BENCH_MODEL_DIR": str(model_dir),
        "DLP_BENCH_TOKEN": TOKEN,
        "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "_serve_fastapi_app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=HERE,
        env=env,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/docs")
        yield f"http://127.0.0.1:{port}/predict", TOKEN
    finally:
        _stop(proc)


@contextlib.contextmanager
def mlflow_server(module: Any, tmp: Path, workers: int) -> Iterator[tuple[str, None] | None]:
    """MLflow's ``models serve`` of the same weights: yields (url, None), or None without MLflow."""
    try:
        import mlflow.pytorch
        import numpy as np
        from mlflow.models import infer_signature
    except ImportError:
        print("  mlflow is not installed: skipped", file=sys.stderr)
        yield None
        return
    path = tmp / "mlflow-model"
    x = np.zeros((1, FEATURES), dtype=np.float32)
    import torch

    with torch.no_grad():
        y = module(torch.from_numpy(x)).numpy()
    mlflow.pytorch.save_model(
        module,
        str(path),
        signature=infer_signature(x, y),
        input_example=x,
        serialization_format="pickle",
    )
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "models",
            "serve",
            "-m",
            str(path),
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(workers),
        ],
        env={**os.environ, "MLFLOW_TRACKING_URI": f"file://{tmp}/mlruns"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping", timeout_s=180)
        yield f"http://127.0.0.1:{port}/invocations", None
    finally:
        _stop(proc)


@contextlib.contextmanager
def platform_deployment(tmp: Path, model_dir: Path) -> Iterator[tuple[str, str]]:
    """A platform started as ``dlp up`` starts it (its own Ray head, the fast ingress, the
    gateway); the model registered and deployed with ``DeploymentSpec()`` defaults."""
    for key in [k for k in os.environ if k.startswith(("RAY_", "DLP_"))]:
        del os.environ[key]  # exactly the `dlp up` defaults
    from dlplatform import runtime
    from dlplatform import serve as serving
    from dlplatform.access import SYSTEM
    from dlplatform.config import load_settings
    from dlplatform.metadata import Run
    from dlplatform.metadata.records import utcnow
    from dlplatform.models.artifact import register_version
    from dlplatform.models.spec import ModelSignature
    from dlplatform.serve import DeploymentSpec

    port = _free_port()
    settings = load_settings(home=tmp / "home", port=port)
    info = runtime.up(settings, progress=lambda msg: print(f"  {msg}", file=sys.stderr))
    try:
        backend = runtime.attach(settings, start=False)
        token = Path(info.token_file).read_text().strip()
        meta = json.loads((model_dir / "model.json").read_text())
        run = backend.store.create_run(Run(id="r-bench", owner="admin", created_at=utcnow()))
        register_version(
            backend,
            run=run,
            model_name="bench-mlp",
            state_dict_path=model_dir / "weights.pt",
            model_config=meta["model_config"],
            signature=ModelSignature.model_validate(meta["signature"]),
            builder=meta["builder"],
            metrics={},
            params={},
            dataset_commit="c-bench",
            dataset_version_hash=None,
            code_version="bench",
        )
        spec = DeploymentSpec()
        serving.deploy(backend, SYSTEM, "bench-mlp", spec)
        yield f"http://127.0.0.1:{port}/models/bench-mlp", token
        from dlplatform.serve.service import call_app

        log = call_app("model-bench-mlp", "flush_log")
        print(f"  platform prediction log: {log}", file=sys.stderr)
    finally:
        runtime.down(settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of the servers")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    from dlplatform.serve import DeploymentSpec

    workers = DeploymentSpec().max_replicas
    tmp = Path(tempfile.mkdtemp(prefix="dlp-serve-bench-"))
    try:
        model_dir = tmp / "model"
        module, signature, _ = make_model(model_dir)
        body = json.dumps({"inputs": [_row_values()]})
        print("measuring (wrk -t1, loopback) ...", file=sys.stderr)
        floor = in_process(module, signature, min(args.duration, 5))
        print(f"  in-process: p50 {floor['p50_ms']:.3f} ms", file=sys.stderr)
        with contextlib.ExitStack() as servers:
            targets: dict[str, tuple[str, str | None]] = {
                "FastAPI": servers.enter_context(fastapi_server(model_dir, workers)),
            }
            if not args.skip_mlflow:
                try:
                    mlflow = servers.enter_context(mlflow_server(module, tmp, workers))
                except Exception as exc:  # a baseline, not the subject: report the rest
                    print(f"  MLflow baseline failed: {exc}", file=sys.stderr)
                    mlflow = None
                if mlflow is not None:
                    targets["MLflow"] = mlflow
            targets["platform"] = servers.enter_context(platform_deployment(tmp, model_dir))
            got = interleaved(targets, body, args.rounds, args.duration)
        fast, plat, mlf = got["FastAPI"], got["platform"], got.get("MLflow")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    p, f = plat, fast
    rows = [
        row(
            "in-process call p50 (floor)",
            floor["p50_ms"],
            "ms",
            "platform c1 p50",
            p["c1"]["p50_ms"],
            "reference",
            None,
        ),
        row(
            "platform c1 p50",
            p["c1"]["p50_ms"],
            "ms",
            f"FastAPI {workers}w c1 p50",
            f["c1"]["p50_ms"],
            "<= 1.5x",
            p["c1"]["p50_ms"] <= 1.5 * f["c1"]["p50_ms"],
        ),
        row(
            "platform c1 p99",
            p["c1"]["p99_ms"],
            "ms",
            f"FastAPI {workers}w c1 p99",
            f["c1"]["p99_ms"],
            "reported",
            None,
        ),
        row(
            "platform c32 throughput",
            p["c32"]["rps"],
            "req/s",
            f"FastAPI {workers}w c32",
            f["c32"]["rps"],
            ">= 1.0x",
            p["c32"]["rps"] >= f["c32"]["rps"],
        ),
        row(
            "platform c32 p50",
            p["c32"]["p50_ms"],
            "ms",
            f"FastAPI {workers}w c32 p50",
            f["c32"]["p50_ms"],
            "reported",
            None,
        ),
        row(
            "platform c32 p99",
            p["c32"]["p99_ms"],
            "ms",
            f"FastAPI {workers}w c32 p99",
            f["c32"]["p99_ms"],
            "reported",
            None,
        ),
    ]
    if mlf is not None:
        rows += [
            row(
                "platform c32 throughput vs MLflow",
                p["c32"]["rps"],
                "req/s",
                f"MLflow {workers}w c32",
                mlf["c32"]["rps"],
                ">= 5x",
                p["c32"]["rps"] >= 5 * mlf["c32"]["rps"],
            ),
            row(
                "MLflow c1 p50",
                mlf["c1"]["p50_ms"],
                "ms",
                f"FastAPI {workers}w c1 p50",
                f["c1"]["p50_ms"],
                "reported",
                None,
            ),
            row(
                "MLflow c32 p99",
                mlf["c32"]["p99_ms"],
                "ms",
                f"FastAPI {workers}w c32 p99",
                f["c32"]["p99_ms"],
                "reported",
                None,
            ),
        ]
    errors = sum(r["c1"]["non_2xx"] + r["c32"]["non_2xx"] for r in (p, f))
    rows.append(
        row(
            "non-2xx responses (platform + FastAPI)",
            errors,
            "count",
            "zero",
            0,
            "0",
            errors == 0,
            ratio=0.0,
        )
    )
    write_results("serve_bench", rows)


if __name__ == "__main__":
    main()
