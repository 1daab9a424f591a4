"""Batch inference: a model version over a whole dataset version, committed as a new dataset commit.

``batch_predict`` reads the input commit as a Ray dataset (``dlplatform.data.to_ray``), runs
``map_batches`` with an actor pool (each actor loads the model once, hash verified) and pushes the
input columns plus a ``prediction`` column to the output dataset (created when missing). The new
commit gets lineage edges from the input commit and from the model version.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from dlplatform import data
from dlplatform.access import Permission, Principal, authorize
from dlplatform.context import Backend
from dlplatform.errors import BackendUnavailable, InvalidInput, NotFound
from dlplatform.models.registry import resolve_version
from dlplatform.models.spec import ModelSignature
from dlplatform.serve._model import load_served_model
from dlplatform.serve.spec import BatchPredictResult, split_model_ref

PREDICTION_COLUMN = "prediction"
BATCH_ROWS = 1024


class _Predictor:
    """A Ray Data actor: one loaded model version, applied to Arrow batches."""

    def __init__(self, settings: dict[str, Any], model: str, version: int) -> None:
        from dlplatform.serve.deployment import _backend  # ray: the routes import this module

        backend = _backend(settings)
        self._served = load_served_model(backend, model, version, max_rows=2**31)

    def __call__(self, batch: pa.Table) -> pa.Table:
        columns: dict[str, Any] = {}
        for f in self._served.features:
            col = batch.column(f)
            numeric = pa.types.is_integer(col.type) or pa.types.is_floating(col.type)
            columns[f] = col.to_numpy() if numeric and col.null_count == 0 else col.to_pylist()
        predictions = self._served.predict_columns(columns) if batch.num_rows else []
        return batch.append_column(PREDICTION_COLUMN, pa.array(predictions))


def batch_predict(
    backend: Backend,
    principal: Principal,
    model_ref: str,
    dataset_ref: str,
    output: str,
    *,
    workers: int = 1,
    num_cpus: float = 0.5,
    message: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> BatchPredictResult:
    """Predict every row of ``DATASET[@COMMIT]`` with ``NAME[@VERSION|@ALIAS]``; commit to ``output``.

    Raises:
        NotFound: no such model version, dataset or commit.
        InvalidInput: the dataset lacks a feature column, or ``output`` is the input dataset.
        PermissionDenied: the caller may not read the input, or write the output.
    """
    # Ray and Ray Data (dlplatform.data reads with it) load only when a batch job runs.
    import ray
    import ray.data

    try:
        name, selector = split_model_ref(model_ref)
    except ValueError as exc:
        raise InvalidInput(f"model reference {model_ref!r}: {exc}") from None
    authorize(backend.store, principal, Permission.PREDICT, f"model:{name}")
    version = resolve_version(backend, name, selector)
    commit = data.resolve(backend, principal, dataset_ref)
    if output == commit.dataset:
        raise InvalidInput("the output dataset must differ from the input dataset")
    signature = ModelSignature.model_validate_json(version.signature_json)
    have = set(data.arrow_schema(commit).names)
    missing = [f for f in signature.features if f not in have]
    if missing:
        raise InvalidInput(
            f"dataset {commit.dataset}@{commit.id} lacks the model's feature column(s) "
            f"{', '.join(missing)}"
        )
    if PREDICTION_COLUMN in have:
        raise InvalidInput(f"the input already has a {PREDICTION_COLUMN!r} column")
    try:
        data.get_dataset(backend, principal, output)
    except NotFound:
        data.create_dataset(
            backend,
            principal,
            output,
            description=f"predictions of {name}@{version.version} on {commit.dataset}",
        )
    if not ray.is_initialized():
        raise BackendUnavailable("Ray is not running here; start the platform with `dlp up`")
    start = time.monotonic()
    settings = backend.settings.model_dump(mode="json", exclude={"token"})
    predicted = (
        data.to_ray(backend, commit)
        .map_batches(
            _Predictor,
            fn_constructor_args=(settings, name, version.version),
            batch_format="pyarrow",
            batch_size=BATCH_ROWS,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=max(1, workers)),
            num_cpus=num_cpus,
        )
        .materialize()
    )  # run once: the push reads the schema and then the rows
    if commit.row_count == 0:
        raise InvalidInput(f"dataset {commit.dataset}@{commit.id} has no rows to predict")
    out = data.push(
        backend,
        principal,
        output,
        predicted,
        mode="overwrite",
        message=message
        or f"predictions of {name}@{version.version} on {commit.dataset}@{commit.id}",
        progress=progress,
        _lineage=[
            (f"commit:{commit.id}", "predicted_from"),
            (f"model_version:{name}@{version.version}", "predicted_by"),
        ],
    )
    return BatchPredictResult(
        model=name,
        version=version.version,
        input_dataset=commit.dataset,
        input_commit=commit.id,
        output_dataset=output,
        output_commit=out.id,
        rows=out.row_count,
        seconds=round(time.monotonic() - start, 3),
    )
