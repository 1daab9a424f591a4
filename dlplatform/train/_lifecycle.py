"""The run lifecycle shared by training and tuning: record, hold resources, run, end, wait.

Training (``service``, ``execute``) and tuning (``tune``) both import this module; it imports
neither of them, nor the scheduler, so the scheduler, the drivers and the services stand on it
without a circle. What is here:

- recording: ``new_run_id``, ``Holding`` (the resources a run holds once admitted: the
  ``workers``/``cpus``/``gpus`` fields of its ``Run``, which the scheduler reads), ``job_spec``
  (the training spec a run's job runs with);
- the job driver's prologue: ``connect_ray``, ``job_backend``, ``load_inputs``;
- the code a run ran: ``code_version`` and the exact re-run check (``reproduces``,
  ``check_code``);
- ending: ``finish`` (end a run, revoke its token), ``close_children`` (end its trials);
- waiting: ``wait_final`` (block until a run is final, woken by the store).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, TypeVar

import ray

from dlplatform import data
from dlplatform.access import Principal, revoke_run_tokens
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import Conflict
from dlplatform.metadata import Commit, Run, RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train._usercode import job_principal
from dlplatform.train.spec import MAX_WATCH_S, TrainingJobSpec

REPRODUCES_TAG = "reproduces:"
ALLOW_CODE_CHANGE_TAG = "allow-code-change"

J = TypeVar("J")


# --- recording -------------------------------------------------------------------------------


def new_run_id() -> str:
    return f"run-{secrets.token_hex(6)}"


@dataclass(frozen=True)
class Holding:
    """What a run holds while it runs, recorded in its ``Run`` (``workers``, ``cpus``,
    ``gpus``) at submit: the scheduler's admission unit. A tuning run holds all its concurrent
    trials' workers."""

    workers: int
    cpus: float
    gpus: float | None
    """None: one per worker when the cluster has GPUs, none otherwise (``use_gpu`` unset)."""

    @classmethod
    def of_spec(cls, spec: TrainingJobSpec, copies: int = 1) -> Holding:
        """What ``copies`` runs of ``spec`` hold at once."""
        per = spec.resources_per_worker or {}
        workers = spec.workers * copies
        gpus: float | None = None
        if "GPU" in per:
            gpus = float(per["GPU"]) * workers
        elif spec.use_gpu is not None:
            gpus = float(workers) if spec.use_gpu else 0.0
        return cls(workers, spec.cpus_per_worker() * workers, gpus)

    @classmethod
    def of_run(cls, run: Run) -> Holding:
        """The holding ``run`` recorded; a training run that recorded none (made by hand, or
        by an older version of the platform) holds what its spec asks for.

        Raises:
            ValueError: neither is readable.
        """
        if run.workers > 0:
            return cls(run.workers, run.cpus, run.gpus)
        if run.kind != "train":
            raise ValueError(f"{run.kind} run {run.id} records no resources")
        return cls.of_spec(TrainingJobSpec.model_validate_json(run.spec_json))

    def needs(self, has_gpus: bool) -> tuple[float, float]:
        """(CPUs, GPUs) held on a cluster with or without GPUs."""
        gpus = self.gpus if self.gpus is not None else (float(self.workers) if has_gpus else 0.0)
        return self.cpus, gpus

    def fields(self) -> dict[str, Any]:
        """The ``Run`` fields that record this holding."""
        return {"workers": self.workers, "cpus": self.cpus, "gpus": self.gpus}


def job_spec(run: Run) -> TrainingJobSpec:
    """The training spec a run's job runs with: a training run's own, a tuning run's trial
    template (its ``training``: every trial has its ``runtime_env``).

    Raises:
        ValueError: the spec cannot be read (written by another version of the platform).
    """
    data = json.loads(run.spec_json)
    if run.kind == "tune":
        if not isinstance(data, dict) or "training" not in data:
            raise ValueError(f"tuning run {run.id} has no training spec")
        data = data["training"]
    return TrainingJobSpec.model_validate(data)


# --- the job driver's prologue ---------------------------------------------------------------


def connect_ray(settings: Settings, attempts: int = 4) -> None:
    """Join the job's cluster; retried, as a busy head can time out a driver's first connect."""
    address = settings.ray_address
    if address:
        # Ray Train's helpers (state API) resolve the cluster from RAY_ADDRESS: keep them on ours.
        os.environ["RAY_ADDRESS"] = address
    for attempt in range(attempts):
        try:
            ray.init(
                address=address, namespace=settings.namespace, log_to_driver=True,
                logging_level="WARNING",
            )  # fmt: skip
            return
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            ray.shutdown()
            time.sleep(2.0 * (attempt + 1))


def job_backend(settings: Settings) -> Backend:
    """The backend of a job's process (a driver, a Tune trial): the metadata actor's client."""
    return Backend.connect(settings)


@dataclass(frozen=True)
class JobInputs:
    """What a training or tuning driver reads before it plans: whom it acts as, the pinned
    commit, its schema, the label column and (a one-feature CNN) the first row."""

    principal: Principal
    commit: Commit
    schema: Any  # pyarrow.Schema
    label_values: Any  # pyarrow.ChunkedArray
    first_row: dict[str, Any] | None


def load_inputs(backend: Backend, run: Run, spec: TrainingJobSpec) -> JobInputs:
    """Check the owner may still run the job (before user code is imported), then read the
    dataset's schema and label column.

    Raises:
        PermissionDenied: the owner is gone, disabled, or may no longer run the code.
        NotFound: the dataset or commit is gone.
    """
    principal = job_principal(backend, run, spec)
    commit = data.resolve(backend, principal, spec.dataset)
    schema = data.arrow_schema(commit)
    label_values = data.to_arrow(backend, commit, columns=[spec.label]).column(0)
    first_row = None
    if spec.model == "cnn" and spec.features and len(spec.features) == 1:
        table = data.to_arrow(backend, commit, columns=[spec.features[0]])
        first_row = table.slice(0, 1).to_pylist()[0] if table.num_rows else None
    return JobInputs(principal, commit, schema, label_values, first_row)


# --- the code a run ran ----------------------------------------------------------------------


def package_version() -> str:
    try:
        return version("dlplatform")
    except PackageNotFoundError:
        return "unknown"


def _sha256_of_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# The modules whose source is the built-in models' training and inference code.
_BUILTIN_CODE = (
    "dlplatform.models.builtin",
    "dlplatform.models.encoding",
    "dlplatform.train.runner",
)


def code_version(spec: TrainingJobSpec) -> str:
    """``dlplatform-<version>+sha256:<hash of the training/inference code>``.

    Built-in models hash ``models/builtin.py``, ``models/encoding.py`` and ``train/runner.py``;
    user code hashes the source files of the modules of ``model`` and ``model_factory``.
    """
    if spec.is_builtin:  # located, not imported: the gateway checks re-runs without torch
        files = [Path(str(importlib.util.find_spec(name).origin))  # type: ignore[union-attr]
                 for name in _BUILTIN_CODE]  # fmt: skip
    else:
        files = []
        for ref in (spec.model, spec.model_factory):
            if ref:
                module = importlib.import_module(ref.partition(":")[0])
                files.append(Path(inspect.getfile(module)))
    return f"dlplatform-{package_version()}+sha256:{_sha256_of_files(files)}"


def reproduces(run: Run) -> str | None:
    """The id of the run ``run`` says it reproduces (its tag, which the job's own code check
    reads: the lineage edge is written only once the job is queued)."""
    return next((t[len(REPRODUCES_TAG) :] for t in run.tags if t.startswith(REPRODUCES_TAG)), None)


def check_code(original: Run, current: str, allowed: bool) -> None:
    """Refuse a re-run whose code version ``current`` is not the original's.

    Raises:
        Conflict: the code differs and ``allowed`` is false; the message names both versions.
    """
    if allowed or original.code_version is None or original.code_version == current:
        return
    raise Conflict(
        f"run {original.id} ran code {original.code_version}, the installed code is {current}: "
        "an exact re-run needs the same code (reproduce with allow_code_change / "
        "--allow-code-change to run it anyway; that is recorded)"
    )


# --- ending ----------------------------------------------------------------------------------


def finish(backend: Backend, run_id: str, status: RunStatus, **changes: Any) -> Run:
    """End the run with ``status`` (unless it was cancelled meanwhile: the user's decision stays)
    and revoke its run token: the job's code can no longer act as the owner. The token goes
    first, so whoever sees the run ended finds its token revoked too."""
    current = backend.store.get_run(run_id)
    ending = current.status if current.status.is_final else status
    revoke_run_tokens(backend.store, run_id, f"its run ended ({ending.value})")
    if not current.status.is_final:
        current = backend.store.update_run(run_id, status=status, ended_at=utcnow(), **changes)
    return current


def close_children(store: Any, run_id: str, status: RunStatus, reason: str) -> None:
    """End the unfinished child runs (tuning trials) of ``run_id`` with ``status``: a job that
    ended leaves none of its trials RUNNING."""
    for child in store.list_runs(parent_id=run_id, limit=100_000):
        if not child.status.is_final:
            store.update_run(child.id, status=status, ended_at=utcnow(), error=reason)


# --- waiting ---------------------------------------------------------------------------------


def _wait_change(backend: Backend, run_id: str, known: int | None, timeout_s: float) -> int:
    store = backend.store
    if hasattr(store, "watch_run"):  # the metadata actor's client
        return int(ray.get(store.watch_run(run_id, known, timeout_s)))
    return int(store.wait_run_change(run_id, known, timeout_s))


def wait_final(
    backend: Backend,
    run_id: str,
    fetch: Callable[[], J],
    run_of: Callable[[J], Run],
    *,
    timeout_s: float | None = None,
    poll_s: float = MAX_WATCH_S,
    on_update: Callable[[J], None] | None = None,
) -> J:
    """Fetch the job until its run is final; ``on_update`` sees it after each change (woken
    by the store when the run changes, not a polling interval; ``poll_s`` bounds one wait).

    Raises:
        TimeoutError: not final within ``timeout_s``.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    known: int | None = backend.store.run_version(run_id)
    while True:
        job = fetch()
        if on_update is not None:
            on_update(job)
        run = run_of(job)
        if run.status.is_final:
            return job
        left = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
        if left <= 0:
            raise TimeoutError(f"job {run_id} is still {run.status.value} after {timeout_s} s")
        try:
            known = _wait_change(backend, run_id, known, left)
        except Exception:  # the metadata actor restarted: read again after a pause
            time.sleep(min(1.0, left))
            known = None
