"""``p.runs``: track runs from your own code, and search runs of every kind, over HTTP.

```python
with p.runs.start(name="lr-sweep-1", params={"lr": 0.01}, tags={"team": "vision"},
                  dataset="digits@c-1a2b") as run:
    for step in range(100):
        run.log_metric("loss", loss, step)          # buffered: returns at once
    run.log_artifact("confusion.png")
    run.log_model(module, signature)                 # weights only, a new registry version
df = p.runs.search('params.lr < 0.1 and metrics.loss < 0.5', order_by="metrics.loss")
p.runs.compare(df.run_id[:3])                        # params and final metrics side by side
p.runs.download_artifact(run.id, "confusion.png", "out/")   # checked against its sha256
```

Buffering: ``log_metric`` and ``log_metrics`` append to a buffer in memory; a background thread
sends it in batches (``POST /runs/{id}/metrics``) at least every ``flush_interval_s`` (1 s), and
``flush()``, ``end()``, leaving the ``with`` block and the interpreter's exit send the rest. A
process that dies without running its exit handlers (SIGKILL, a power cut) loses at most the
points of the last interval. A batch the gateway refuses (the run ended: 409; no permission:
403) is dropped and its error raised by the next call on the run; one that cannot reach the
gateway stays buffered and is sent again at the next flush.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import math
import os
import re
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dlplatform.client._files import download, safe_parts
from dlplatform.client._http import HttpClient
from dlplatform.errors import BackendUnavailable, Conflict, DLPlatformError, NotFound
from dlplatform.metadata.records import (
    NAME_PATTERN,
    ArtifactFile,
    MetricPoint,
    ModelVersion,
    RunArtifact,
)
from dlplatform.models.spec import ModelSignature
from dlplatform.train.spec import MAX_METRICS_PAGE, MetricsLogged
from dlplatform.train.tracking import MAX_RUNS_PAGE, RunComparison, RunView

if TYPE_CHECKING:
    import pandas as pd

FLUSH_INTERVAL_S = 1.0
"""How often the background thread sends buffered points (the most a crash can lose)."""
MAX_BATCH_POINTS = 10_000
"""The most points one request carries (a larger buffer goes in several)."""
_MAX_BATCH_BYTES = 800_000  # under the gateway's 1 MiB JSON body limit
_LIVE: weakref.WeakSet[ActiveRun] = weakref.WeakSet()


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def _json_float(value: float) -> float | str:
    """JSON has no NaN or infinity: those go as the strings the gateway reads back as floats."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


class ActiveRun:
    """A run being tracked: log to it, then end it (or use it as a context manager: leaving
    the block ends it SUCCEEDED, an exception ends it FAILED)."""

    def __init__(self, http: HttpClient, view: RunView, flush_interval_s: float) -> None:
        self._http = http
        self.view = view
        self.id = view.run.id
        self._lock = threading.Lock()  # guards the buffer
        self._send_lock = threading.Lock()  # one sender at a time: points keep their order
        self._keys: list[str] = []
        self._values: list[float] = []
        self._steps: list[int] = []
        self._times: list[float] = []
        self._error: DLPlatformError | None = None
        self._ended = False
        self._stop = threading.Event()
        self._interval_s = flush_interval_s
        self._thread = threading.Thread(target=self._loop, name=f"dlp-run-{self.id}", daemon=True)
        self._thread.start()
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"<ActiveRun {self.id} {self.view.run.status.value}>"

    # --- metrics: buffered -----------------------------------------------------------------

    def log_metric(self, key: str, value: float, step: int = 0) -> None:
        """Buffer one point (sent within ``flush_interval_s``); returns at once."""
        self._check(logging=True)
        now = time.time()
        with self._lock:
            self._keys.append(key)
            self._values.append(float(value))
            self._steps.append(int(step))
            self._times.append(now)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        """Buffer one point per key at ``step``; returns at once."""
        self._check(logging=True)
        now = time.time()
        n = len(metrics)
        with self._lock:
            self._keys.extend(metrics)
            self._values.extend(float(v) for v in metrics.values())
            self._steps.extend([int(step)] * n)
            self._times.extend([now] * n)

    def flush(self) -> int:
        """Send every buffered point now; returns how many were stored.

        Raises:
            DLPlatformError: the gateway refused a batch (e.g. ``Conflict``: the run ended).
        """
        sent = self._send()
        self._check()
        return sent

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._send()

    def _take(self) -> tuple[list[str], list[float], list[int], list[float]]:
        with self._lock:
            taken = (self._keys, self._values, self._steps, self._times)
            self._keys, self._values, self._steps, self._times = [], [], [], []
        return taken

    def _send(self) -> int:
        sent = 0
        with self._send_lock:
            keys, values, steps, times = self._take()
            for start, end in _batches(keys):
                body = {
                    "keys": keys[start:end],
                    "values": [_json_float(v) for v in values[start:end]],
                    "steps": steps[start:end],
                    "timestamps": times[start:end],
                }
                try:
                    answer: MetricsLogged = self._http.post(
                        f"runs/{_seg(self.id)}/metrics", MetricsLogged, body
                    )
                    sent += answer.count
                except BackendUnavailable:  # not reached: keep the rest for the next flush
                    with self._lock:
                        self._keys[:0] = keys[start:]
                        self._values[:0] = values[start:]
                        self._steps[:0] = steps[start:]
                        self._times[:0] = times[start:]
                    break
                except DLPlatformError as exc:  # refused: raised by the next call
                    self._error = exc
        return sent

    def _check(self, *, logging: bool = False) -> None:
        if logging and self._ended:
            raise Conflict(f"run {self.id} has ended; nothing more can be logged")
        error, self._error = self._error, None
        if error is not None:
            raise error

    # --- params, tags, files, models: sent at once -----------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> RunView:
        self.view = self._http.post(
            f"runs/{_seg(self.id)}/params", RunView, {"params": dict(params)}
        )
        return self.view

    def set_tags(self, tags: Mapping[str, str]) -> RunView:
        self.view = self._http.post(f"runs/{_seg(self.id)}/tags", RunView, {"tags": dict(tags)})
        return self.view

    def log_artifact(
        self, local_path: str | os.PathLike[str], artifact_path: str | None = None
    ) -> RunArtifact:
        """Upload a local file as the run's artifact ``artifact_path`` (default: the file's
        name). The gateway refuses an absolute path or one with ``..`` (422)."""
        source = Path(local_path)
        data = source.read_bytes()
        return self._upload(artifact_path or source.name, data)

    def _upload(self, path: str, data: bytes) -> RunArtifact:
        return self._http.call(  # type: ignore[no-any-return]
            "POST", f"runs/{_seg(self.id)}/artifacts", RunArtifact, params={"path": path},
            body=lambda: [data], headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip

    def log_model(
        self,
        module: Any,
        signature: ModelSignature | Mapping[str, Any],
        *,
        name: str | None = None,
        builder: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Register ``module``'s weights (its state dict, nothing pickled but tensors) as the
        next version of model ``name`` (default: the run's name, else its id), with lineage to
        this run. ``builder`` ('module:function') and ``config`` let the platform rebuild and
        serve it; without them the weights are stored but not servable. Buffered points are
        sent first."""
        import torch  # the caller passed a torch module, so torch is loaded already

        self.flush()  # the version records the run's metrics as they are now
        buffer = io.BytesIO()
        torch.save(module.state_dict(), buffer)
        weights = "model/weights.pt"
        self._upload(weights, buffer.getvalue())
        sig = signature if isinstance(signature, ModelSignature) else ModelSignature(**signature)
        body = {
            "name": name or self._default_model_name(), "weights": weights,
            "signature": sig.model_dump(mode="json"), "builder": builder,
            "config": dict(config or {}),
        }  # fmt: skip
        return self._http.post(f"runs/{_seg(self.id)}/model", ModelVersion, body)  # type: ignore[no-any-return]

    def artifacts(self) -> list[ArtifactFile]:
        """The files this run logged (path, size, sha256, media type)."""
        return list_artifacts(self._http, self.id)

    def download_artifact(self, path: str, dest: str | os.PathLike[str] | None = None) -> Path:
        """Download the run's file ``path`` (see ``RunsClient.download_artifact``)."""
        return download_artifact(self._http, self.id, path, dest)

    def _default_model_name(self) -> str:
        name = self.view.run.name
        return name if re.fullmatch(NAME_PATTERN, name) else self.id.lower()

    # --- the end ---------------------------------------------------------------------------

    def end(self, status: str = "SUCCEEDED", error: str | None = None) -> RunView:
        """Send the buffered points, then end the run (``SUCCEEDED`` or ``FAILED``)."""
        self._stop.set()
        self._send()
        if not self._ended:
            self._ended = True
            _LIVE.discard(self)
            body = {"status": status, "error": error}
            self.view = self._http.post(f"runs/{_seg(self.id)}/end", RunView, body)
        self._check()
        return self.view

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is None:
            self.end()
            return
        with contextlib.suppress(DLPlatformError):  # the block's own exception is the one to see
            self.end("FAILED", f"{type(exc).__name__}: {exc}"[:2000])


def _batches(keys: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) of each request's share of ``keys``: at most ``MAX_BATCH_POINTS`` points
    and about ``_MAX_BATCH_BYTES`` of JSON."""
    start, size = 0, 0
    for i, key in enumerate(keys):
        size += len(key) + 48  # the key, a float, a step, a timestamp, quotes and commas
        if i - start >= MAX_BATCH_POINTS or size > _MAX_BATCH_BYTES:
            yield start, i
            start, size = i, len(key) + 48
    if start < len(keys):
        yield start, len(keys)


def list_artifacts(http: HttpClient, run_id: str) -> list[ArtifactFile]:
    return http.get(f"runs/{_seg(run_id)}/artifacts", list[ArtifactFile])  # type: ignore[no-any-return]


def download_artifact(
    http: HttpClient, run_id: str, path: str, dest: str | os.PathLike[str] | None
) -> Path:
    parts = safe_parts(path)
    found = next((f for f in list_artifacts(http, run_id) if f.path == path), None)
    if found is None:
        raise NotFound(f"run {run_id} has no artifact {path!r}")
    target = Path(dest) if dest is not None else Path(parts[-1])
    if target.is_dir() or (dest is not None and str(dest).endswith(("/", os.sep))):
        target = target / parts[-1]
    url = f"runs/{_seg(run_id)}/artifacts/{'/'.join(_seg(p) for p in parts)}"
    return download(http, url, found, target)


@atexit.register
def end_open_runs(http: HttpClient | None = None) -> None:
    """At the interpreter's exit (or when ``http``, the client of its runs, is closed): send
    what is buffered and end runs still open (FAILED when the program is ending with an uncaught
    exception, else SUCCEEDED)."""
    failed = getattr(sys, "last_value", None)
    for run in list(_LIVE):
        if http is not None and run._http is not http:
            continue
        try:
            if failed is None:
                run.end()
            else:
                run.end("FAILED", f"{type(failed).__name__}: {failed}"[:2000])
        except Exception as exc:  # the gateway is gone: nothing more to do at exit
            print(f"dlplatform: could not end run {run.id}: {exc}", file=sys.stderr)


class RunsClient:
    """``p.runs``: start runs from your code; search and read runs of every kind."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def start(
        self,
        name: str = "",
        *,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        dataset: str | None = None,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> ActiveRun:
        """Start a run (RUNNING) owned by you; ``dataset`` (``NAME`` or ``NAME@COMMIT``) is
        pinned and recorded as its lineage."""
        body = {"name": name, "params": dict(params or {}), "tags": dict(tags or {}),
                "dataset": dataset}  # fmt: skip
        view: RunView = self._http.post("runs", RunView, body)
        return ActiveRun(self._http, view, flush_interval_s)

    def get(self, run_id: str) -> RunView:
        """A run of any kind with its params, final metrics, tags and artifacts."""
        return self._http.get(f"runs/{_seg(run_id)}", RunView)  # type: ignore[no-any-return]

    def metrics(self, run_id: str, key: str | None = None) -> list[MetricPoint]:
        """Every metric point of a run (a page at a time)."""
        return self._http.get_all(f"runs/{_seg(run_id)}/metrics", MetricPoint,
                                  page_size=MAX_METRICS_PAGE, key=key)  # fmt: skip

    def artifacts(self, run_id: str) -> list[ArtifactFile]:
        """The files a run logged: ``path``, ``size_bytes``, ``sha256``, ``media_type``."""
        return list_artifacts(self._http, run_id)

    def download_artifact(
        self, run_id: str, path: str, dest: str | os.PathLike[str] | None = None
    ) -> Path:
        """Download a run's file ``path`` to ``dest`` (a file name, or a directory to put it in;
        default: its name in the current directory), checked against its sha256; returns where
        it was written. A damaged or cut-off download raises ``IntegrityError`` and leaves no
        file behind.

        Raises:
            NotFound: no such run or file.
            InvalidInput: ``path`` is absolute or has ``..``.
            IntegrityError: the bytes do not match the file's sha256.
        """
        return download_artifact(self._http, run_id, path, dest)

    def compare(self, run_ids: Iterable[str], *, only_differing: bool = False) -> pd.DataFrame:
        """Runs side by side: one column per run (its id, in the order given), one row per
        ``params.KEY`` and ``metrics.KEY`` (the final value; a key a run lacks is None/NaN), and
        a boolean ``differs`` column; ``only_differing`` keeps the rows that differ.

        Raises:
            NotFound: a run does not exist (the message names it).
            InvalidInput: no ids, or more than 50.
        """
        return comparison_frame(self.comparison(run_ids), only_differing=only_differing)

    def comparison(self, run_ids: Iterable[str]) -> RunComparison:
        """``compare`` as the gateway answers it (no pandas): the runs with their params and
        final metrics, the rows, and the rows that differ."""
        return self._http.get("runs/compare", RunComparison, ids=list(run_ids))  # type: ignore[no-any-return]

    def list(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        *,
        max_results: int = 100,
        offset: int = 0,
    ) -> list[RunView]:
        """Runs of every kind matching ``filter`` sorted by ``order_by`` (newest first), at
        most ``max_results`` from ``offset`` on (fetched a page at a time).

        Raises:
            InvalidInput: a malformed filter or sort; the message names the token and position.
        """
        out: list[RunView] = []
        while len(out) < max_results:
            limit = min(MAX_RUNS_PAGE, max_results - len(out))
            page: list[RunView] = self._http.get(
                "runs", list[RunView], filter=filter, order_by=order_by, limit=limit,
                offset=offset + len(out),
            )  # fmt: skip
            out.extend(page)
            if len(page) < limit:
                break
        return out

    def search(
        self,
        filter: str | None = None,
        order_by: str | None = None,
        *,
        max_results: int = 100,
        offset: int = 0,
    ) -> pd.DataFrame:
        """``list`` as a DataFrame, one row per run: ``run_id``, ``name``, ``kind``,
        ``status``, ``owner``, ``dataset``, times, then ``params.KEY``, ``metrics.KEY`` (the
        final value) and ``tags.KEY`` columns, as MLflow's ``search_runs`` gives them."""
        return runs_frame(self.list(filter, order_by, max_results=max_results, offset=offset))


def runs_frame(views: list[RunView]) -> pd.DataFrame:
    """Runs as a DataFrame (see ``RunsClient.search``)."""
    import pandas as pd  # only where a DataFrame is asked for

    rows = []
    for v in views:
        r = v.run
        row: dict[str, Any] = {
            "run_id": r.id, "name": r.name, "kind": r.kind, "status": r.status.value,
            "owner": r.owner, "dataset": v.dataset, "created_at": r.created_at,
            "started_at": r.started_at, "ended_at": r.ended_at,
        }  # fmt: skip
        row.update({f"params.{k}": val for k, val in v.params.items()})
        row.update({f"metrics.{k}": val for k, val in v.metrics.items()})
        row.update({f"tags.{k}": val for k, val in v.tags.items()})
        rows.append(row)
    columns = ["run_id", "name", "kind", "status", "owner", "dataset", "created_at",
               "started_at", "ended_at"]  # fmt: skip
    return pd.DataFrame(rows, columns=list(dict.fromkeys(columns + [k for r in rows for k in r])))


def comparison_values(found: RunComparison) -> dict[str, list[Any]]:
    """Each row of a comparison (``params.KEY``, ``metrics.KEY``) with one value per run (None
    where the run lacks the key)."""
    out: dict[str, list[Any]] = {}
    for row in found.rows:
        kind, _, key = row.partition(".")
        out[row] = [(v.params if kind == "params" else v.metrics).get(key) for v in found.runs]
    return out


def comparison_frame(found: RunComparison, *, only_differing: bool = False) -> pd.DataFrame:
    """A comparison as a DataFrame (see ``RunsClient.compare``)."""
    import pandas as pd  # only where a DataFrame is asked for

    differing = set(found.differing)
    rows = [r for r in found.rows if r in differing or not only_differing]
    values = comparison_values(found)
    columns = [v.run.id for v in found.runs]
    frame = pd.DataFrame([values[r] for r in rows], index=pd.Index(rows, name="key"),
                         columns=columns, dtype=object)  # fmt: skip
    frame["differs"] = [r in differing for r in rows]
    return frame
