"""DAG building and validation: fan-out/fan-in, deterministic ids, cycles, bad paths and params."""

from __future__ import annotations

import pytest

from dlplatform.errors import InvalidInput
from dlplatform.workflows import StepNode, build_workflow, step, workflow
from dlplatform.workflows.dag import Ref, check_path, dag_of, fill


@step
def load(n: int) -> int:
    return n


@step(retries=2, retry_exceptions=(ConnectionError,), timeout_s=5, num_cpus=0.5)
def score(x: int, k: int) -> int:
    return x * k


@step(name="combine")
def combine_all(parts: list[int], extra: dict[str, int] | None = None) -> int:
    return sum(parts)


@workflow
def fan(n: int = 3) -> StepNode:
    base = load.bind(n)
    return combine_all.bind([score.bind(base, k) for k in range(n)], extra={"b": base})


def test_fan_out_fan_in_dag_has_deterministic_ids_and_deps() -> None:
    dag = dag_of(fan(3))
    assert list(dag.steps) == ["load", "score", "score-2", "score-3", "combine"]
    assert dag.steps["combine"].deps == ("score", "score-2", "score-3", "load")
    assert dag.steps["score-2"].deps == ("load",)
    assert dag.outputs == ("combine",)
    assert dag.steps["combine"].args == ([Ref("score"), Ref("score-2"), Ref("score-3")],)
    assert dag.steps["combine"].kwargs == {"extra": {"b": Ref("load")}}
    # the same factory gives the same ids (what resume relies on)
    assert list(dag_of(fan(3)).steps) == list(dag.steps)
    outputs = {"score": 1, "score-2": 2, "score-3": 3, "load": 9}
    assert fill(dag.steps["combine"].args, outputs) == ([1, 2, 3],)
    assert fill(dag.steps["combine"].kwargs, outputs) == {"extra": {"b": 9}}


def test_step_options_map_to_ray_task_options() -> None:
    assert score.step_options.ray_options() == {
        "num_cpus": 0.5,
        "num_gpus": 0.0,
        "max_retries": 2,
        "retry_exceptions": [ConnectionError],
    }
    assert load.step_options.ray_options()["retry_exceptions"] is False
    assert score(2, 3) == 6  # a step is still a plain function
    assert score.options(num_gpus=1).step_options.num_gpus == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"num_cpus": -1}, "num_cpus"),
        ({"retry_exceptions": ("nope",)}, "retry_exceptions"),
        ({"name": "Bad Name"}, "step name"),
    ],
)
def test_bad_step_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        step(**options)(lambda: 1)  # type: ignore[arg-type]


def test_a_cycle_is_rejected_before_anything_runs() -> None:
    a = load.bind(1)
    b = score.bind(a, 2)
    a.after(b)
    with pytest.raises(InvalidInput, match="has a cycle: score -> load -> score"):
        dag_of(b)


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    node = load.bind(0)
    for _ in range(5000):
        node = score.bind(node, 1)
    assert len(dag_of(node).steps) == 5001


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("no_colon", "expected an import path"),
        ("../etc:passwd", "expected an import path"),
        ("os.path:", "expected an import path"),
        ("dlplatform.no_such_module_x:f", "cannot import module"),
        ("dlplatform.workflows.dag:no_such_factory", "has no 'no_such_factory'"),
        ("dlplatform.workflows.dag:MAX_STEPS", "not a workflow factory"),
        ("os:getcwd", "not a workflow factory"),
        ("dlplatform.workflows.dag:build_dag", "not a workflow factory"),
    ],
)
def test_unknown_or_malformed_import_paths_are_invalid_input(path: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build_workflow(path, {})


def test_params_must_fit_the_factory_and_be_json() -> None:
    here = f"{__name__}:fan"
    assert check_path(here) == here
    with pytest.raises(InvalidInput, match="does not accept params"):
        build_workflow(here, {"nope": 1})
    with pytest.raises(InvalidInput, match="JSON"):
        build_workflow(here, {"n": object()})
    with pytest.raises(InvalidInput, match="must return a step node"):
        dag_of(42)
    with pytest.raises(InvalidInput, match="must return a step node"):
        dag_of([load.bind(1), "x"])
