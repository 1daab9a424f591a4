"""``p.training``, ``p.tuning`` and ``p.models`` over HTTP.

```python
job = p.training.submit(dataset="digits", model="mlp", label="target", workers=2)
run = job.wait()                       # the finished Run record
job.metrics()                          # a DataFrame, one row per epoch
p.models.promote("digits-mlp", 1, "production")
```
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from dlplatform.client._files import download_all, safe_parts
from dlplatform.client._http import HttpClient
from dlplatform.errors import BackendUnavailable, IntegrityError, InvalidInput
from dlplatform.metadata import (
    AliasEvent,
    ArtifactFile,
    MetricPoint,
    ModelSummary,
    ModelVersion,
    Run,
)
from dlplatform.metadata.records import build
from dlplatform.train.spec import (
    MAX_LOG_CHUNK_BYTES,
    MAX_METRICS_PAGE,
    MAX_WATCH_S,
    JobChange,
    JobLogs,
    MetricsLogged,
    Reproduction,
    TrainingJob,
    TrainingJobSpec,
    epoch_table,
)
from dlplatform.train.tune import TrialSummary, TuningJob, TuningJobSpec, build_spec

if TYPE_CHECKING:
    import pandas as pd


def _seg(value: object) -> str:
    return quote(str(value), safe="")


def poll_until(
    fetch: Callable[[], Any], is_final: Callable[[Any], bool], timeout_s: float | None,
    on_update: Callable[[Any], None] | None = None, what: str = "job",
    wait_change: Callable[[float], None] | None = None,
) -> Any:  # fmt: skip
    """Call ``fetch`` until ``is_final``: between calls, ``wait_change(at most s)`` when given
    (it returns once the job changed), else a pause backing off from 0.2 s to 2 s.

    Raises:
        TimeoutError: not final within ``timeout_s``.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    pause = 0.2
    while True:
        value = fetch()
        if on_update is not None:
            on_update(value)
        if is_final(value):
            return value
        if wait_change is not None:
            left = MAX_WATCH_S if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{what} did not finish within {timeout_s} s")
            wait_change(min(left, MAX_WATCH_S))
            continue
        if deadline is not None and time.monotonic() + pause > deadline:
            raise TimeoutError(f"{what} did not finish within {timeout_s} s")
        time.sleep(pause)
        pause = min(pause * 1.5, 2.0)


class JobHandle:
    """A submitted training job."""

    def __init__(self, http: HttpClient, job_id: str) -> None:
        self._http = http
        self.id = job_id

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>"

    def _path(self, tail: str = "") -> str:
        return f"training/jobs/{_seg(self.id)}{'/' + tail if tail else ''}"

    def status(self) -> TrainingJob:
        return self._http.get(self._path(), TrainingJob)

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        on_update: Callable[[TrainingJob, list[MetricPoint]], None] | None = None,
    ) -> Run:
        """Block until the job is final and return its run (status, error, result); woken by
        the job's changes (``watch``), not a polling interval."""
        version: int | None = None

        def wait_change(left: float) -> None:
            nonlocal version
            try:
                version = self.watch(version, left)
            except BackendUnavailable:  # the metadata actor restarted: read again shortly
                time.sleep(min(1.0, left))
                version = None

        def update(job: TrainingJob) -> None:
            if on_update is not None:
                on_update(job, self.metric_points())

        job: TrainingJob = poll_until(self.status, lambda j: j.run.status.is_final, timeout_s,
                                      update, f"job {self.id}", wait_change)  # fmt: skip
        return job.run

    def watch(self, known: int | None = None, timeout_s: float = MAX_WATCH_S) -> int:
        """The job's change counter as soon as it differs from ``known`` (a new metric point, a
        status change), else after ``timeout_s``: wait on this between reads, not a timer."""
        params = {"timeout_s": timeout_s} | ({} if known is None else {"known": known})
        change: JobChange = self._http.call("GET", self._path("watch"), JobChange,
                                            params=params, timeout_s=timeout_s + 10)  # fmt: skip
        return change.version

    def metrics(self) -> pd.DataFrame:
        """The per-epoch metrics as a DataFrame, one row per epoch: an integer ``epoch`` column,
        then loss, val_loss, val_accuracy, throughput, restarts, ... (step-level ``step/*`` keys
        are left out; ``metric_points()`` has every point). Loads pandas."""
        import pandas as pd  # only where a DataFrame is asked for

        rows = self.epochs()
        frame = pd.DataFrame(rows, columns=list(dict.fromkeys(k for r in rows for k in r))
                             or ["epoch"])  # fmt: skip
        frame["epoch"] = frame["epoch"].astype("int64")
        return frame

    def epochs(self) -> list[dict[str, float]]:
        """The per-epoch metrics as plain rows, one dict per epoch (what ``metrics()`` holds)."""
        return epoch_table(self.metric_points())

    def metric_points(self, key: str | None = None) -> list[MetricPoint]:
        """Every metric point of the job (fetched a page at a time)."""
        return self._http.get_all(self._path("metrics"), MetricPoint,
                                  page_size=MAX_METRICS_PAGE, key=key)  # fmt: skip

    def logs(self, offset: int = 0) -> str:
        """The log from byte ``offset`` to its current end."""
        return "".join(chunk.text for chunk in self.follow_logs(offset))

    def read_logs(self, offset: int = 0) -> JobLogs:
        """One bounded chunk of the log from byte ``offset`` on, with where to continue and
        whether more will come."""
        return self._http.get(self._path("logs"), JobLogs, offset=offset)

    def follow_logs(
        self, offset: int = 0, *, follow: bool = False, poll_s: float = 1.0
    ) -> Iterator[JobLogs]:
        """The log's chunks from byte ``offset``: up to its current end, or with ``follow``
        until the job is final (polling every ``poll_s`` once caught up)."""
        while True:
            chunk = self.read_logs(offset)
            if chunk.text:
                yield chunk
            # a chunk short of the gateway's chunk size (less a cut UTF-8 character) reached
            # the end of the log as it was
            caught_up = chunk.next_offset - offset <= MAX_LOG_CHUNK_BYTES - 4
            offset = chunk.next_offset
            if chunk.final or (caught_up and not follow):
                return
            if caught_up:
                time.sleep(poll_s)

    def cancel(self) -> TrainingJob:
        return self._http.post(self._path("cancel"), TrainingJob)

    @property
    def model_version(self) -> str | None:
        """``name@N`` once the job SUCCEEDED and registered a version."""
        return self.status().model_version

    def reproduce(self, *, allow_code_change: bool = False) -> JobHandle:
        """Queue an exact re-run of this ended job (same dataset commit, seed and code); compare
        the two with the new handle's ``reproduction()`` once it ends."""
        job: TrainingJob = self._http.post(
            self._path("reproduce"), TrainingJob, {"allow_code_change": allow_code_change}
        )
        return JobHandle(self._http, job.id)

    def reproduction(self) -> Reproduction:
        """How this re-run's per-epoch metrics compare with the run it reproduces."""
        return self._http.get(self._path("reproduction"), Reproduction)

    def reproduced_by(self) -> list[TrainingJob]:
        """This job's re-runs, oldest first."""
        return self._http.get(self._path("reproduced-by"), list[TrainingJob])


class TrainingClient:
    """``p.training``: submit and follow training jobs."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def submit(
        self,
        spec: TrainingJobSpec | None = None,
        /,
        *,
        idempotency_key: str | None = None,
        **fields: Any,
    ) -> JobHandle:
        """Queue a job from a spec or from its fields (``dataset=``, ``model=``, ``label=``, ...).

        The submit carries an idempotency key (a new one unless given), so a retry after a lost
        connection or a gateway restart returns the same job instead of queuing a second one;
        a key of your own makes a repeated submit (a script run again) find its first job.
        """
        if spec is None:
            spec = build(TrainingJobSpec, **fields)
        elif fields:
            raise InvalidInput("pass either a TrainingJobSpec or its fields, not both")
        key = idempotency_key or uuid.uuid4().hex
        job: TrainingJob = self._http.call(
            "POST", "training/jobs", TrainingJob, json_body=spec,
            headers={"Idempotency-Key": key},
        )  # fmt: skip
        return JobHandle(self._http, job.id)

    def get(self, job_id: str) -> JobHandle:
        handle = JobHandle(self._http, job_id)
        handle.status()
        return handle

    def log_metrics(
        self,
        run_id: str,
        metrics: Mapping[str, float] | Sequence[tuple[str, float, int]],
        step: int = 0,
    ) -> int:
        """Append metric points to a run you own in one call: ``{"loss": 0.3}`` at ``step``,
        or ``[(key, value, step), ...]``. Returns how many were stored."""
        rows = [(k, float(v), step) for k, v in metrics.items()] if isinstance(
            metrics, Mapping
        ) else [(str(k), float(v), int(s)) for k, v, s in metrics]  # fmt: skip
        body = {"keys": [r[0] for r in rows], "values": [r[1] for r in rows],
                "steps": [r[2] for r in rows]}  # fmt: skip
        answer: MetricsLogged = self._http.post(f"runs/{_seg(run_id)}/metrics", MetricsLogged, body)
        return answer.count

    def list(
        self, *, status: list[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[TrainingJob]:
        return self._http.get(
            "training/jobs", list[TrainingJob], status=status, limit=limit, offset=offset
        )


class TuningHandle:
    """A submitted tuning job."""

    def __init__(self, http: HttpClient, job_id: str) -> None:
        self._http = http
        self.id = job_id

    def __repr__(self) -> str:
        return f"<TuningHandle {self.id}>"

    def status(self) -> TuningJob:
        return self._http.get(f"tuning/jobs/{_seg(self.id)}", TuningJob)

    def trials(self) -> list[TrialSummary]:
        """The trial table, best first by the search metric."""
        return self.status().trials

    def wait(
        self,
        timeout_s: float | None = None,
        *,
        on_update: Callable[[TuningJob], None] | None = None,
    ) -> TuningJob:
        return poll_until(  # type: ignore[no-any-return]
            self.status, lambda j: j.run.status.is_final, timeout_s, on_update, f"tuning {self.id}"
        )

    def cancel(self) -> TuningJob:
        return self._http.post(f"tuning/jobs/{_seg(self.id)}/cancel", TuningJob)


class TuningClient:
    """``p.tuning``: submit and follow hyperparameter searches."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def submit(self, spec: TuningJobSpec | None = None, /, **fields: Any) -> TuningHandle:
        """Queue a search from a spec or its fields (``training=``, ``space=``, ``samples=``...)."""
        if spec is None:
            spec = build_spec(**fields)
        elif fields:
            raise InvalidInput("pass either a TuningJobSpec or its fields, not both")
        job = self._http.post("tuning/jobs", TuningJob, spec)
        return TuningHandle(self._http, job.id)

    def get(self, job_id: str) -> TuningHandle:
        handle = TuningHandle(self._http, job_id)
        handle.status()
        return handle

    def list(self, *, status: list[str] | None = None, limit: int = 100) -> list[TuningJob]:
        return self._http.get("tuning/jobs", list[TuningJob], status=status, limit=limit)


def _model_ref(name: str, version_or_alias: str | int | None) -> tuple[str, str | int]:
    """(name, version or alias) of ``"name@3"``, ``("name", 3)`` or ``"name"`` (latest)."""
    if version_or_alias is None and "@" in name:
        name, _, version_or_alias = name.partition("@")
    return name, "latest" if version_or_alias is None else version_or_alias


class ModelsClient:
    """``p.models``: the model registry."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def list(self) -> list[ModelSummary]:
        return self._http.get("models", list[ModelSummary])

    def versions(self, name: str) -> list[ModelVersion]:
        return self._http.get(f"models/{_seg(name)}/versions", list[ModelVersion])

    def get(self, name: str, version_or_alias: str | int | None = None) -> ModelVersion:
        """A version by number or alias; ``"name@3"`` works too; latest when omitted."""
        name, which = _model_ref(name, version_or_alias)
        return self._http.get(f"models/{_seg(name)}/versions/{_seg(which)}", ModelVersion)

    def promote(self, name: str, version: int | str, alias: str) -> AliasEvent:
        if isinstance(version, str) and not version.isdigit():
            version = self.get(name, version).version
        return self._http.post(
            f"models/{_seg(name)}/aliases/{_seg(alias)}", AliasEvent, {"version": int(version)}
        )

    def history(self, name: str) -> list[AliasEvent]:
        return self._http.get(f"models/{_seg(name)}/aliases", list[AliasEvent])

    def artifacts(self, name: str, version_or_alias: str | int | None = None) -> list[ArtifactFile]:
        """The files of a version (``"name@3"`` works too; latest when omitted): the state dict
        ``weights.pt`` and ``model.json``, with sizes and sha256."""
        name, which = _model_ref(name, version_or_alias)
        path = f"models/{_seg(name)}/versions/{_seg(which)}/artifacts"
        return self._http.get(path, list[ArtifactFile])  # type: ignore[no-any-return]

    def download(
        self,
        name: str,
        directory: str | os.PathLike[str],
        version_or_alias: str | int | None = None,
        *,
        force: bool = False,
    ) -> list[Path]:
        """Download a version's files (``"name@3"``, ``"name@production"``; latest when
        omitted) into ``directory``, each checked against its sha256, all or nothing: they are
        written to a temporary directory first, so a failure leaves no partial file. Returns
        the files written.

        Raises:
            AlreadyExists: ``directory`` is not empty (``force=True`` writes into it).
            NotFound: no such model, version or alias.
            IntegrityError: a downloaded file does not match its sha256.
        """
        mv = self.get(name, version_or_alias)
        files = self.artifacts(mv.model, mv.version)
        base = f"models/{_seg(mv.model)}/versions/{mv.version}/artifacts"
        return download_all(
            self._http, lambda f: f"{base}/{'/'.join(_seg(p) for p in safe_parts(f.path))}",
            files, Path(directory), force=force,
        )  # fmt: skip

    def load(
        self, name: str, version_or_alias: str | int | None = None, *, allow_code: bool = False
    ) -> tuple[Any, Any]:
        """The version's torch module (eval mode, CPU) and its ``ModelSignature``.

        Downloads the weights-only artifact and checks it end to end: the manifest against the
        version's ``artifact_sha256``, each file against the manifest; weights are read with
        ``torch.load(weights_only=True)``. A model built by user code is rebuilt only with
        ``allow_code=True`` (that imports its ``model_factory`` here). Loads torch.

        Raises:
            IntegrityError: a downloaded object does not match its hash.
            InvalidInput: a user-code model without ``allow_code``.
        """
        import torch  # the caller asked for a torch module

        from dlplatform.models.artifact import CONFIG_FILE, WEIGHTS_FILE, model_from_files  # torch

        mv = self.get(name, version_or_alias)
        base = f"models/{_seg(mv.model)}/versions/{mv.version}/objects"

        def fetch(sha: str) -> bytes:
            with self._http.stream("GET", f"{base}/{sha}") as response:
                data = response.read()
            if hashlib.sha256(data).hexdigest() != sha:
                raise IntegrityError(f"model {mv.model}@{mv.version}: object {sha[:16]} is corrupt")
            return data

        manifest = json.loads(fetch(mv.artifact_sha256))
        try:
            config = json.loads(fetch(manifest[CONFIG_FILE]["sha256"]))
            weights = fetch(manifest[WEIGHTS_FILE]["sha256"])
        except KeyError as exc:
            raise IntegrityError(f"model {mv.model}@{mv.version} lacks {exc}") from None
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
        return model_from_files(config, state, f"{mv.model}@{mv.version}", allow_code=allow_code)
