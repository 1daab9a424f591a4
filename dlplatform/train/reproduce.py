"""Exact re-runs: submit a finished training run again, the same way, and compare the two.

``reproduce_run`` queues the run's pinned spec again (the same dataset commit, seed, hyperparameters,
workers and model) as a new job tagged ``reproduces:<run>``, with the lineage edge
``run:<original> -reproduced_by-> run:<new>``. The code must be the same too: a run records its
code version (``_lifecycle.code_version``: the package version and a hash of the training code).
For a built-in model the gateway hashes the installed code and refuses at once when it differs;
user code is never imported outside a job, so its job checks and fails with the reason before
training. ``allow_code_change`` runs it anyway and is recorded on the new run (tag
``allow-code-change``) and in the audit log.

``compare_reproduction`` sets the two runs' per-epoch metrics side by side once the re-run has ended: on CPU
they must be identical, on GPU equal within ``GPU_RTOL`` (cuDNN and atomics are not bitwise
deterministic); keys that measure time or process events (``*_s``, ``*time*``, throughput,
``restarts``) are not compared. The first difference (epoch, key, both values) is reported.
"""

from __future__ import annotations

import json
import math

from dlplatform.access import Principal, audit
from dlplatform.context import Backend
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import LineageEdge, RunStatus
from dlplatform.train import service
from dlplatform.train._lifecycle import (
    ALLOW_CODE_CHANGE_TAG,
    REPRODUCES_TAG,
    check_code,
    code_version,
)
from dlplatform.train.spec import (
    Difference,
    Reproduction,
    TrainingJob,
    TrainingJobSpec,
    epoch_table,
)

RELATION = "reproduced_by"
GPU_RTOL = 1e-4
"""Relative tolerance of a GPU re-run's metrics (bitwise equality on CPU)."""


def compared(key: str) -> bool:
    """Whether a metric key is a result (compared) rather than a measure of time or of process
    events (left out)."""
    return not (key == "restarts" or key.endswith("_s") or "time" in key or "throughput" in key)


def reproduce_run(
    backend: Backend, principal: Principal, run_id: str, *, allow_code_change: bool = False
) -> TrainingJob:
    """Queue an exact re-run of training run ``run_id``.

    Raises:
        NotFound: no such training run, or its dataset commit is gone (garbage-collected).
        Conflict: the run has not ended, or (built-in models) the installed code differs.
        PermissionDenied: the caller may not view the run or submit training on its dataset.
    """
    shown = service.get_job(backend, principal, run_id)  # 404 unless a training run; 403
    original = backend.store.get_run(run_id)
    if not original.status.is_final:
        raise Conflict(f"run {run_id} is {original.status.value}: reproduce it once it has ended")
    spec = TrainingJobSpec.model_validate_json(original.spec_json)
    if shown.spec != spec:  # values only the owner (and admins) may see, e.g. env secrets
        raise PermissionDenied(
            f"run {run_id}'s runtime_env has values only its owner sees: ask {original.owner} "
            "(or an admin) to reproduce it"
        )
    if original.dataset_commit is None:
        raise InvalidInput(
            f"run {run_id} never pinned a dataset commit; there is nothing to re-run"
        )
    pinned = spec.model_copy(update={"dataset": f"{spec.dataset_name}@{original.dataset_commit}"})
    if spec.is_builtin:
        check_code(original, code_version(spec), allow_code_change)
    tags = (*pinned.tags, f"{REPRODUCES_TAG}{run_id}")
    if allow_code_change:
        tags = (*tags, ALLOW_CODE_CHANGE_TAG)
    try:
        job = service.submit(backend, principal, pinned.model_copy(update={"tags": tags}))
    except NotFound as exc:  # the commit (or its dataset) was deleted or garbage-collected
        raise NotFound(
            f"run {run_id} trained on {pinned.dataset}, which can no longer be read "
            f"({exc.message}): it cannot be reproduced"
        ) from None
    backend.store.add_edges(
        [LineageEdge(src=f"run:{run_id}", dst=f"run:{job.id}", relation=RELATION)]
    )
    audit(backend.store, principal, "train.reproduce", f"run:{job.id}",
          f"reproduces run:{run_id}" + (" allow-code-change" if allow_code_change else ""))  # fmt: skip
    return job


def reproduced_by(backend: Backend, run_id: str) -> list[str]:
    """The ids of the re-runs of ``run_id``, oldest first."""
    edges = backend.store.edges_of([f"run:{run_id}"])
    return [e.dst.partition(":")[2] for e in edges
            if e.relation == RELATION and e.src == f"run:{run_id}"]  # fmt: skip


def compare_reproduction(backend: Backend, principal: Principal, run_id: str) -> Reproduction:
    """How re-run ``run_id`` compares with the run it reproduces.

    Raises:
        NotFound: no such run, or it is not a re-run.
    """
    again = service.get_job(backend, principal, run_id).run
    origins = [e.src.partition(":")[2] for e in backend.store.edges_of([f"run:{run_id}"])
               if e.relation == RELATION and e.dst == f"run:{run_id}"]  # fmt: skip
    if not origins:  # the edge, not the tag (a tag anyone may set at submit)
        raise NotFound(f"run {run_id} is not a re-run of another run")
    original_id = origins[0]
    original = service.get_job(backend, principal, original_id).run  # may the caller see it?
    spec = TrainingJobSpec.model_validate_json(again.spec_json)
    gpu = bool(spec.use_gpu) or bool(json.loads(again.result_json or "{}").get("use_gpu"))
    tolerance = GPU_RTOL if gpu else 0.0
    code_changed = (
        again.code_version is not None
        and original.code_version is not None
        and again.code_version != original.code_version
    )
    base = {"original": original_id, "reproduction": run_id, "tolerance": tolerance,
            "code_changed": code_changed}  # fmt: skip
    if not again.status.is_final:
        return Reproduction(**base, status="pending", epochs=0, keys=())
    if again.status is not RunStatus.SUCCEEDED:
        return Reproduction(**base, status="failed", epochs=0, keys=(),
                            reason=again.error or again.status.value)  # fmt: skip
    rows_a = epoch_table(backend.store.get_metrics(original_id))
    rows_b = epoch_table(backend.store.get_metrics(run_id))
    keys = tuple(
        sorted({k for row in rows_a + rows_b for k in row if k != "epoch" and compared(k)})
    )
    first, worst = None, 0.0
    for epoch in range(max(len(rows_a), len(rows_b))):
        a = rows_a[epoch] if epoch < len(rows_a) else {}
        b = rows_b[epoch] if epoch < len(rows_b) else {}
        for key in keys:
            x, y = a.get(key), b.get(key)
            gap = _relative(x, y)
            worst = max(worst, gap)
            if first is None and gap > tolerance:
                first = Difference(epoch=epoch, key=key, original=x, reproduced=y)
    status = "different" if first is not None else (
        "identical" if worst == 0.0 else "within_tolerance"
    )  # fmt: skip
    return Reproduction(**base, status=status, epochs=max(len(rows_a), len(rows_b)), keys=keys,
                        first_difference=first, max_relative_difference=worst)  # fmt: skip


def _relative(x: float | None, y: float | None) -> float:
    """0 for equal values (NaN equals NaN here), inf where one is missing."""
    if x is None or y is None:
        return 0.0 if x is y else math.inf
    if x == y or (math.isnan(x) and math.isnan(y)):
        return 0.0
    if math.isnan(x) or math.isnan(y) or math.isinf(x) or math.isinf(y):
        return math.inf
    return abs(x - y) / max(abs(x), abs(y), 1e-12)
