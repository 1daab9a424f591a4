"""The built-in models: the columns each takes, its hyperparameters and its network.

==========  ==========================================  ==========================================
model       inputs                                      network
==========  ==========================================  ==========================================
``mlp``     numeric columns (int, float, bool)          Linear-ReLU stack (``hidden``, ``layers``,
                                                        ``dropout``)
``cnn``     SxS numeric columns (64 → 8x8, 784 → 28x28) two conv + pool blocks, linear head
            or one list column of SxS numbers           (``channels``)
``text``    one string column                           bag of embeddings over a hashed vocabulary
                                                        (``vocab_size``, ``embed_dim``,
                                                        ``max_tokens``); no download
==========  ==========================================  ==========================================

Training checks a job's columns and hyperparameters here (``check_inputs``, ``check_params``);
the registry builds a registered built-in model's network here (``build_model``) for serving and
for clients. Inputs are encoded by ``dlplatform.models.encoding``. Plain torch/numpy/pyarrow: no
Ray.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn

from dlplatform.errors import InvalidInput
from dlplatform.models.spec import ParamValue


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))


def _is_text(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


def _is_numeric_list(t: pa.DataType) -> bool:
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    return bool(is_list and _is_numeric(t.value_type))


def _int_param(params: Mapping[str, ParamValue], key: str, default: int, lo: int, hi: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise InvalidInput(f"hyperparameter {key} must be an integer, got {value!r}")
    if not lo <= int(value) <= hi:
        raise InvalidInput(f"hyperparameter {key} must be between {lo} and {hi}, got {value}")
    return int(value)


def _float_param(
    params: Mapping[str, ParamValue], key: str, default: float, lo: float, hi: float
) -> float:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"hyperparameter {key} must be a number, got {value!r}")
    if not lo <= float(value) <= hi:
        raise InvalidInput(f"hyperparameter {key} must be between {lo} and {hi}, got {value}")
    return float(value)


KNOWN_PARAMS: dict[str, frozenset[str]] = {
    "mlp": frozenset({"hidden", "layers", "dropout", "weight_decay", "task"}),
    "cnn": frozenset({"channels", "weight_decay", "task"}),
    "text": frozenset({"vocab_size", "embed_dim", "max_tokens", "weight_decay", "task"}),
}


def check_params(model: str, params: Mapping[str, ParamValue]) -> None:
    """Reject unknown or out-of-range hyperparameters of a built-in model.

    Raises:
        InvalidInput: names the bad hyperparameter.
    """
    unknown = sorted(set(params) - KNOWN_PARAMS[model])
    if unknown:
        raise InvalidInput(
            f"unknown hyperparameters for model {model}: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(KNOWN_PARAMS[model]))})"
        )
    if "task" in params and params["task"] not in ("classification", "regression"):
        raise InvalidInput("hyperparameter task must be 'classification' or 'regression'")
    build_model({"model": model, "input_shape": [64], "num_outputs": 2, "params": dict(params)})


# --- inputs ----------------------------------------------------------------------------------


def check_inputs(
    model: str, schema: pa.Schema, features: Sequence[str], label: str
) -> tuple[str, tuple[int, ...]]:
    """Check that ``features`` suit the built-in ``model``; returns (signature kind, input shape).

    The shape of a list column (cnn) is only known from data: it is returned as ``(-1,)``.

    Raises:
        InvalidInput: a missing column, or columns the model cannot take (each named).
    """
    names = set(schema.names)
    if label not in names:
        raise InvalidInput(
            f"label column {label!r} is not in the dataset (columns: {', '.join(schema.names)})"
        )
    missing = [f for f in features if f not in names]
    if missing:
        raise InvalidInput(f"feature columns not in the dataset: {', '.join(missing)}")
    if not features:
        raise InvalidInput("no feature columns: the dataset has only the label column")
    types = {f: schema.field(f).type for f in features}
    label_type = schema.field(label).type
    if not (_is_numeric(label_type) or _is_text(label_type)):
        raise InvalidInput(f"label column {label!r} has type {label_type}; need numbers or strings")
    if model == "mlp":
        bad = [f"{f} ({t})" for f, t in types.items() if not _is_numeric(t)]
        if bad:
            raise InvalidInput(
                f"model mlp needs numeric feature columns; not numeric: {', '.join(bad)}"
            )
        return "tabular", (len(features),)
    if model == "cnn":
        if len(features) == 1 and _is_numeric_list(types[features[0]]):
            return "image", (-1,)
        bad = [f"{f} ({t})" for f, t in types.items() if not _is_numeric(t)]
        if bad:
            raise InvalidInput(
                f"model cnn needs numeric pixel columns; not numeric: {', '.join(bad)}"
            )
        side = math.isqrt(len(features))
        if side * side != len(features) or side < 4:
            raise InvalidInput(
                f"model cnn needs a square image: {len(features)} pixel columns is not S*S "
                "(e.g. 64 for 8x8, 784 for 28x28)"
            )
        return "image", (1, side, side)
    if model == "text":
        if len(features) != 1 or not _is_text(types[features[0]]):
            shown = ", ".join(f"{f} ({t})" for f, t in types.items())
            raise InvalidInput(f"model text needs exactly one string feature column; got {shown}")
        return "text", (-1,)
    raise InvalidInput(f"unknown built-in model {model!r}")


def image_shape_from_length(length: int) -> tuple[int, int, int]:
    side = math.isqrt(length)
    if side * side != length or side < 4:
        raise InvalidInput(f"model cnn needs a square image: {length} pixels is not S*S")
    return (1, side, side)


# --- networks --------------------------------------------------------------------------------


class MLP(nn.Module):
    def __init__(self, input_dim: int, num_outputs: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        blocks: list[nn.Module] = []
        width = input_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.ReLU()]
            if dropout > 0:
                blocks.append(nn.Dropout(dropout))
            width = hidden
        blocks.append(nn.Linear(width, num_outputs))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


class SmallCNN(nn.Module):
    def __init__(self, side: int, num_outputs: int, channels: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
        )  # fmt: skip
        self.head = nn.Linear(2 * channels * 4, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))  # type: ignore[no-any-return]


class BagOfEmbeddings(nn.Module):
    def __init__(self, vocab_size: int, embed_dim: int, num_outputs: int):
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab_size, embed_dim, mode="mean", padding_idx=0)
        self.head = nn.Linear(embed_dim, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # type: ignore[no-any-return]


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The network described by a model config ``{"model", "input_shape", "num_outputs", "params"}``.

    Raises:
        InvalidInput: an unknown model or a bad hyperparameter.
    """
    model = config["model"]
    params: Mapping[str, ParamValue] = config.get("params", {})
    shape = tuple(int(s) for s in config["input_shape"])
    outputs = int(config["num_outputs"])
    if model == "mlp":
        return MLP(
            int(np.prod(shape)),
            outputs,
            _int_param(params, "hidden", 64, 1, 65_536),
            _int_param(params, "layers", 2, 0, 64),
            _float_param(params, "dropout", 0.0, 0.0, 0.95),
        )
    if model == "cnn":
        side = shape[-1] if len(shape) == 3 else math.isqrt(int(np.prod(shape)))
        return SmallCNN(side, outputs, _int_param(params, "channels", 16, 1, 512))
    if model == "text":
        return BagOfEmbeddings(
            _int_param(params, "vocab_size", 20_000, 16, 10_000_000),
            _int_param(params, "embed_dim", 32, 1, 4096),
            outputs,
        )
    raise InvalidInput(f"unknown built-in model {model!r}")
