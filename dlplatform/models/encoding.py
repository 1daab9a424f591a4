"""The one place that turns table columns into model inputs, and model outputs into values.

``encode_columns`` is shared by training (in Ray Data tasks), serving and batch inference, so a
model sees the same encoding in all three; ``predict`` turns a network's outputs back into class
values or numbers. Plain torch/numpy: no Ray.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dlplatform.errors import InvalidInput
from dlplatform.models.spec import ModelSignature

_TOKEN = re.compile(r"[a-z0-9']+")


def hash_tokens(texts: Sequence[Any], vocab_size: int, max_tokens: int) -> np.ndarray:
    """Token ids ``[n, max_tokens]`` (0 = padding) from a stable hash of lowercase words."""
    out = np.zeros((len(texts), max_tokens), dtype=np.int64)
    for i, text in enumerate(texts):
        words = _TOKEN.findall(str(text or "").lower())[:max_tokens]
        for j, word in enumerate(words):
            out[i, j] = 1 + zlib.crc32(word.encode()) % (vocab_size - 1)
    return out


def encode_columns(
    columns: Mapping[str, Any], signature: ModelSignature, params: Mapping[str, Any]
) -> np.ndarray:
    """The model input for a batch given as ``{column: array-like}`` (training and serving).

    Raises:
        InvalidInput: a feature column is missing.
    """
    missing = [f for f in signature.features if f not in columns]
    if missing:
        raise InvalidInput(f"missing input columns: {', '.join(missing)}")
    if signature.kind == "text":
        vocab = int(params.get("vocab_size", 20_000))
        max_tokens = int(params.get("max_tokens", 64))
        return hash_tokens(list(columns[signature.features[0]]), vocab, max_tokens)
    if signature.kind == "image" and len(signature.features) == 1:
        col = columns[signature.features[0]]
        x = (
            np.stack([np.asarray(v, dtype=np.float32) for v in col])
            if len(col)
            else np.zeros((0, int(np.prod(signature.input_shape))), np.float32)
        )
        return x.reshape((-1, *signature.input_shape))
    x = np.stack([np.asarray(columns[f], dtype=np.float32) for f in signature.features], axis=1)
    return x.reshape((-1, *signature.input_shape))


def encode_labels(values: Any, signature: ModelSignature) -> np.ndarray:
    """Class indices (classification) or float targets (regression)."""
    arr = np.asarray(values)
    if signature.task == "regression":
        return arr.astype(np.float32)
    classes = np.asarray(signature.classes)
    idx = np.searchsorted(classes, arr)
    idx = np.clip(idx, 0, len(classes) - 1)
    if len(arr) and not np.array_equal(classes[idx], arr):
        raise InvalidInput("label values outside the classes seen at training start")
    return idx.astype(np.int64)


def input_dtype(signature: ModelSignature) -> torch.dtype:
    return torch.int64 if signature.kind == "text" else torch.float32


def predict(module: nn.Module, signature: ModelSignature, x: np.ndarray) -> list[Any]:
    """Outputs for encoded inputs: class values (classification) or numbers (regression)."""
    if module.training:  # (a call per request: .eval() walks every submodule)
        module.eval()
    with torch.inference_mode():
        out = module(torch.as_tensor(x, dtype=input_dtype(signature)))
    if signature.task == "regression":
        return [float(v) for v in out.reshape(-1).tolist()]
    idx = out.argmax(dim=1).tolist()
    return [signature.classes[i] for i in idx]
