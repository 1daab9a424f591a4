"""Shared fixtures: settings under a temp home, in-process stores, the session Ray cluster, S3."""

from __future__ import annotations

import os
import sys
from pathlib import Path as _Path

# Workflows used by the tests are registered by import path (``tests.integration.wf_demo:fan``):
# the repository root must be importable here and in Ray workers, whether pytest was started as
# ``pytest`` or ``python -m pytest``.
_ROOT = str(_Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (_ROOT, os.environ.get("PYTHONPATH", "")) if p
)

from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_browser import *  # noqa: F403
from fixtures_client import *  # noqa: F403
from fixtures_gateway import *  # noqa: F403
from fixtures_ray import *  # noqa: F403
from fixtures_s3 import *  # noqa: F403

from dlplatform.access import SYSTEM, Principal, bootstrap_admin
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
from dlplatform.inprocess import Platform
from dlplatform.metadata import MetadataStore
from dlplatform.metadata.artifacts import ArtifactStore


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(home=tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> Iterator[MetadataStore]:
    s = MetadataStore(settings.metadata_path)
    yield s
    s.close()


@pytest.fixture
def backend(store: MetadataStore, settings: Settings) -> Backend:
    return Backend(store=store, artifacts=ArtifactStore.from_settings(settings), settings=settings)


@pytest.fixture
def admin_token(store: MetadataStore) -> str:
    token = bootstrap_admin(store)
    assert token is not None
    return token


@pytest.fixture
def admin() -> Principal:
    return SYSTEM


@pytest.fixture
def wf(ray_cluster: None, tmp_path: Path) -> Iterator[Platform]:
    """A platform of its own on the session cluster (namespace, home, metadata actor, workflow
    manager), for the workflow integration tests."""
    import uuid

    from dlplatform.metadata.actor import connect_store, stop_store
    from dlplatform.workflows import stop_manager

    settings = load_settings(home=tmp_path / "h", namespace=f"wf-{uuid.uuid4().hex[:8]}")
    backend = Backend(
        store=connect_store(settings),  # type: ignore[arg-type]
        artifacts=ArtifactStore.from_settings(settings),
        settings=settings,
    )
    yield Platform(backend, SYSTEM)
    stop_manager(settings)
    stop_store(settings)
