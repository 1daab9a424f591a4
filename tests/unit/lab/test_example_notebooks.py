"""The example notebooks that track an experiment and bring their own training code.

``05_track_an_experiment`` runs top to bottom in-process against the gateway (real routes, real
DuckDB, no Ray, no kernel): every cell, as written. ``04_bring_your_own_training_code`` submits a
training job, which needs Ray; here its cells must be Python, its module must build a network for
the digits that a forward pass and ``load_state_dict`` accept, and each platform call it makes
must exist. (tests/integration/test_notebooks.py runs the notebooks 01-03 in a real kernel.)
"""

from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import dlplatform
from dlplatform.client import HttpClient, Platform
from dlplatform.client.runs import ActiveRun
from dlplatform.client.training import JobHandle
from dlplatform.context import Backend

NOTEBOOKS = Path(__file__).resolve().parents[3] / "notebooks"
BYO = "04_bring_your_own_training_code.ipynb"
TRACK = "05_track_an_experiment.ipynb"


def _code_cells(name: str) -> list[str]:
    book = json.loads((NOTEBOOKS / name).read_text())
    return ["".join(c["source"]) for c in book["cells"] if c["cell_type"] == "code"]


def test_the_tracking_notebook_runs_against_the_gateway(
    http_platform: Callable[[str], Any], admin_token: str, backend: Backend,
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    p = http_platform(admin_token)
    monkeypatch.setattr(dlplatform, "connect", lambda *args, **kwargs: p)
    monkeypatch.chdir(tmp_path)
    scope: dict[str, Any] = {}
    for i, source in enumerate(_code_cells(TRACK)):
        exec(compile(source, f"{TRACK} cell {i}", "exec"), scope)
    found = scope["found"]
    assert len(found) >= 1 and found["metrics.val_accuracy"].is_monotonic_decreasing
    assert (found["metrics.val_accuracy"] > 0.5).all()
    assert scope["version"].run_id is not None and (tmp_path / "report.txt").is_file()
    runs = p.runs.list(f'tags.sweep = "{scope["sweep"]}"')
    assert len(runs) == 4 and {r.run.status.value for r in runs} == {"SUCCEEDED"}
    assert all(r.dataset == f"{scope['name']}@{scope['commit'].id}" for r in runs)


def _writefile(source: str) -> tuple[str, str] | None:
    first, _, body = source.partition("\n")
    if first.startswith("%%writefile "):
        return first.split(maxsplit=1)[1], body
    return None


def test_the_own_code_notebook_is_python_and_calls_what_exists(tmp_path: Path) -> None:
    cells = _code_cells(BYO)
    written = [w for w in map(_writefile, cells) if w is not None]
    assert [path for path, _ in written] == ["my_training.py"]
    for i, source in enumerate(cells):
        if _writefile(source) is None:
            compile(source, f"{BYO} cell {i}", "exec")
    path = tmp_path / "my_training.py"
    path.write_text(written[0][1])
    spec = importlib.util.spec_from_file_location("my_training", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports torch only: Ray waits inside train_fn
    import torch

    config = {"model": "mlp", "input_shape": [64], "num_outputs": 10, "params": {"hidden": 32}}
    net = module.build(config)
    assert net(torch.zeros(5, 64)).shape == (5, 10)
    net.load_state_dict(module.build(config).state_dict())  # what the registry does
    train_fn = next(node for node in ast.parse(written[0][1]).body
                    if isinstance(node, ast.FunctionDef) and node.name == "train_fn")  # fmt: skip
    assert [a.arg for a in train_fn.args.args] == ["config"] and callable(module.train_fn)

    p = Platform(HttpClient("http://127.0.0.1:9", "dlp_unused", retries=0))  # never called
    kinds = {"p.training": type(p.training), "p.models": type(p.models),
             "p.datasets": type(p.datasets), "job": JobHandle, "run": ActiveRun}  # fmt: skip
    called = {
        (ast.unparse(node.func.value), node.func.attr)
        for source in cells if _writefile(source) is None
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }  # fmt: skip
    checked = {(owner, attr) for owner, attr in called if owner in kinds}
    assert {("p.training", "submit"), ("p.models", "load"), ("job", "wait")} <= checked
    for owner, attr in checked:
        assert callable(getattr(kinds[owner], attr, None)), f"{owner}.{attr} does not exist"
