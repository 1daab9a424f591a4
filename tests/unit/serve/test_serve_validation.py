"""Serving without Ray: specs and traffic checks, input validation against a real signature,
batched inference grouping, replica metrics, CLI argument errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dlplatform.errors import InvalidInput, TooLarge
from dlplatform.models.builtin import build_model
from dlplatform.models.spec import ModelSignature
from dlplatform.serve._metrics import LATENCY_SAMPLES_PER_PUBLISH, RequestMetrics
from dlplatform.serve._model import ServedModel
from dlplatform.serve._predlog import RawJSON, _dump, raw_inputs
from dlplatform.serve.deployment import infer_grouped
from dlplatform.serve.spec import DeploymentSpec, TrafficSpec, check_traffic, split_model_ref

FEATURES = ("f0", "f1", "f2", "f3")


def _served(kind: str = "tabular", max_rows: int = 8, version: int = 1) -> ServedModel:
    if kind == "text":
        sig = ModelSignature(
            kind="text",
            features=("t",),
            dtypes=("string",),
            input_shape=(16,),
            task="classification",
            label="y",
            classes=("neg", "pos"),
        )
        config = {
            "model": "text",
            "input_shape": [16],
            "num_outputs": 2,
            "params": {"vocab_size": 64, "embed_dim": 4, "max_tokens": 16},
        }
    elif kind == "image":
        sig = ModelSignature(
            kind="image",
            features=("px",),
            dtypes=("list<item: double>",),
            input_shape=(1, 4, 4),
            task="regression",
            label="y",
        )
        config = {
            "model": "cnn",
            "input_shape": [1, 4, 4],
            "num_outputs": 1,
            "params": {"channels": 2},
        }
    else:
        sig = ModelSignature(
            kind="tabular",
            features=FEATURES,
            dtypes=("double",) * 3 + ("bool",),
            input_shape=(4,),
            task="classification",
            label="y",
            classes=("a", "b", "c"),
        )
        config = {"model": "mlp", "input_shape": [4], "num_outputs": 3, "params": {"hidden": 4}}
    return ServedModel(
        model="m",
        version=version,
        module=build_model(config),
        signature=sig,
        params=config["params"],
        max_rows=max_rows,
    )


def test_tabular_rows_as_lists_or_objects_encode_the_same() -> None:
    served = _served()
    x = served.encode([[1, 2.5, 3, True], {"f0": 1, "f1": 2.5, "f2": 3, "f3": True, "extra": 0}])
    assert x.shape == (2, 4) and x.dtype == np.float32
    assert np.array_equal(x[0], x[1])
    out = served.predict(x)
    assert len(out) == 2 and set(out) <= {"a", "b", "c"}


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"f0": 1}, "'inputs' must be a list of rows, got object"),
        ([], "'inputs' is empty"),
        ([[1, 2, 3]], "row 0: got 3 values; expected a list of 4 numbers"),
        ([[1, 2, 3, 4], "x"], "row 1: got string; expected a list of 4 numbers"),
        ([[1, "2", 3, True]], "row 0, feature 'f1': expected a number (double), got string"),
        ([[1, None, 3, True]], "feature 'f1': expected a number (double), got null"),
        ([{"f0": 1, "f2": 3}], "row 0: missing feature(s) f1, f3"),
        ([[1, 2, 3, "yes"]], "feature 'f3': expected a number (bool), got string"),
        ([[1, float("nan"), 3, 1]], "feature 'f1': expected a number"),
        ([[1, float("inf"), 3, 1]], "row 0, feature 'f1': expected a number"),
        ([[1, 2, 3, 1], [1, 2, 1e39, 1]], "beyond the float32 range"),
        ([[1, 2, 10**400, 1]], "beyond the float32 range"),
    ],
)
def test_bad_tabular_inputs_say_what_was_expected(inputs: object, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        _served().encode(inputs)
    assert message in err.value.message


def test_row_limit_is_413_with_the_limit() -> None:
    with pytest.raises(TooLarge, match="9 rows exceed the limit of 8 rows per request"):
        _served(max_rows=8).encode([[1, 2, 3, 1]] * 9)


def test_image_and_text_rows() -> None:
    image = _served("image")
    x = image.encode([[0.5] * 16, {"px": [0.1] * 16}])
    assert x.shape == (2, 1, 4, 4)
    assert all(isinstance(v, float) for v in image.predict(x))
    with pytest.raises(InvalidInput, match="got 15 values; expected a list of 16 numbers"):
        image.encode([[0.5] * 15])
    text = _served("text")
    x = text.encode(["good movie", {"t": "bad"}, ["fine"]])
    assert x.shape == (3, 16) and x.dtype == np.int64
    assert set(text.predict(x)) <= {"neg", "pos"}
    with pytest.raises(InvalidInput, match="row 0: got number; expected a string"):
        text.encode([3])


def test_infer_grouped_runs_one_pass_per_model_and_splits_results() -> None:
    a, b = _served(version=1), _served(version=2)
    rows = [np.ones((2, 4), np.float32), np.zeros((1, 4), np.float32), np.ones((3, 4), np.float32)]
    out = infer_grouped([(a, rows[0]), (b, rows[1]), (a, rows[2])])
    assert [len(o) for o in out] == [2, 1, 3]
    assert out[0] == a.predict(rows[0]) and out[1] == b.predict(rows[1])


def test_spec_and_traffic_checks() -> None:
    assert DeploymentSpec().max_ongoing_requests >= DeploymentSpec().max_batch_size
    with pytest.raises(ValueError, match="must not exceed max_replicas"):
        DeploymentSpec(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="at least max_batch_size"):
        DeploymentSpec(max_batch_size=64, max_ongoing_requests=8)
    assert check_traffic({"3": 90, 4: 10}) == {3: 90, 4: 10}
    assert check_traffic({3: 100, 4: 0}) == {3: 100}
    for bad, msg in [
        ({}, "at least one"),
        ({3: 90}, "sum to 100"),
        ({"x": 100}, "not a version"),
        ({0: 100}, ">= 1"),
        ({3: 150, 4: -50}, "0-100"),
        ({3: 99.5, 4: 0.5}, "integer"),
    ]:
        with pytest.raises(ValueError, match=msg):
            check_traffic(bad)
    with pytest.raises(ValueError):
        TrafficSpec(traffic={"3": 50})
    assert split_model_ref("m@3") == ("m", "3")
    assert split_model_ref("m@production") == ("m", "production")
    assert split_model_ref("m") == ("m", None)
    with pytest.raises(ValueError):
        split_model_ref("../etc")


def test_request_metrics_totals_and_percentiles() -> None:
    m = RequestMetrics("d")
    for ms in range(1, 101):
        m.ok("m", 1, float(ms))
    m.ok("m", 2, 5.0)
    m.error("m", 1, "invalid_input")
    stats = m.stats()
    assert stats["requests"] == 101 and stats["errors"] == 1
    assert stats["requests_v1"] == 100 and stats["requests_v2"] == 1
    assert 45 <= stats["p50_ms"] <= 55 and stats["p99_ms"] >= 99


def test_cli_rejects_bad_arguments_before_connecting() -> None:
    from dlplatform.cli import app

    runner = CliRunner()
    bad = runner.invoke(app, ["serve", "traffic", "m", "3=abc"])
    assert bad.exit_code == 1 and "use VERSION=WEIGHT" in bad.output
    bad = runner.invoke(app, ["serve", "deploy", "m", "--min-replicas", "3", "--max-replicas", "2"])
    assert bad.exit_code == 1 and "must not exceed max_replicas" in bad.output
    bad = runner.invoke(app, ["predict", "m", "--input", "not-a-file.json"])
    assert bad.exit_code == 1 and "neither JSON nor an existing file" in bad.output
    bad = runner.invoke(app, ["predict", "m", "--input", '{"rows": []}'])
    assert bad.exit_code == 1 and '"inputs"' in bad.output


@pytest.mark.parametrize(
    ("body", "raw"),
    [
        (b'{"inputs": [[1, 2.5e-3, -3]]}', "[[1, 2.5e-3, -3]]"),
        (b' {"inputs":[{"a":1}]}\n', '[{"a":1}]'),
        (b'{"inputs": ["a \\u00e9"]}', None),  # an escape: encoded again
        (b'{"inputs": [1], "inputs": [2]}', None),  # a repeated key
        (b'{"inputs": [1], "x": 1}', None),  # another key
        (b'{"inputs": ["say \\"inputs\\""]}', None),
    ],
)
def test_logged_inputs_reuse_the_request_text_only_when_it_is_exactly_the_value(
    body: bytes, raw: str | None
) -> None:
    payload = json.loads(body)
    got = raw_inputs(body, payload)
    assert got == raw
    if got is not None:
        assert isinstance(got, RawJSON) and json.loads(got) == payload["inputs"]
        assert _dump(got) == raw  # logged as it is, not quoted again
    assert _dump([[1.5, 2]]) == "[[1.5,2]]"


def test_latency_histogram_records_a_sample_under_load() -> None:
    class Series:
        def __init__(self) -> None:
            self.calls: list[tuple[float, dict[str, str]]] = []

        def inc(self, n: float, tags: dict[str, str]) -> None:
            self.calls.append((n, tags))

        def observe(self, value: float, tags: dict[str, str]) -> None:
            self.calls.append((value, tags))

    m = RequestMetrics("d")
    requests, errors, latency = Series(), Series(), Series()
    m._series = (requests, errors, latency)
    for i in range(3 * LATENCY_SAMPLES_PER_PUBLISH):
        m.ok("m", 1, float(i))
    m.ok("m", 2, 7.0)
    m.publish()
    assert sorted(n for n, _ in requests.calls) == [1, 3 * LATENCY_SAMPLES_PER_PUBLISH]  # exact
    v1 = [v for v, t in latency.calls if t["version"] == "1"]
    assert len(v1) == LATENCY_SAMPLES_PER_PUBLISH and len(set(v1)) == len(v1)
    assert [v for v, t in latency.calls if t["version"] == "2"] == [7.0]
    m.publish()  # nothing new: nothing recorded again
    assert len(latency.calls) == LATENCY_SAMPLES_PER_PUBLISH + 1


def test_a_lone_request_runs_inline_and_concurrent_ones_are_batched() -> None:
    import asyncio

    from dlplatform.serve._batching import MicroBatcher
    from dlplatform.serve.deployment import ReplicaBase

    class Replica(ReplicaBase):
        def __init__(self) -> None:
            self._in_flight = 0
            self.batched: list[int] = []
            self._batcher = MicroBatcher(self._run, max_batch_size=32, wait_timeout_s=0.0)

        def _run(self, items: list[tuple[ServedModel, np.ndarray]]) -> list[list[object]]:
            self.batched.append(len(items))
            return infer_grouped(items)

    served = _served()
    x = served.encode([[1, 2, 3, 1]])

    async def scenario() -> tuple[list[object], list[list[object]], Replica]:
        replica = Replica()
        alone = await replica._infer_one(served, x)
        assert replica.batched == [] and replica._in_flight == 0
        together = await asyncio.gather(*(replica._infer_one(served, x) for _ in range(3)))
        return alone, together, replica

    alone, together, replica = asyncio.run(scenario())
    assert replica.batched == [3] and replica._in_flight == 0  # one forward pass for all three
    assert together == [alone] * 3


def test_a_replica_no_node_can_hold_is_refused_at_once() -> None:
    from dlplatform.serve.service import check_replica_fits

    nodes = [
        {"Alive": True, "Resources": {"CPU": 4.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 64.0}},  # a dead node holds nothing
    ]
    check_replica_fits(8, nodes)
    with pytest.raises(InvalidInput, match=r"asks for 32 CPUs but the largest node .* has 8"):
        check_replica_fits(32, nodes)
    with pytest.raises(InvalidInput, match="largest node of this cluster has 0"):
        check_replica_fits(0.25, [])
