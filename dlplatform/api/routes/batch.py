"""Batch inference: a model version over a whole dataset version, committed as a new commit."""

from __future__ import annotations

from fastapi import APIRouter

from dlplatform import serve
from dlplatform.api.deps import Ctx
from dlplatform.serve import BatchPredictResult
from dlplatform.serve.spec import BatchPredictRequest

router = APIRouter(tags=["batch-predictions"])


@router.post("/batch-predictions", status_code=201)
def batch_predict(request: BatchPredictRequest, ctx: Ctx) -> BatchPredictResult:
    """Predict every row of ``DATASET[@COMMIT]`` with ``NAME[@VERSION|@ALIAS]`` and commit the
    rows plus a ``prediction`` column to ``output`` (created when missing).

    Runs in the gateway, which is on the cluster (Ray Data, ``workers`` inference actors), and
    blocks until the output commit exists: the reply names it. Needs ``predict`` on the model,
    ``dataset.read`` on the input and ``dataset.write`` on the output.
    """
    return serve.batch_predict(
        ctx.backend, ctx.principal, request.model, request.dataset, request.output,
        workers=request.workers,
    )  # fmt: skip
