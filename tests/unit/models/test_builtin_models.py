"""The built-in models: input checks, hyperparameters, networks, encoding and prediction
(no Ray)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from dlplatform.errors import InvalidInput
from dlplatform.models import BUILTIN_MODELS, ModelSignature, builtin, encoding
from dlplatform.train import TrainingJobSpec, runner


def test_check_inputs_names_non_numeric_columns() -> None:
    schema = pa.schema([("a", pa.float64()), ("city", pa.string()), ("when", pa.timestamp("s")),
                        ("y", pa.int64())])  # fmt: skip
    with pytest.raises(
        InvalidInput, match=r"not numeric: city \(string\), when \(timestamp\[s\]\)"
    ):
        builtin.check_inputs("mlp", schema, ["a", "city", "when"], "y")
    with pytest.raises(InvalidInput, match="label column 'nope' is not in the dataset"):
        builtin.check_inputs("mlp", schema, ["a"], "nope")
    with pytest.raises(InvalidInput, match="feature columns not in the dataset: zz"):
        builtin.check_inputs("mlp", schema, ["a", "zz"], "y")
    with pytest.raises(InvalidInput, match="exactly one string feature"):
        builtin.check_inputs("text", schema, ["a"], "y")
    with pytest.raises(InvalidInput, match="3 pixel columns is not S\\*S"):
        builtin.check_inputs(
            "cnn", pa.schema([(c, pa.float32()) for c in "abcy"]), ["a", "b", "c"], "y"
        )


def test_check_params() -> None:
    builtin.check_params("mlp", {"hidden": 32, "layers": 1})
    with pytest.raises(InvalidInput, match="unknown hyperparameters for model mlp: depth"):
        builtin.check_params("mlp", {"depth": 3})
    with pytest.raises(InvalidInput, match="hidden must be between"):
        builtin.check_params("mlp", {"hidden": 0})


@pytest.mark.parametrize("name", BUILTIN_MODELS)
def test_builtin_models_forward_and_signature(name: str) -> None:
    if name == "text":
        table = pa.table({"review": ["good film", "bad, bad plot", "great acting!"] * 4,
                          "sentiment": ["pos", "neg", "pos"] * 4})  # fmt: skip
        spec = TrainingJobSpec(dataset="reviews", label="sentiment", model="text",
                               params={"max_tokens": 8, "vocab_size": 128})  # fmt: skip
        label = "sentiment"
    else:
        rng = np.random.default_rng(0)  # 64 pixel columns of 0..15, 10 digit classes
        table = pa.table({**{f"p{i}": rng.integers(0, 16, 50).astype(np.float64) for i in range(64)},
                          "target": rng.integers(0, 10, 50)})  # fmt: skip
        spec = TrainingJobSpec(dataset="digits", label="target", model=name)
        label = "target"
    plan = runner.plan(spec, table.schema, table.column(label))
    sig = plan.signature
    assert sig.label == label and sig.task == "classification"
    assert len(sig.features) == len(sig.dtypes) == table.num_columns - 1
    if name == "cnn":
        assert sig.input_shape == (1, 8, 8) and sig.kind == "image"
    if name == "text":
        assert sig.classes == ("neg", "pos") and sig.input_shape == (8,)
    net = builtin.build_model(plan.model_config)
    x = encoding.encode_columns(table.to_pydict(), sig, spec.params)
    out = net(torch.as_tensor(x, dtype=encoding.input_dtype(sig)))
    assert out.shape == (table.num_rows, len(sig.classes))
    preds = encoding.predict(net, sig, x[:3])
    assert len(preds) == 3 and all(p in sig.classes for p in preds)
    ModelSignature.model_validate_json(sig.model_dump_json())


def test_cnn_accepts_a_list_column() -> None:
    table = pa.table({"image": [[float(i % 7)] * 784 for i in range(6)], "digit": [0, 1, 2] * 2})
    spec = TrainingJobSpec(dataset="mnist", label="digit", model="cnn")
    plan = runner.plan(spec, table.schema, table.column("digit"), table.slice(0, 1).to_pylist()[0])
    assert plan.signature.input_shape == (1, 28, 28)
    x = encoding.encode_columns(table.to_pydict(), plan.signature, {})
    assert x.shape == (6, 1, 28, 28)
    assert builtin.build_model(plan.model_config)(torch.as_tensor(x)).shape == (6, 3)
