"""The Ray Train side of a run: plan the inputs, run ``TorchTrainer``, return the chosen checkpoint.

Runs inside the job driver (``python -m dlplatform.train.entrypoint``). The dataset version is
streamed: ``data.to_ray`` → a Ray Data ``map_batches`` that encodes rows and keeps one side of a
deterministic, seeded hash split (train or validation) → ``get_dataset_shard`` in each worker.
Nothing loads the whole table into a worker.

Per-epoch metrics go to the metadata store while the run is going, from the TrainController
(``MetricsForwarder.after_report``). Checkpoints are written by Ray Train under
``<artifact root>/checkpoints/<run id>``; the run id is unique, so nothing resumes by accident.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import signal
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import torch

from dlplatform import data
from dlplatform.errors import InvalidInput
from dlplatform.metadata.store import MetadataStore
from dlplatform.models import builtin, encoding
from dlplatform.models.spec import ModelSignature
from dlplatform.train import _startup
from dlplatform.train.spec import TrainingJobSpec

CHECKPOINT_MODEL = "model.pt"
CHECKPOINT_STATE = "train_state.pt"
CHECKPOINT_META = "meta.json"
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
FETCH_BYTES = 4 << 20
"""About how many input bytes a worker fetches from Ray Data at a time (then cuts into
mini-batches); Ray Data's per-batch cost is paid once per chunk."""
MAX_FETCH_ROWS = 65536


@dataclass(frozen=True)
class TrainPlan:
    """Everything the workers need, derived once in the driver."""

    signature: ModelSignature
    model_config: dict[str, Any]
    features: tuple[str, ...]


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished fit left behind: the chosen checkpoint and the metrics at that point."""

    checkpoint_dir: Path | None
    metrics: dict[str, float]
    final_metrics: dict[str, float]
    result_path: str


# --- planning --------------------------------------------------------------------------------


def _task_of(spec: TrainingJobSpec, label_type: pa.DataType) -> str:
    task = spec.params.get("task")
    if isinstance(task, str):
        return task
    return "regression" if pa.types.is_floating(label_type) else "classification"


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def plan(spec: TrainingJobSpec, schema: pa.Schema, label_values: pa.Array | None,
         first_row: dict[str, Any] | None = None) -> TrainPlan:  # fmt: skip
    """Signature and model config of a built-in model on a table with ``schema``.

    Args:
        label_values: the label column (classification classes are its distinct values).
        first_row: one row, to size a list (image) column.

    Raises:
        InvalidInput: the columns do not suit the model (names the columns).
    """
    features = spec.features or tuple(n for n in schema.names if n != spec.label)
    model_name = spec.model if spec.is_builtin else "mlp"
    if spec.is_builtin:
        builtin.check_params(spec.model, spec.params)
    kind, shape = builtin.check_inputs(model_name, schema, features, spec.label)
    if kind == "image" and shape == (-1,):
        if first_row is None:
            raise InvalidInput("the dataset has no rows to size the image column from")
        shape = builtin.image_shape_from_length(len(first_row[features[0]]))
    if kind == "text":
        shape = (int(spec.params.get("max_tokens", 64)),)
    label_type = schema.field(spec.label).type
    task = _task_of(spec, label_type)
    classes: tuple[Any, ...] = ()
    if task == "classification":
        if label_values is None:
            raise InvalidInput("classification needs the label values")
        uniq = pc.unique(pc.drop_null(label_values))
        classes = tuple(sorted(_plain(v) for v in uniq.to_pylist()))
        if len(classes) < 2:
            raise InvalidInput(
                f"label {spec.label!r} has {len(classes)} distinct value(s); need 2+"
            )
        if len(classes) > 100_000:
            raise InvalidInput(f"label {spec.label!r} has {len(classes)} classes; too many")
    elif pa.types.is_string(label_type):
        raise InvalidInput(f"regression needs a numeric label; {spec.label!r} holds strings")
    signature = ModelSignature(
        kind=kind,  # type: ignore[arg-type]
        features=tuple(features),
        dtypes=tuple(str(schema.field(f).type) for f in features),
        input_shape=tuple(shape),
        task=task,  # type: ignore[arg-type]
        label=spec.label,
        classes=classes,
    )
    model_config = {
        "model": model_name,
        "input_shape": list(shape),
        "num_outputs": len(classes) if task == "classification" else 1,
        "params": dict(spec.params),
    }
    return TrainPlan(signature=signature, model_config=model_config, features=tuple(features))


def _row_hash(x: np.ndarray, seed: int) -> np.ndarray:
    """A per-row 64-bit hash of the encoded features (deterministic across processes)."""
    flat = np.ascontiguousarray(x.reshape(len(x), -1))
    words = flat.view(np.uint32) if flat.dtype.itemsize == 4 else flat.view(np.uint64)
    with np.errstate(over="ignore"):
        h = np.full(len(x), np.uint64(seed) * _HASH_MULT + np.uint64(1), dtype=np.uint64)
        for j in range(words.shape[1]):
            h = (h ^ words[:, j].astype(np.uint64)) * _HASH_MULT
        h ^= h >> np.uint64(29)
    return h


def encode_batch(batch: dict[str, np.ndarray], *, signature: ModelSignature,
                 params: dict[str, Any], side: str, val_fraction: float,
                 seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Ray Data ``map_batches`` fn: rows → ``{"x", "y"}``, keeping one side of the split."""
    x = encoding.encode_columns(batch, signature, params)
    y = encoding.encode_labels(batch[signature.label], signature)
    if val_fraction > 0:
        threshold = np.uint64(int(val_fraction * 2**32))
        is_val = (_row_hash(x, seed) >> np.uint64(32)) < threshold
        keep = is_val if side == "val" else ~is_val
        x, y = x[keep], y[keep]
    return {"x": x, "y": y}


@dataclass(frozen=True)
class TrainInputs:
    """What the workers read: Ray Datasets (``datasets``, by side), or for a small version and
    a built-in model the encoded rows already in the object store (``arrays``: by side, one
    object per rank holding ``{"x", "y"}``)."""

    datasets: dict[str, Any]
    arrays: dict[str, list[Any]]

    @property
    def sides(self) -> set[str]:
        return set(self.datasets) | set(self.arrays)


IN_MEMORY_BYTES = 64 << 20
"""A version up to about this size (8 bytes per value) trained by a built-in model is read and
encoded once in the driver and handed to the workers through the object store: no Ray Data
tasks (a dozen processes started for a few thousand rows), no split coordinator."""


def _in_memory_inputs(
    backend: Any, commit: Any, spec: TrainingJobSpec, train_plan: TrainPlan
) -> TrainInputs:
    columns = [*train_plan.features, spec.label]
    table = data.to_arrow(backend, commit, columns=columns)
    batch = {name: _column_numpy(table.column(name)) for name in columns}
    sides = ["train", "val"] if spec.validation_fraction > 0 else ["train"]
    arrays: dict[str, list[Any]] = {}
    for side in sides:
        rows = encode_batch(batch, signature=train_plan.signature, params=dict(spec.params),
                            side=side, val_fraction=spec.validation_fraction, seed=spec.seed)  # fmt: skip
        shares = rank_rows(rows, spec.workers, equal=side == "train")
        arrays[side] = [ray.put(share) for share in shares]
    return TrainInputs(datasets={}, arrays=arrays)


def rank_rows(
    rows: dict[str, np.ndarray], world: int, *, equal: bool
) -> list[dict[str, np.ndarray]]:
    """``rows`` dealt to ``world`` ranks (rank r takes rows r, r+world, ...). With ``equal``
    every rank gets as many as the others, for DDP steps in lockstep: the last rows of an uneven
    split are dropped, as Ray Data's equal split does."""
    n = len(next(iter(rows.values())))
    per_rank = n // world if equal else None
    return [{k: v[r::world][:per_rank] for k, v in rows.items()} for r in range(world)]


def _column_numpy(column: pa.ChunkedArray) -> np.ndarray:
    """A column as Ray Data's numpy batches hold it (lists as an object array of arrays)."""
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = column.to_pylist()
        out = np.empty(len(values), dtype=object)
        out[:] = [np.asarray(v) for v in values]
        return out
    return column.to_numpy()


def is_small(spec: TrainingJobSpec, rows: int, features: int) -> bool:
    """Whether a version of ``rows`` x ``features`` trained by ``spec`` is read and encoded once
    in the driver and dealt to the ranks in memory (``IN_MEMORY_BYTES``)."""
    estimated = rows * (features + 1) * 8
    return spec.is_builtin and estimated <= IN_MEMORY_BYTES and _fits_object_store(estimated)


def build_inputs(
    backend: Any, commit: Any, spec: TrainingJobSpec, train_plan: TrainPlan
) -> TrainInputs:
    """The run's training (and validation) inputs: in memory for a small version and a built-in
    model (``IN_MEMORY_BYTES``), otherwise Ray Datasets (``build_datasets``)."""
    if is_small(spec, commit.row_count, len(train_plan.features)):
        return _in_memory_inputs(backend, commit, spec, train_plan)
    return TrainInputs(datasets=build_datasets(backend, commit, spec, train_plan), arrays={})


def build_datasets(
    backend: Any, commit: Any, spec: TrainingJobSpec, train_plan: TrainPlan
) -> dict[str, Any]:
    """The streamed train/val Ray Datasets of the run (lazy; executed by the workers' shards)."""
    columns = [*train_plan.features, spec.label]
    out = {}
    sides = ["train", "val"] if spec.validation_fraction > 0 else ["train"]
    for side in sides:
        ds = data.to_ray(backend, commit, columns=columns, num_cpus=DATA_TASK_CPUS)
        out[side] = ds.map_batches(
            partial(
                encode_batch,
                signature=train_plan.signature,
                params=dict(spec.params),
                side=side,
                val_fraction=spec.validation_fraction,
                seed=spec.seed,
            ),
            batch_format="numpy",
            batch_size=fetch_rows(train_plan.signature, spec.batch_size),  # blocks = worker chunks
            num_cpus=DATA_TASK_CPUS,
        )
    if _fits_object_store(commit.row_count * (len(columns) + 1) * 8):
        out = {side: ds.materialize() for side, ds in out.items()}
    return out


DATA_TASK_CPUS = 0.25
"""CPU share of each read/encode task. The workers (and Tune's trials) hold their CPUs in
placement groups; Ray Data's tasks run beside them on what is left. Asking a whole CPU per task
can leave a full cluster unable to run any (Ray Data then waits forever, "Cluster resources are
not enough to run any task"); a quarter fits in far less slack."""

MATERIALIZE_FRACTION = 0.2
"""Encoded data up to this share of the cluster's object store is computed once and kept there."""


def _fits_object_store(estimated_bytes: int) -> bool:
    """Whether to read and encode the version once instead of once per epoch.

    Streaming re-runs the read → encode pipeline every epoch, on the same CPUs the workers train
    on: for a small model that costs about half the epoch. A version that fits comfortably in
    the object store (shared memory, spilled to disk under pressure) is materialized there once;
    the workers still stream their shards from it, nothing is loaded whole into a worker.
    """
    capacity = float(ray.cluster_resources().get("object_store_memory", 0.0))
    return 0 < estimated_bytes <= MATERIALIZE_FRACTION * capacity


# --- the worker loop -------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _save_checkpoint(directory: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     epoch: int, restarts: int) -> None:  # fmt: skip
    torch.save(model.state_dict(), os.path.join(directory, CHECKPOINT_MODEL))
    torch.save({"optimizer": optimizer.state_dict()}, os.path.join(directory, CHECKPOINT_STATE))
    Path(directory, CHECKPOINT_META).write_text(json.dumps({"epoch": epoch, "restarts": restarts}))


def _inject_fault(marker: str) -> None:
    """Testing aid: SIGKILL this worker process once per run (the marker file remembers)."""
    if os.path.exists(marker):
        return
    # Let the controller take in the last report (and its checkpoint) before the process dies.
    time.sleep(2.0)
    Path(marker).write_text("killed once\n")
    os.kill(os.getpid(), signal.SIGKILL)


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, fused (one kernel for all parameters) where PyTorch has it for the parameters'
    device: for the small models this platform trains on CPUs, the per-parameter Python of the
    default implementation is about a fifth of a training step."""
    params = list(model.parameters())
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def warm_up() -> None:
    """Build a small model and take one optimizer step, for a process that trains later (a
    warm pool member): PyTorch imports much of itself on first use, the first optimizer alone
    about 1 s here (``torch._dynamo``)."""
    model = builtin.build_model({"model": "mlp", "input_shape": [4], "num_outputs": 2,
                                "params": {}})  # fmt: skip
    optimizer = make_optimizer(model, 1e-3, 0.0)
    torch.nn.CrossEntropyLoss()(
        model(torch.zeros(2, 4)), torch.zeros(2, dtype=torch.int64)
    ).backward()
    optimizer.step()


def fetch_rows(signature: ModelSignature, batch_size: int) -> int:
    """Rows per chunk fetched from Ray Data: about ``FETCH_BYTES``, a whole number of batches."""
    row_bytes = 4 * max(1, int(np.prod(signature.input_shape)))
    rows = min(MAX_FETCH_ROWS, max(1, FETCH_BYTES // row_bytes))
    return batch_size * max(1, rows // batch_size)


def iter_chunks(shard: Any, rows: int, dtypes: dict[str, torch.dtype],
                device: torch.device) -> Iterator[dict[str, torch.Tensor]]:  # fmt: skip
    """A shard's rows as tensors, ``rows`` at a time.

    Ray Data hands out NumPy views of the object store's blocks; ``torch.as_tensor`` wraps them
    without a copy on the CPU (``iter_torch_batches`` copies and collates each batch on its
    threads, which cost about a fifth of a small model's epoch in a measurement here). The
    views are read-only: the loop only gathers from them, which copies.
    """
    for batch in shard.iter_batches(batch_size=rows, batch_format="numpy", prefetch_batches=2):
        yield _tensors(batch, dtypes, device)


def _tensors(batch: dict[str, np.ndarray], dtypes: dict[str, torch.dtype],
             device: torch.device) -> dict[str, torch.Tensor]:  # fmt: skip
    """NumPy columns (read-only views of the object store) as tensors, without a copy where the
    dtype and device already match."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return {k: torch.as_tensor(v).to(device=device, dtype=dtypes[k]) for k, v in batch.items()}


STEP_REPORT_S = 1.0
"""Step-level progress goes to the metadata store at most this often (and at the first step)."""
STEP_KEYS = ("step/loss", "step/samples_per_s", "step/epoch")


class ProgressReporter:
    """Rank 0's report of a run's progress while an epoch runs, sent to the metadata actor
    without waiting for its reply (the loop never blocks on it):

    - the startup marks (``_startup``), completed with this worker's own, once the first step is
      done; a restarted worker group sends none (the run's startup was recorded the first time);
    - step metrics at the first step and then at most once per ``STEP_REPORT_S``: ``step/loss``
      (mean loss of the steps since the last report), ``step/samples_per_s`` (all ranks) and
      ``step/epoch``. Their step is the count of optimizer steps of this worker group's attempt.
      Per-epoch metrics still come from ``ray.train.report`` when each epoch ends.
    """

    def __init__(self, store: Any, run_id: str, marks: dict[str, float]) -> None:
        self.store = store
        self.run_id = run_id
        self.marks = marks
        self.steps = 0
        self._since: float | None = None
        self._loss = 0.0
        self._samples = 0
        self._rank_samples = 0

    def worker_ready(self, worker_started: float, loop_started: float) -> None:
        """This worker's marks up to a built model (when it took up the run, the loop's start)."""
        if not self.marks:
            return
        self.marks["worker_started"] = worker_started
        self.marks["loop_started"] = loop_started
        self.marks["model_ready"] = _startup.now()

    def mark(self, name: str) -> None:
        if self.marks and name not in self.marks:
            self.marks[name] = _startup.now()

    def step(self, epoch: int, loss_sum: float, samples: int, world: int) -> None:
        """After an optimizer step of ``samples`` rows on this rank (``world`` ranks) whose
        summed loss was ``loss_sum``."""
        self.steps += 1
        self._loss += loss_sum
        self._samples += samples * world
        self._rank_samples += samples
        now = time.monotonic()
        if self._since is None:  # the first step: startup is over
            self._since = now - 1e-3
            if self.marks:
                self.mark("first_step")
                self.store.call_async(
                    MetadataStore.update_run, self.run_id, startup_json=_startup.dump(self.marks)
                )
        elif now - self._since < STEP_REPORT_S:
            return
        values = [self._loss / max(self._rank_samples, 1), self._samples / (now - self._since),
                  float(epoch)]  # fmt: skip
        stamp = time.time()
        self.store.call_async(
            MetadataStore.log_metric_batch, [self.run_id] * len(STEP_KEYS), list(STEP_KEYS), values,
            [self.steps] * len(STEP_KEYS), [stamp] * len(STEP_KEYS),
        )  # fmt: skip
        self._since, self._loss, self._samples, self._rank_samples = now, 0.0, 0, 0


def iter_array_chunks(rows: dict[str, np.ndarray], size: int, dtypes: dict[str, torch.dtype],
                      device: torch.device) -> Iterator[dict[str, torch.Tensor]]:  # fmt: skip
    """A rank's in-memory rows (``TrainInputs.arrays``) as tensors, ``size`` rows at a time."""
    for start in range(0, len(rows["y"]), size):
        yield _tensors({k: v[start : start + size] for k, v in rows.items()}, dtypes, device)


class LoopSession(Protocol):
    """What the built-in loop needs from whatever runs it: Ray Train (``RayTrainSession``) or a
    warm pool worker (``pool.PoolSession``). The loop itself is the same code on both paths,
    which is what makes their metrics identical for the same seed."""

    rank: int
    world: int
    started_at: float
    """When this worker took up the run (its process start under Ray Train)."""

    def resume_dir(self) -> AbstractContextManager[str | None]:
        """The checkpoint to resume from, as a local directory, or None."""
        ...

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on this worker's device, wrapped in DDP when there are several ranks."""
        ...

    def shard(self, side: str) -> Any:
        """This rank's Ray Data shard of ``side`` (streamed versions only)."""
        ...

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        """An epoch's metrics, with rank 0's checkpoint when one was written."""
        ...


class RayTrainSession:
    """The loop run by a Ray Train worker (``TorchTrainer``)."""

    def __init__(self) -> None:
        import ray.train  # Ray Train: on its workers; the warm pool's members run without it

        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.started_at = _startup.process_start_time() or _startup.now()

    def resume_dir(self) -> AbstractContextManager[str | None]:
        import ray.train  # see __init__

        checkpoint = ray.train.get_checkpoint()
        return nullcontext(None) if checkpoint is None else checkpoint.as_directory()

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch  # see __init__

        return ray.train.torch.prepare_model(model)  # type: ignore[no-any-return]

    def shard(self, side: str) -> Any:
        import ray.train  # see __init__

        return ray.train.get_dataset_shard(side)

    def report(self, metrics: dict[str, float], checkpoint_dir: str | None) -> None:
        import ray.train  # see __init__

        checkpoint = None if checkpoint_dir is None else (
            ray.train.Checkpoint.from_directory(checkpoint_dir)
        )  # fmt: skip
        ray.train.report(metrics, checkpoint=checkpoint)


def builtin_train_loop(config: dict[str, Any]) -> dict[str, Any]:
    """The per-worker loop of the built-in models under Ray Train (DDP over gloo on CPU, NCCL
    on GPU)."""
    loop_started = _startup.now()
    return run_loop(config, RayTrainSession(), loop_started)


def _local(value: Any) -> Any:
    """A rank's rows: fetched from the object store, or already here (a test without Ray)."""
    if isinstance(value, dict):
        return value
    return ray.get(value)


def run_loop(config: dict[str, Any], session: LoopSession, loop_started: float) -> dict[str, Any]:
    """Train the built-in model of ``config`` on this rank to the last epoch, resuming from the
    session's checkpoint; ``loop_started``: when this worker's setup (process group) was done."""
    import torch.distributed as dist  # process groups: on the ranks that train only

    rank, world = session.rank, session.world
    progress: ProgressReporter | None = config.get("progress") if rank == 0 else None
    signature = ModelSignature.model_validate(config["signature"])
    seed_everything(int(config["seed"]))
    torch.set_num_threads(max(1, int(config.get("torch_threads", 1))))
    model = builtin.build_model(config["model_config"])
    start_epoch, restarts, optimizer_state = 0, 0, None
    with session.resume_dir() as d:
        if d is not None:
            model.load_state_dict(
                torch.load(os.path.join(d, CHECKPOINT_MODEL), map_location="cpu", weights_only=True)
            )
            state = torch.load(os.path.join(d, CHECKPOINT_STATE), map_location="cpu",
                               weights_only=True)  # fmt: skip
            optimizer_state = state["optimizer"]
            meta = json.loads(Path(d, CHECKPOINT_META).read_text())
            start_epoch, restarts = int(meta["epoch"]) + 1, int(meta["restarts"]) + 1
    if not restarts and config.get("fault_marker") and os.path.exists(str(config["fault_marker"])):
        restarts = 1  # restarted after an injected fault that came before any checkpoint
    if progress is not None and restarts:
        progress.marks = {}  # a restarted group: the run's startup was recorded the first time
    # Moves the model to this worker's device (its GPU when it has one); DDP only when world > 1.
    net = session.prepare_model(model)
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, float(config["lr"]),
                               float(config["model_config"]["params"].get("weight_decay", 0.0)))  # fmt: skip
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if progress is not None:
        progress.worker_ready(session.started_at, loop_started)
    loss_fn: Callable[..., torch.Tensor] = (
        torch.nn.CrossEntropyLoss(reduction="sum")
        if signature.task == "classification"
        else torch.nn.MSELoss(reduction="sum")
    )
    x_dtype = encoding.input_dtype(signature)
    y_dtype = torch.int64 if signature.task == "classification" else torch.float32
    dtypes = {"x": x_dtype, "y": y_dtype}
    arrays = config.get("arrays") or {}
    if arrays:  # small version: this rank's rows, in the object store (zero-copy views)
        mine = {side: _local(refs[rank]) for side, refs in arrays.items()}

        def chunks_of(side: str) -> Iterator[dict[str, torch.Tensor]]:
            return iter_array_chunks(mine[side], fetch, dtypes, device)
    else:
        shards = {side: session.shard(side)
                  for side in (["train", "val"] if config["has_val"] else ["train"])}  # fmt: skip

        def chunks_of(side: str) -> Iterator[dict[str, torch.Tensor]]:
            return iter_chunks(shards[side], fetch, dtypes, device)

    epochs, every = int(config["epochs"]), int(config["checkpoint_every"])
    kill_at = config.get("kill_at_epoch")
    kill_rank = 1 if world > 1 else 0
    batch_size = int(config["batch_size"])
    fetch = fetch_rows(signature, batch_size)

    def target(y: torch.Tensor) -> torch.Tensor:
        return y if signature.task == "classification" else y.reshape(-1, 1)

    for epoch in range(start_epoch, epochs):
        if kill_at is not None and epoch == kill_at and rank == kill_rank:
            _inject_fault(str(config["fault_marker"]))
        net.train()
        t0 = time.perf_counter()
        loss_sum, seen = 0.0, 0
        # Fetch big chunks from Ray Data (its per-batch overhead is then paid once per chunk) and
        # cut them into mini-batches in a seeded order: every rank cuts the same number.
        generator = torch.Generator().manual_seed(int(config["seed"]) * 1000 + epoch)
        chunks = chunks_of("train")
        data_wait = 0.0
        while True:
            t_wait = time.perf_counter()
            chunk = next(chunks, None)
            data_wait += time.perf_counter() - t_wait
            if chunk is None:
                break
            if progress is not None:
                progress.mark("first_batch")
            order = torch.randperm(len(chunk["y"]), generator=generator).to(device)
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                x, y = chunk["x"][idx], chunk["y"][idx]
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), target(y))
                (loss / len(y)).backward()
                optimizer.step()
                batch_loss = float(loss.detach())
                loss_sum += batch_loss
                seen += len(y)
                if progress is not None:
                    progress.step(epoch, batch_loss, len(y), world)
        train_time = time.perf_counter() - t0
        val_loss_sum, val_correct, val_seen = 0.0, 0.0, 0
        if config["has_val"]:
            net.eval()
            with torch.no_grad():
                for batch in chunks_of("val"):
                    out = net(batch["x"])
                    val_loss_sum += float(loss_fn(out, target(batch["y"])))
                    if signature.task == "classification":
                        val_correct += float((out.argmax(dim=1) == batch["y"]).sum())
                    val_seen += len(batch["y"])
        totals = torch.tensor(
            [loss_sum, seen, val_loss_sum, val_correct, val_seen], dtype=torch.float64
        )
        times = torch.tensor([train_time], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(totals)
            dist.all_reduce(times, op=dist.ReduceOp.MAX)
        loss_sum, n, v_loss, v_correct, v_n = totals.tolist()
        metrics: dict[str, float] = {
            "epoch": float(epoch),
            "loss": loss_sum / max(n, 1),
            "samples": n,
            "epoch_time_s": float(times[0]),
            "data_wait_s": data_wait,
            "throughput_samples_per_s": n / max(float(times[0]), 1e-9),
            "restarts": float(restarts),
        }
        if v_n:
            metrics["val_loss"] = v_loss / v_n
            if signature.task == "classification":
                metrics["val_accuracy"] = v_correct / v_n
            else:
                metrics["val_rmse"] = float(np.sqrt(v_loss / v_n))
        metrics["score"] = metrics.get("val_loss", metrics["loss"])
        if (epoch + 1) % every == 0 or epoch == epochs - 1:
            with tempfile.TemporaryDirectory() as tmp:
                if rank == 0:
                    _save_checkpoint(tmp, model, optimizer, epoch, restarts)
                session.report(metrics, tmp if rank == 0 else None)
        else:
            session.report(metrics, None)
    return {"restarts": restarts}


# --- the fit ---------------------------------------------------------------------------------


def _metrics_forwarder(store: Any, run_id: str) -> Any:
    import ray.train  # Ray Train: the warm pool's members (which import this module) run without

    class MetricsForwarder(ray.train.UserCallback):  # type: ignore[misc]
        """Runs in the TrainController: sends each report of rank 0 to the metadata actor."""

        def __init__(self) -> None:
            self.reports = 0

        def after_report(
            self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
        ) -> None:
            if not metrics:
                return
            log_epoch_metrics(store, run_id, metrics[0], self.reports)
            self.reports += 1

    return MetricsForwarder()


def log_epoch_metrics(store: Any, run_id: str, metrics: dict[str, Any], report: int) -> None:
    """Send rank 0's report of an epoch to the metadata actor without waiting: every numeric
    value at step ``epoch`` (the ``report``-th report when it has no epoch)."""
    step = int(metrics.get("epoch", report))
    items = [(k, float(v)) for k, v in metrics.items()
             if isinstance(v, int | float) and not isinstance(v, bool) and k != "epoch"]  # fmt: skip
    items.append(("epoch", float(step)))
    n = len(items)
    store.call_async(
        MetadataStore.log_metric_batch, [run_id] * n, [k for k, _ in items], [v for _, v in items],
        [step] * n, [time.time()] * n,
    )  # fmt: skip


def checkpoint_storage(artifacts: Any) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train checkpoints under the artifact root."""
    root = artifacts.root_uri
    if "://" not in root or root.startswith("file://"):
        local = root[len("file://") :] if root.startswith("file://") else root
        return os.path.join(os.path.abspath(os.path.expanduser(local)), "checkpoints"), None
    parsed = urlparse(root)
    return f"{parsed.netloc}{parsed.path.rstrip('/')}/checkpoints", artifacts.filesystem


def import_user_function(ref: str) -> Callable[..., Any]:
    """``module:function`` → the function (user code, imported inside the job's runtime_env).

    Raises:
        InvalidInput: the module or function cannot be found.
    """
    module_name, _, fn_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInput(f"cannot import user code module {module_name!r}: {exc}") from exc
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise InvalidInput(f"user code {ref!r}: {module_name} has no function {fn_name!r}")
    return fn  # type: ignore[no-any-return]


def loop_config(run_id: str, spec: TrainingJobSpec, train_plan: TrainPlan, datasets: TrainInputs,
                torch_threads: int) -> dict[str, Any]:  # fmt: skip
    """The config every rank's loop gets (Ray Train's ``train_loop_config``, a pool task's)."""
    return {
        "signature": train_plan.signature.model_dump(mode="json"),
        "model_config": train_plan.model_config,
        "params": dict(spec.params),
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "lr": spec.lr,
        "seed": spec.seed,
        "checkpoint_every": spec.checkpoint_every,
        "has_val": "val" in datasets.sides,
        "arrays": datasets.arrays,
        "kill_at_epoch": spec.fault_injection_kill_at_epoch,
        "fault_marker": os.path.join(tempfile.gettempdir(), f"dlp-fault-injected-{run_id}"),
        "torch_threads": torch_threads,
    }


def fit(
    *,
    run_id: str,
    spec: TrainingJobSpec,
    train_plan: TrainPlan,
    datasets: TrainInputs,
    store: Any,
    artifacts: Any,
    use_gpu: bool,
    torch_threads: int = 1,
    extra_callbacks: tuple[Any, ...] = (),
    startup: dict[str, float] | None = None,
) -> TrainOutcome:
    """Run the TorchTrainer to the end and pick the checkpoint with the best score.

    ``extra_callbacks``: more ``ray.train.UserCallback``s (Tune's trial driver adds its reporter).
    ``startup``: the run's startup marks so far; rank 0 of the built-in loop adds its own and
    stores them, and reports step-level progress (``ProgressReporter``).

    Raises:
        ray.train.TrainingFailedError: training failed (after ``max_failures`` restarts).
    """
    import ray.train  # with the next: the warm pool's members import this module, never fit
    from ray.train.torch import TorchTrainer  # the warm pool's members never fit

    loop: Callable[..., Any] = (
        builtin_train_loop if spec.is_builtin else import_user_function(spec.model)
    )
    resources = dict(spec.resources_per_worker or {"CPU": 1.0})
    if use_gpu:
        resources.setdefault("GPU", 1.0)
    storage_path, storage_fs = checkpoint_storage(artifacts)
    config = loop_config(run_id, spec, train_plan, datasets, torch_threads)
    marks = {**(startup or {}), "fit_started": _startup.now()}
    if spec.is_builtin:  # a user's function gets plain values only; its driver's marks stay
        config["progress"] = ProgressReporter(store, run_id, marks)
    elif startup:
        store.call_async(MetadataStore.update_run, run_id, startup_json=_startup.dump(marks))
    trainer = TorchTrainer(
        loop,
        train_loop_config=config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=spec.workers, use_gpu=use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=run_id,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=ray.train.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="min"
            ),
            callbacks=[_metrics_forwarder(store, run_id), *extra_callbacks],
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
        datasets=datasets.datasets or None,
        # One worker's shard is the whole dataset: iterating it directly skips the split
        # coordinator, which restarts the execution (and costs a round trip per block) each epoch.
        dataset_config=ray.train.DataConfig(datasets_to_split=[] if spec.workers == 1 else "all"),
    )
    result = trainer.fit()
    best = sorted(result.best_checkpoints or [], key=lambda cm: float(cm[1].get("score", np.inf)))
    final = {k: float(v) for k, v in (result.metrics or {}).items() if isinstance(v, int | float)}
    if not best:
        return TrainOutcome(None, {}, final, str(result.path))
    chosen, chosen_metrics = best[0]
    local = Path(tempfile.mkdtemp(prefix=f"dlp-{run_id}-"))
    chosen.to_directory(str(local))
    metrics = {k: float(v) for k, v in chosen_metrics.items() if isinstance(v, int | float)}
    return TrainOutcome(local, metrics, final, str(result.path))


def failure_message(exc: BaseException) -> str:
    """A short, useful message for a failed fit: the worker's own exception when there is one."""
    failures = getattr(exc, "worker_failures", None)
    if failures:
        rank, err = sorted(failures.items())[0]
        cause = getattr(err, "cause", None) or err
        text = f"{type(cause).__name__}: {cause}".strip()
        last = [line for line in str(cause).splitlines() if line.strip()]
        if last and len(text) > 500:
            text = last[-1]
        return f"training failed on worker rank {rank}: {text}"[:2000]
    return f"{type(exc).__name__}: {exc}"[:2000]
