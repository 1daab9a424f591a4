"""Training specs, the run plan, label encoding and the seeded split (no Ray); the built-in
models themselves are tested in tests/unit/models."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from pydantic import ValidationError

from dlplatform.errors import InvalidInput
from dlplatform.models import ModelSignature, builtin, encoding
from dlplatform.train import TrainingJobSpec, runner


def _digits_table(n: int = 50) -> pa.Table:
    rng = np.random.default_rng(0)
    cols = {f"p{i}": rng.integers(0, 16, n).astype(np.float64) for i in range(64)}
    cols["target"] = rng.integers(0, 10, n)
    return pa.table(cols)


def test_spec_defaults_and_registry_name() -> None:
    spec = TrainingJobSpec(dataset="digits", label="target")
    assert spec.model == "mlp" and spec.workers == 2 and spec.dataset_commit is None
    assert spec.registry_name == "digits-mlp"
    pinned = TrainingJobSpec(dataset="digits@c-123", label="y", model="pkg.mod:train_fn")
    assert pinned.dataset_name == "digits" and pinned.dataset_commit == "c-123"
    assert pinned.registry_name == "digits-train_fn"
    assert (
        TrainingJobSpec(
            dataset="d", label="y", workers=3, resources_per_worker={"CPU": 0.5}
        ).cpus_needed()
        == 1.5
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model": "resnet9000"}, "unknown model 'resnet9000'"),
        ({"dataset": "../etc"}, "invalid name"),
        ({"dataset": "digits@../x"}, "invalid id"),
        ({"features": ("target",)}, "also listed as a feature"),
        ({"runtime_env": {"pip": ["x"]}}, "user-code models only"),
        ({"workers": 0}, "greater than or equal to 1"),
        ({"validation_fraction": 1.0}, "less than 1"),
        ({"params": {"bad key": 1}}, "invalid hyperparameter name"),
        ({"unknown_field": 1}, "Extra inputs are not permitted"),
        ({"model_name": "Bad Name"}, "invalid name"),
    ],
)
def test_spec_rejects_bad_input(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingJobSpec(**{"dataset": "digits", "label": "target", **fields})


def test_spec_is_frozen() -> None:
    spec = TrainingJobSpec(dataset="digits", label="target")
    with pytest.raises(ValidationError):
        spec.epochs = 5  # type: ignore[misc]


def test_regression_when_label_is_float() -> None:
    table = pa.table({"x1": [1.0, 2.0, 3.0], "x2": [0.5, 0.1, 0.2], "price": [1.5, 2.5, 3.5]})
    spec = TrainingJobSpec(dataset="houses", label="price")
    plan = runner.plan(spec, table.schema, table.column("price"))
    assert plan.signature.task == "regression" and plan.model_config["num_outputs"] == 1
    y = encoding.encode_labels(np.array([1.5, 2.5]), plan.signature)
    assert y.dtype == np.float32


def test_single_class_label_is_rejected() -> None:
    table = pa.table({"x": [1.0, 2.0], "y": [1, 1]})
    with pytest.raises(InvalidInput, match="1 distinct value"):
        runner.plan(TrainingJobSpec(dataset="d", label="y"), table.schema, table.column("y"))


def test_seeded_split_is_deterministic_and_complementary() -> None:
    table = _digits_table(400)
    spec = TrainingJobSpec(dataset="digits", label="target")
    sig = runner.plan(spec, table.schema, table.column("target")).signature
    batch = {k: np.asarray(v) for k, v in table.to_pydict().items()}

    def side(name: str, seed: int) -> dict[str, np.ndarray]:
        return runner.encode_batch(batch, signature=sig, params={}, side=name, val_fraction=0.25,
                                   seed=seed)  # fmt: skip

    train, val = side("train", 1), side("val", 1)
    assert len(train["x"]) + len(val["x"]) == 400
    assert 60 <= len(val["x"]) <= 140
    np.testing.assert_array_equal(side("val", 1)["x"], val["x"])
    assert not np.array_equal(side("val", 2)["x"][:5], val["x"][:5])
    # the split of a row does not depend on which batch it arrives in
    half = {k: v[:200] for k, v in batch.items()}
    first = runner.encode_batch(
        half, signature=sig, params={}, side="val", val_fraction=0.25, seed=1
    )
    np.testing.assert_array_equal(first["x"], val["x"][: len(first["x"])])


def test_workers_fetch_whole_batches_of_about_fetch_bytes() -> None:
    def sig(shape: tuple[int, ...]) -> ModelSignature:
        return ModelSignature(kind="tabular", features=("a",), dtypes=("float",),
                              input_shape=shape, task="regression", label="y")  # fmt: skip

    small = runner.fetch_rows(sig((32,)), 256)  # 128 B rows: many, up to the cap
    assert small % 256 == 0 and small * 128 <= runner.FETCH_BYTES
    assert small <= runner.MAX_FETCH_ROWS
    image = runner.fetch_rows(sig((1, 28, 28)), 100)
    assert image % 100 == 0 and 0 < image * 28 * 28 * 4 <= runner.FETCH_BYTES
    assert runner.fetch_rows(sig((4096, 1024)), 64) == 64  # a huge row: one batch at a time


def test_the_optimizer_is_fused_adam_and_keeps_its_state() -> None:
    model = builtin.build_model({"model": "mlp", "input_shape": [8], "num_outputs": 3,
                                "params": {"hidden": 16}})  # fmt: skip
    opt = runner.make_optimizer(model, 1e-3, 0.0)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["fused"]
    loss = model(torch.randn(4, 8)).sum()
    loss.backward()
    opt.step()
    again = runner.make_optimizer(model, 1e-3, 0.0)
    again.load_state_dict(opt.state_dict())  # a checkpoint's optimizer state resumes
    assert again.state_dict()["state"][0]["step"] == 1


def test_failure_message_prefers_the_worker_exception() -> None:
    from ray.train import WorkerGroupError

    err = WorkerGroupError("boom", {1: ValueError("bad batch in user code")})
    assert (
        runner.failure_message(err)
        == "training failed on worker rank 1: ValueError: bad batch in user code"
    )
    assert runner.failure_message(RuntimeError("x")) == "RuntimeError: x"


def test_cli_param_parsing() -> None:
    from dlplatform.cli._training_opts import parse_param

    assert parse_param("hidden=64") == ("hidden", 64)
    assert parse_param("dropout=0.1") == ("dropout", 0.1)
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param("task=regression") == ("task", "regression")
    with pytest.raises(InvalidInput, match="KEY=VALUE"):
        parse_param("oops")


def test_code_version_hashes_the_training_code() -> None:
    from dlplatform.train._lifecycle import code_version

    version = code_version(TrainingJobSpec(dataset="d", label="y"))
    assert version.startswith("dlplatform-") and len(version.split("sha256:")[1]) == 64
    assert version == code_version(TrainingJobSpec(dataset="other", label="z", model="cnn"))


def test_cli_submit_builds_the_spec_and_names_a_bad_value(tmp_path: object) -> None:
    """`dlp train submit` turns its options into a spec (a bad one is one line naming the field)
    before it needs the platform."""
    from typer.testing import CliRunner

    from dlplatform.cli import app

    env = {"DLP_TOKEN": "", "RAY_ADDRESS": ""}
    base = ["train", "submit", "--home", str(tmp_path), "--dataset", "digits", "--label", "y",
            "--model", "mlp"]  # fmt: skip
    bad = CliRunner().invoke(app, [*base, "--workers", "0"], env=env)
    assert bad.exit_code == 1 and "Traceback" not in bad.output, bad.output
    assert bad.output.strip().startswith("error:") and "workers" in bad.output
    assert len(bad.output.strip().splitlines()) == 1
    good = CliRunner().invoke(app, [*base, "--workers", "1"], env=env)
    assert good.exit_code == 1 and "Traceback" not in good.output, good.output
    assert "workers" not in good.output  # the spec was fine: what fails is the missing platform
