"""The warm pool: training workers started ahead of time, so a small job starts in seconds.

A job through Ray Jobs and Ray Train starts a job driver, a Train controller and a worker
group: three rounds of new Python processes that each import Ray and torch. On this platform's
2-core reference machine that was 30 of the 39 s from submit to the first training step
(``_startup``), against 3.6 s for a plain process to import torch and take one step.

The pool keeps ``Settings.train_pool_size`` worker actors (``PoolWorker``) started, with torch
and the training loop imported. The scheduler owns them (they end with it) and runs an eligible
job (``eligible``: a built-in model without a runtime_env, on CPUs, at most pool-size workers, a
version small enough to train in memory) without a new process:

- the scheduler's own thread drives it (``PoolJob``): the same ``execute.execute_training`` a Ray Job
  driver runs (owner check, data read and encode, lineage, registration), with ``PoolJob.fit``
  in place of ``runner.fit``;
- ``fit`` takes ``workers`` members, and each runs ``runner.run_loop``, the loop Ray Train
  workers run, in a gloo process group of its own for the job (a fresh TCP store port each time,
  destroyed at the end). Same loop, same data split, same seed: the same metrics as the Ray
  Train path, bit for bit on CPU;
- rank 0 writes each checkpoint under ``<artifact root>/checkpoints/<run id>`` and sends each
  epoch's metrics to the metadata store, as Ray Train's controller does;
- a member that dies or raises fails the attempt: the job's members are killed (a survivor may
  be waiting in a collective), the pool starts replacements, and the job starts again from its
  last checkpoint on other members, up to ``max_failures`` times;
- a cancel kills the job's members; the pool replaces them;
- the job's log (``_joblog.pool_log_path``) has the driver's lines and the members' output,
  written by the members line by line as they print (``dlp train logs`` follows it live).

Any other job, and every job while the pool has no free member, takes the Ray Jobs path as
before.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.fs as pafs
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from dlplatform.metadata import RunStatus
from dlplatform.metadata.records import utcnow
from dlplatform.train import _startup
from dlplatform.train.spec import TrainingJobSpec

if TYPE_CHECKING:
    import torch

    from dlplatform.context import Backend
    from dlplatform.train.runner import TrainOutcome

READY_TIMEOUT_S = 180.0
"""How long a job waits for pool members to be free and started (the first job after a cold
start waits for the pool to import torch)."""
PROCESS_GROUP_TIMEOUT_S = 600
"""gloo collectives' timeout; a rank that dies is noticed sooner, by the driver, which kills
the job's other members."""
MAX_START_FAILURES = 3
"""Members failing to start this many times in a row mark the pool broken: jobs take the Ray
Jobs path for ``BROKEN_S``, then the pool is tried again."""
BROKEN_S = 60.0
MEMBER_LOG_BYTES = 64 << 20
"""At most this much of a member's output per attempt goes to the job's log (a runaway print
loop must not fill the disk); a last line says what was dropped."""
CHECKPOINT_MARKER = "metrics.json"
"""Written last into a pool checkpoint: a directory without it is incomplete."""


def eligible(spec: TrainingJobSpec, has_gpus: bool) -> bool:
    """Whether ``spec`` may run on the warm pool, as far as the spec alone says: a built-in
    model without a runtime_env, on CPUs. The scheduler also checks that it has no more workers
    than the pool has members, that its version is small (``runner.is_small``: trained in
    memory), that enough members are free and that the cluster is one node: on several, Ray
    Train spreads a job's workers over the nodes (and restarts them on others when one is
    lost), which members that stay on the head cannot do."""
    use_gpu = spec.use_gpu if spec.use_gpu is not None else has_gpus
    return (
        spec.is_builtin
        and spec.runtime_env is None
        and not use_gpu
        and not (spec.resources_per_worker or {}).get("GPU")
    )


# --- checkpoints -----------------------------------------------------------------------------


class CheckpointStore:
    """A pool job's checkpoints under ``root`` on ``filesystem`` (pyarrow; local when None):
    ``checkpoint_epoch_NNNNNN/`` holding the loop's files and, written last, the epoch's
    metrics. Keeps the ``keep`` best by score and the latest, as Ray Train's
    ``CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="score")`` does."""

    def __init__(self, root: str, filesystem: Any = None, keep: int = 2) -> None:
        self.root = root.rstrip("/")
        self.fs = filesystem or pafs.LocalFileSystem()
        self.keep = keep

    def save(self, local_dir: str, metrics: dict[str, float]) -> str:
        dest = f"{self.root}/checkpoint_epoch_{int(metrics['epoch']):06d}"
        self.fs.create_dir(dest, recursive=True)
        pafs.copy_files(local_dir, dest, source_filesystem=pafs.LocalFileSystem(),
                        destination_filesystem=self.fs)  # fmt: skip
        with self.fs.open_output_stream(f"{dest}/{CHECKPOINT_MARKER}") as out:
            out.write(json.dumps(metrics).encode())
        self._prune()
        return dest

    def saved(self) -> list[tuple[str, dict[str, float]]]:
        """Complete checkpoints, oldest epoch first, with their metrics."""
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        dirs = sorted(i.path for i in infos if i.type == pafs.FileType.Directory
                      and i.base_name.startswith("checkpoint_epoch_"))  # fmt: skip
        out = []
        for path in dirs:
            try:
                with self.fs.open_input_stream(f"{path}/{CHECKPOINT_MARKER}") as f:
                    out.append((path, json.loads(f.read())))
            except (FileNotFoundError, OSError, ValueError):
                continue  # written by an attempt that died before finishing it
        return out

    def latest(self) -> str | None:
        saved = self.saved()
        return saved[-1][0] if saved else None

    def best(self) -> tuple[str, dict[str, float]] | None:
        """The checkpoint with the lowest score (the earliest among equals)."""
        saved = self.saved()
        return min(saved, key=lambda s: float(s[1].get("score", float("inf")))) if saved else None

    def _prune(self) -> None:
        saved = self.saved()
        by_score = sorted(saved, key=lambda s: float(s[1].get("score", float("inf"))))
        kept = {path for path, _ in by_score[: self.keep]} | {saved[-1][0]}
        for path, _ in saved:
            if path not in kept:
                self.fs.delete_dir(path)

    def download(self, path: str, local_dir: str) -> None:
        pafs.copy_files(path, local_dir, source_filesystem=self.fs,
                        destination_filesystem=pafs.LocalFileSystem())  # fmt: skip

    @contextlib.contextmanager
    def local_copy(self, path: str | None) -> Iterator[str | None]:
        """``path`` copied into a temporary local directory (None: nothing to resume from)."""
        if path is None:
            yield None
            return
        local = tempfile.mkdtemp(prefix="dlp-resume-")
        try:
            self.download(path, local)
            yield local
        finally:
            shutil.rmtree(local, ignore_errors=True)


# --- one member ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankTask:
    """What a member needs to train one rank of a job (sent through Ray: it holds the rows'
    object refs and the metadata actor's client)."""

    run_id: str
    rank: int
    world: int
    master: tuple[str, int] | None
    config: dict[str, Any]
    resume: str | None
    checkpoint_root: str
    filesystem: Any
    store: Any
    log_path: str
    """The job's log: members run on the scheduler's node (``eligible``), so they append their
    output to it themselves, as it comes."""


class PoolSession:
    """``runner.LoopSession`` of a pool member: its own process group, checkpoints through
    ``CheckpointStore``, epoch metrics straight to the metadata actor (from rank 0)."""

    def __init__(self, task: RankTask, started_at: float) -> None:
        self.rank, self.world, self.started_at = task.rank, task.world, started_at
        self._task = task
        self._checkpoints = CheckpointStore(task.checkpoint_root, task.filesystem)
        self._reports = 0
        self.last_metrics: dict[str, float] | None = None

    def resume_dir(self) -> contextlib.AbstractContextManager[str | None]:
        return self._checkpoints.local_copy(self._task.resume)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return model
        from torch.nn.parallel import (
            DistributedDataParallel,  # torch: in the members, not the scheduler
        )

        return DistributedDataParallel(model)  # what Ray Train's prepare_model does on CPUs

    def shard(self, side: str) -> Any:
        raise RuntimeError("the warm pool trains versions held in memory only")

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        if self.rank != 0:
            return
        if checkpoint_dir is not None:
            self._checkpoints.save(checkpoint_dir, metrics)
        from dlplatform.train.runner import log_epoch_metrics  # torch: in the members only

        log_epoch_metrics(self._task.store, self._task.run_id, metrics, self._reports)
        self._reports += 1
        self.last_metrics = dict(metrics)


class _LiveLog(io.TextIOBase):
    """A member's stdout and stderr for one rank: each whole line is appended to the job's log
    at once, as ``(rank N) line`` (O_APPEND: the driver and the other ranks append to the same
    file), up to ``MEMBER_LOG_BYTES``."""

    def __init__(self, path: str, rank: int) -> None:
        self._out = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed by close)
        self._prefix = f"(rank {rank}) "
        self._partial = ""
        self._left = MEMBER_LOG_BYTES
        self._dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        if lines:
            self._emit(lines)
        return len(text)

    def _emit(self, lines: list[str]) -> None:
        block = "".join(f"{self._prefix}{line}\n" for line in lines)
        if len(block) > self._left:
            self._dropped += len(block)
            return
        self._left -= len(block)
        self._out.write(block)
        self._out.flush()

    def close(self) -> None:
        if self._out.closed:
            return
        if self._partial:
            self._emit([self._partial])
        if self._dropped:
            self._out.write(f"{self._prefix}[output beyond {MEMBER_LOG_BYTES:,} characters "
                            f"dropped: {self._dropped:,} more]\n")  # fmt: skip
        self._out.close()
        super().close()


class _PoolWorker:
    """A warm member: a Ray actor with torch and the training loop imported, training one rank
    of one job at a time (``train``)."""

    def __init__(self) -> None:
        # What the pool is for: torch and the loop imported once, before any job arrives.
        import torch.distributed  # noqa: F401

        from dlplatform.train import runner  # torch: members and pool jobs, not the gateway

        runner.warm_up()
        self.pid = os.getpid()

    def ping(self) -> int:
        return self.pid

    def address(self) -> tuple[str, int]:
        """This node's address and a free port for the job's process group (rank 0 serves it)."""
        host = ray.util.get_node_ip_address()
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, 0))
            return host, int(s.getsockname()[1])

    def train(self, task: RankTask) -> dict[str, Any]:
        """Train ``task``'s rank to the end; returns rank 0's last metrics."""
        import torch.distributed as dist  # torch: in the members only

        from dlplatform.train import runner  # torch: members and pool jobs, not the gateway

        started = _startup.now()
        output = _LiveLog(task.log_path, task.rank)
        session = PoolSession(task, started)
        try:
            with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
                if task.world > 1 and task.master is not None:
                    host, port = task.master
                    dist.init_process_group(
                        "gloo", init_method=f"tcp://{f'[{host}]' if ':' in host else host}:{port}",
                        rank=task.rank, world_size=task.world,
                        timeout=timedelta(seconds=PROCESS_GROUP_TIMEOUT_S),
                    )  # fmt: skip
                runner.run_loop(task.config, session, _startup.now())
        finally:
            output.close()
            if dist.is_initialized():
                dist.destroy_process_group()
            gc.collect()
        return {"final": session.last_metrics}


PoolWorker = ray.remote(num_cpus=0, max_restarts=0, max_task_retries=0)(_PoolWorker)
"""Members hold no CPUs in Ray's books: the scheduler admits pool jobs against the same CPU
count as Ray Train jobs (``scheduler.needs``), and an idle member must not keep CPUs from them."""


# --- the pool --------------------------------------------------------------------------------


class PoolUnavailable(RuntimeError):
    """The pool could not give a job its members (none started in time, or they fail to)."""


@dataclass
class _Member:
    handle: Any
    pid: int | None = None


@dataclass
class WarmPool:
    """The scheduler's members: free ones (started or starting) and those each job holds."""

    size: int
    node_id: str | None = None
    """Where members start: the scheduler's node (the head), beside the job's driver, which
    reads the checkpoints rank 0 writes."""
    _free: list[_Member] = field(default_factory=list)
    _busy: dict[str, list[_Member]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _start_failures: int = 0
    _failed_at: float = 0.0
    last_error: str = ""

    def fill(self) -> None:
        """Start members until the pool has ``size`` (free and held together)."""
        with self._cond:
            held = len(self._free) + sum(len(m) for m in self._busy.values())
            options: dict[str, Any] = {}
            if self.node_id is not None:
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                    self.node_id, soft=False
                )
            for _ in range(self.size - held):
                self._free.append(_Member(PoolWorker.options(**options).remote()))  # type: ignore[attr-defined]

    @property
    def is_healthy(self) -> bool:
        if self.size == 0:
            return False
        return (
            self._start_failures < MAX_START_FAILURES
            or time.monotonic() - self._failed_at > BROKEN_S
        )

    def take(self, run_id: str, n: int, timeout_s: float = 0.0) -> bool:
        """Hold ``n`` free members for ``run_id`` (waiting up to ``timeout_s`` for them);
        False when there are not that many."""
        deadline = time.monotonic() + timeout_s
        self.fill()
        with self._cond:
            while len(self._free) < n:
                left = deadline - time.monotonic()
                if left <= 0 or not self.is_healthy:
                    return False
                self._cond.wait(min(left, 1.0))
            taken, self._free = self._free[:n], self._free[n:]
            self._busy.setdefault(run_id, []).extend(taken)
            return True

    def ready(self, run_id: str, n: int, cancelled: threading.Event) -> list[_Member]:
        """``run_id``'s ``n`` members once each answers (with its pid); a member that does not
        (died while idle, or never started) is replaced first.

        Raises:
            PoolUnavailable: no started members within ``READY_TIMEOUT_S``, or the pool keeps
                failing to start them (the last error is in the message).
        """
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if cancelled.is_set():
                raise PoolUnavailable("the job was cancelled")
            with self._cond:
                members = list(self._busy.get(run_id, []))
            if len(members) < n and not self.take(
                run_id, n - len(members), max(0.0, deadline - time.monotonic())
            ):
                raise PoolUnavailable(
                    f"no {n} warm pool worker(s) started within {READY_TIMEOUT_S:g} s"
                    + (f" (last error: {self.last_error})" if self.last_error else "")
                )
            with self._cond:
                members = list(self._busy.get(run_id, []))
            dead = []
            for member in members:
                try:
                    left = max(1.0, deadline - time.monotonic())
                    member.pid = int(ray.get(member.handle.ping.remote(), timeout=left))
                    self._start_failures = 0
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                    dead.append(member)
                    if cancelled.is_set():  # killed by the cancel, not broken
                        continue
                    self._start_failures += 1
                    self._failed_at = time.monotonic()
                    self.last_error = f"{type(exc).__name__}: {str(exc).strip()[:300]}"
            if not dead:
                return members
            self._drop(run_id, dead)
            if not self.is_healthy:
                raise PoolUnavailable(f"warm pool workers fail to start: {self.last_error}")

    def _drop(self, run_id: str, members: list[_Member]) -> None:
        with self._cond:
            held = self._busy.get(run_id, [])
            self._busy[run_id] = [m for m in held if m not in members]
        for member in members:
            with contextlib.suppress(Exception):
                ray.kill(member.handle, no_restart=True)
        self.fill()

    def release(self, run_id: str) -> None:
        """``run_id``'s members are free again (its job ended well)."""
        with self._cond:
            self._free.extend(self._busy.pop(run_id, []))
            self._cond.notify_all()

    def discard(self, run_id: str) -> None:
        """Kill ``run_id``'s members (a failed attempt, a cancel) and start replacements."""
        with self._cond:
            members = self._busy.pop(run_id, [])
        for member in members:
            with contextlib.suppress(Exception):
                ray.kill(member.handle, no_restart=True)
        self.fill()
        with self._cond:
            self._cond.notify_all()

    def free_count(self) -> int:
        with self._cond:
            return len(self._free)

    def status(self) -> dict[str, Any]:
        """Size, free members (pids once they answered) and the members each job holds."""
        with self._cond:
            return {
                "size": self.size,
                "free": len(self._free),
                "free_pids": [m.pid for m in self._free if m.pid is not None],
                "busy": {run: [m.pid for m in ms] for run, ms in self._busy.items()},
                "healthy": self.is_healthy,
                "last_error": self.last_error,
            }


# --- driving one job -------------------------------------------------------------------------


class WorkerProcessDied(RuntimeError):
    """A pool member's process ended while it trained a rank."""


class RankFailed(RuntimeError):
    """An attempt failed on one rank; ``worker_failures`` is what ``runner.failure_message``
    reads (as for Ray Train's ``TrainingFailedError``)."""

    def __init__(self, rank: int, cause: BaseException) -> None:
        super().__init__(f"rank {rank}: {type(cause).__name__}: {cause}")
        self.worker_failures = {rank: cause}


class PoolJob:
    """One run on the pool, driven by a thread of the scheduler (see the module docstring)."""

    def __init__(self, pool: WarmPool, backend: Backend, run_id: str, log_path: Path,
                 on_end: Callable[[str], None]) -> None:  # fmt: skip
        self.pool = pool
        self.backend = backend
        self.run_id = run_id
        self.log_path = log_path
        self.cancelled = threading.Event()
        self._on_end = on_end
        self._thread = threading.Thread(target=self._main, name=f"dlp-pool-{run_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the job's thread to end (its log to be complete)."""
        self._thread.join(timeout_s)

    def cancel(self) -> None:
        """Stop the job now: its members are killed (the pool starts others)."""
        self.cancelled.set()
        self.pool.discard(self.run_id)

    def log(self, line: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as out:
            out.write(line if line.endswith("\n") else line + "\n")

    def _main(self) -> None:
        # torch and the platform's training code: imported by the scheduler for its first pool
        # job (or by ``Scheduler.warm_pool``), never by the processes that only queue jobs.
        from dlplatform.train.execute import execute_training, outcome_line

        try:
            self.log(f"dlplatform run {self.run_id}: training on the warm pool")
            run = execute_training(self.backend, self.run_id, fit=self.fit)
            self.log(outcome_line(run))
        except Exception as exc:  # execute ends the run itself; this is a failure around it
            reason = f"the warm pool's driver failed: {type(exc).__name__}: {exc}"[:2000]
            self.log(reason)
            with contextlib.suppress(Exception):
                if not self.backend.store.get_run(self.run_id).status.is_final:
                    self.backend.store.update_run(
                        self.run_id, status=RunStatus.FAILED, ended_at=utcnow(), error=reason
                    )
        finally:
            # Members no attempt used (the data read failed, say) go back as they are; ``fit``
            # gave back or killed the others already.
            self.pool.release(self.run_id)
            self._on_end(self.run_id)

    def fit(self, *, run_id: str, spec: TrainingJobSpec, train_plan: Any, datasets: Any,
            store: Any, artifacts: Any, use_gpu: bool, torch_threads: int = 1,
            startup: dict[str, float] | None = None) -> TrainOutcome:  # fmt: skip
        """``runner.fit`` on pool members (same arguments, same outcome).

        Raises:
            RankFailed: a rank failed more than ``spec.max_failures`` times in all.
            PoolUnavailable: no members could be had.
        """
        from dlplatform.train import runner  # torch: members and pool jobs, not the gateway

        if datasets.datasets or use_gpu:
            raise PoolUnavailable("the warm pool trains small versions on CPUs only")
        root, filesystem = runner.checkpoint_storage(artifacts)
        checkpoints = CheckpointStore(f"{root.rstrip('/')}/{run_id}", filesystem)
        config = runner.loop_config(run_id, spec, train_plan, datasets, torch_threads)
        failures = 0
        while True:  # the first attempt's members were taken at admission (``take``)
            members = self.pool.ready(run_id, spec.workers, self.cancelled)
            if "progress" not in config:  # the first attempt: startup goes on
                marks = {**(startup or {}), "workers_assigned": _startup.now()}
                marks["fit_started"] = _startup.now()
                config["progress"] = runner.ProgressReporter(store, run_id, marks)
            try:
                final = self._attempt(members, config, checkpoints, store)
            except RankFailed as exc:
                self.pool.discard(run_id)  # a survivor may wait in a collective: never reused
                if self.cancelled.is_set():
                    raise
                failures += 1
                if failures > spec.max_failures:
                    self.log(f"{exc}; no restarts left (max_failures={spec.max_failures})")
                    raise
                self.log(f"{exc}; restarting from the last checkpoint "
                         f"({failures} of {spec.max_failures} restarts)")  # fmt: skip
                continue
            except BaseException:
                self.pool.discard(run_id)
                raise
            self.pool.release(run_id)
            break
        chosen = checkpoints.best()
        final_metrics = {k: float(v) for k, v in (final or {}).items()}
        if chosen is None:
            return runner.TrainOutcome(None, {}, final_metrics, checkpoints.root)
        local = Path(tempfile.mkdtemp(prefix=f"dlp-{run_id}-"))
        checkpoints.download(chosen[0], str(local))
        metrics = {k: float(v) for k, v in chosen[1].items()}
        return runner.TrainOutcome(local, metrics, final_metrics, checkpoints.root)

    def _attempt(self, members: list[_Member], config: dict[str, Any],
                 checkpoints: CheckpointStore, store: Any) -> dict[str, float] | None:  # fmt: skip
        """One attempt of every rank, from the latest checkpoint; rank 0's last metrics."""
        world = len(members)
        try:
            master = ray.get(members[0].handle.address.remote()) if world > 1 else None
        except ray.exceptions.RayActorError as exc:
            raise RankFailed(0, WorkerProcessDied(_died(members[0], exc))) from exc
        resume = checkpoints.latest()
        refs = {
            member.handle.train.remote(RankTask(
                run_id=self.run_id, rank=rank, world=world, master=master, config=config,
                resume=resume, checkpoint_root=checkpoints.root, filesystem=checkpoints.fs,
                store=store, log_path=str(self.log_path),
            )): rank
            for rank, member in enumerate(members)
        }  # fmt: skip
        final = None
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=5.0)
            for ref in done:
                rank = refs[ref]
                try:
                    reply = ray.get(ref)
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as exc:
                    raise self._first_failure(refs, members, ref, exc) from exc
                if rank == 0:
                    final = reply["final"]
        return final

    def _first_failure(self, refs: dict[Any, int], members: list[_Member], ref: Any,
                       exc: BaseException) -> RankFailed:  # fmt: skip
        """The failure to report: a rank whose process died, when one did within a second of
        ``exc`` (its peers then fail too, on a broken connection, which says less)."""
        if not isinstance(exc, ray.exceptions.RayActorError):
            others = [r for r in refs if r != ref]
            done, _ = ray.wait(others, num_returns=len(others), timeout=1.0) if others else ([], [])
            for other in done:
                try:
                    ray.get(other)
                except ray.exceptions.RayActorError as died:
                    ref, exc = other, died
                    break
                except Exception:
                    continue
        rank = refs[ref]
        if isinstance(exc, ray.exceptions.RayActorError):
            return RankFailed(rank, WorkerProcessDied(_died(members[rank], exc)))
        cause = getattr(exc, "cause", None)
        return RankFailed(rank, cause if isinstance(cause, BaseException) else exc)


def _died(member: _Member, exc: BaseException) -> str:
    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    return f"the warm pool worker's process (pid {member.pid}) died: {first[:300]}"
