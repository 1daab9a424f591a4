"""Baseline for ``serve_bench.py``: the same model behind plain FastAPI + uvicorn.

Same work per request as the platform's replica: bearer-token check, JSON parsing, validation and
encoding against the signature (``ServedModel.encode``), the forward pass, a JSON response with
model, version and request id. Configured by env ``DLP_BENCH_MODEL_DIR`` (weights.pt + model.json
written by serve_bench.py) and ``DLP_BENCH_TOKEN``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import uuid
from pathlib import Path

import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response

from dlplatform.errors import DLPlatformError, InvalidInput
from dlplatform.models.builtin import build_model
from dlplatform.models.spec import ModelSignature
from dlplatform.serve._model import ServedModel

torch.set_num_threads(1)
_dir = Path(os.environ["DLP_BENCH_MODEL_DIR"])
_config = json.loads((_dir / "model.json").read_text())
_module = build_model(_config["model_config"])
_module.load_state_dict(torch.load(_dir / "weights.pt", weights_only=True))
_served = ServedModel(
    model="bench-mlp",
    version=1,
    module=_module,
    signature=ModelSignature.model_validate(_config["signature"]),
    params={},
    max_rows=1024,
)
_token_hash = hashlib.sha256(os.environ["DLP_BENCH_TOKEN"].encode()).hexdigest()

app = FastAPI()


def _error(exc: DLPlatformError) -> Response:
    body = json.dumps({"error": exc.code, "message": exc.message})
    return Response(body, status_code=exc.http_status, media_type="application/json")


@app.post("/predict")
async def predict(request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    digest = hashlib.sha256(token.encode()).hexdigest()
    if scheme.lower() != "bearer" or not hmac.compare_digest(digest, _token_hash):
        return Response('{"error":"unauthenticated"}', status_code=401)
    try:
        payload = json.loads(await request.body())
        if not isinstance(payload, dict) or "inputs" not in payload:
            raise InvalidInput('the body must be a JSON object with "inputs"')
        outputs = _served.predict(_served.encode(payload["inputs"]))
    except ValueError:
        return _error(InvalidInput("the body must be JSON"))
    except DLPlatformError as exc:
        return _error(exc)
    body = {"outputs": outputs, "model": "bench-mlp", "version": 1, "request_id": uuid.uuid4().hex}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
