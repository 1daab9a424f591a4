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
from fixtures_gateway import *  # noqa: F403
from fixtures_ray import *  # noqa: F403
from fixtures_s3 import *  # noqa: F403

from dlplatform.access import SYSTEM, Principal, bootstrap_admin
from dlplatform.config import Settings, load_settings
from dlplatform.context import Backend
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
