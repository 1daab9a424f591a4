"""Model registry on a real DuckDB store and artifact store: register, load, tamper, promote
(no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.errors import IntegrityError, InvalidInput, NotFound, PermissionDenied
from dlplatform.metadata import Role, Run, RunStatus, User
from dlplatform.metadata.records import utcnow
from dlplatform.models import artifact, builtin, load_model, promote, registry
from dlplatform.train import TrainingJobSpec, runner


def _user(backend: Backend, name: str, role: Role) -> Principal:
    user = User(name=name, role=role, created_at=utcnow())
    backend.store.create_user(user)
    return Principal.of(user)


def _register(
    backend: Backend, tmp_path: Path, name: str = "digits-mlp"
) -> tuple[object, torch.nn.Module]:
    table = pa.table({**{f"p{i}": np.arange(10, dtype=np.float64) for i in range(64)},
                      "target": np.arange(10) % 3})  # fmt: skip
    spec = TrainingJobSpec(dataset="digits", label="target")
    plan = runner.plan(spec, table.schema, table.column("target"))
    torch.manual_seed(0)
    net = builtin.build_model(plan.model_config)
    weights = tmp_path / "model.pt"
    torch.save(net.state_dict(), weights)
    run = backend.store.create_run(Run(id=f"run-{name}", owner="system", created_at=utcnow(),
                                       status=RunStatus.RUNNING))  # fmt: skip
    mv = artifact.register_version(
        backend, run=run, model_name=name, state_dict_path=weights,
        model_config=plan.model_config, signature=plan.signature,
        builder=artifact.BUILTIN_BUILDER, metrics={"val_accuracy": 0.5}, params={"lr": 0.01},
        dataset_commit="c-abc", dataset_version_hash="h" * 64, code_version="dlplatform-test",
    )  # fmt: skip
    return mv, net


def test_register_then_load_gives_the_same_network(backend: Backend, tmp_path: Path) -> None:
    mv, net = _register(backend, tmp_path)
    assert mv.version == 1 and mv.dataset_commit == "c-abc"
    assert json.loads(mv.metrics_json) == {"val_accuracy": 0.5}
    loaded, sig = load_model(backend, "digits-mlp", 1)
    x = torch.randn(4, 64)
    torch.testing.assert_close(loaded(x), net.eval()(x))
    assert sig.features[:2] == ("p0", "p1") and sig.classes == (0, 1, 2)
    edges = backend.store.edges_of(["model_version:digits-mlp@1"])
    assert [(e.src, e.dst) for e in edges] == [("run:run-digits-mlp", "model_version:digits-mlp@1")]
    assert backend.store.get_model("digits-mlp").owner == "system"  # the run's owner


def test_tampered_artifact_is_refused(backend: Backend, tmp_path: Path) -> None:
    mv, _ = _register(backend, tmp_path)
    manifest = json.loads(backend.artifacts.get_bytes(mv.artifact_sha256))
    weights_sha = manifest[artifact.WEIGHTS_FILE]["sha256"]
    path = Path(backend.artifacts.path_for(weights_sha))
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        load_model(backend, "digits-mlp", 1)


def test_promote_keeps_alias_history(backend: Backend, tmp_path: Path) -> None:
    _register(backend, tmp_path)
    (tmp_path / "b").mkdir()
    mv2, _ = _register_again(backend, tmp_path / "b")
    scientist = _user(backend, "sci", Role.DATA_SCIENTIST)
    promote(backend, scientist, "digits-mlp", 1, "production")
    event = promote(backend, scientist, "digits-mlp", mv2.version, "production")
    assert event.previous_version == 1 and event.version == 2
    assert registry.resolve_version(backend, "digits-mlp", "production").version == 2
    _, _ = load_model(backend, "digits-mlp", "production")
    history = registry.alias_history(backend, scientist, "digits-mlp")
    assert [(e.version, e.previous_version) for e in history] == [(1, None), (2, 1)]
    viewer = _user(backend, "val", Role.VIEWER)
    with pytest.raises(PermissionDenied, match=r"model\.promote"):
        promote(backend, viewer, "digits-mlp", 1, "production")
    with pytest.raises(NotFound):
        promote(backend, scientist, "digits-mlp", 9, "production")
    with pytest.raises(InvalidInput):
        promote(backend, scientist, "digits-mlp", 1, "123")


def _register_again(backend: Backend, tmp_path: Path) -> tuple[object, torch.nn.Module]:
    table = pa.table({"p0": [1.0, 2.0], "target": [0, 1]})
    spec = TrainingJobSpec(dataset="digits", label="target")
    plan = runner.plan(spec, table.schema, table.column("target"))
    net = builtin.build_model(plan.model_config)
    weights = tmp_path / "model.pt"
    torch.save(net.state_dict(), weights)
    run = backend.store.create_run(Run(id="run-second", owner="system", created_at=utcnow()))
    mv = artifact.register_version(
        backend, run=run, model_name="digits-mlp", state_dict_path=weights,
        model_config=plan.model_config, signature=plan.signature,
        builder=artifact.BUILTIN_BUILDER, metrics={}, params={}, dataset_commit="c-def",
        dataset_version_hash=None, code_version="x",
    )  # fmt: skip
    return mv, net


def test_weights_file_with_pickled_objects_is_not_loaded(backend: Backend, tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    torch.save({"w": Evil()}, bad)
    run = backend.store.create_run(Run(id="run-evil", owner="system", created_at=utcnow()))
    with pytest.raises(Exception, match=r"Weights only load failed|Unsupported"):
        artifact.register_version(
            backend, run=run, model_name="evil", state_dict_path=bad, model_config={},
            signature=None, builder=None, metrics={}, params={}, dataset_commit="c",  # type: ignore[arg-type]
            dataset_version_hash=None, code_version="x",
        )  # fmt: skip
