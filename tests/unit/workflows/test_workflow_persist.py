"""Step outputs in the artifact store: formats, round trips, lineage entities, tamper detection."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pytest

from dlplatform.errors import IntegrityError
from dlplatform.metadata import Commit, CommitMode, ModelVersion, Run
from dlplatform.metadata.artifacts import ArtifactStore
from dlplatform.metadata.records import utcnow
from dlplatform.workflows._persist import entities_in, load_output, persist_output


@dataclass(frozen=True)
class Point:
    x: int
    y: int


@pytest.fixture
def artifacts(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(str(tmp_path / "artifacts"))


def test_each_kind_of_output_round_trips_in_its_format(artifacts: ArtifactStore) -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    run = Run(id="r1", owner="alice", created_at=utcnow())
    cases = [
        (table, "parquet"),
        ({"acc": 0.9, "tags": ["a", None, True]}, "json"),
        (None, "json"),
        (run, "record"),
        (Point(1, 2), "pickle"),
        ((1, 2), "pickle"),  # a tuple stays a tuple
        (float("nan"), "pickle"),  # not JSON
    ]
    for value, fmt in cases:
        ref = persist_output(artifacts, value)
        assert ref["format"] == fmt
        assert len(ref["sha256"]) == 64
        back = load_output(artifacts, json.dumps(ref))
        if isinstance(value, float):
            assert back != back  # nan
        else:
            assert back == value
            assert type(back) is type(value)


def test_a_tampered_pickle_is_never_loaded(artifacts: ArtifactStore) -> None:
    ref = persist_output(artifacts, Point(1, 2))
    path = Path(artifacts.path_for(ref["sha256"]))
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b"Point", b"Poinx"))
    with pytest.raises(IntegrityError):
        load_output(artifacts, ref)


def test_records_in_outputs_become_lineage_entities() -> None:
    mv = ModelVersion(
        model="m", version=3, run_id="r1", artifact_sha256="0" * 64, signature_json="{}",
        created_at=utcnow(),
    )  # fmt: skip
    commit = Commit(
        id="c1", dataset="d", parent=None, mode=CommitMode.APPEND, author="a", created_at=utcnow(),
        row_count=1, size_bytes=1, version_hash="h", arrow_schema="s",
    )  # fmt: skip
    run = Run(id="r1", owner="alice", created_at=utcnow())
    assert entities_in(mv) == ["model_version:m@3"]
    assert entities_in({"run": run, "model": mv, "n": 1}) == ["run:r1", "model_version:m@3"]
    assert entities_in([commit, commit]) == ["commit:c1"]
    assert entities_in(42) == []
