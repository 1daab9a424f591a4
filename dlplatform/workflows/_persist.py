"""Step outputs in the artifact store, described by a small JSON ``output_ref``.

Formats, chosen by the value's type:
- ``parquet``: a ``pyarrow.Table``;
- ``json``: plain JSON values (None, bool, int, float, str, and lists / str-keyed dicts of them);
- ``record``: a metadata record (dataset, commit, run, model version, deployment, ...), stored as
  its JSON and rebuilt from ``dlplatform.metadata.records``, i.e. a reference, not the data;
- ``pickle``: anything else. The artifact store addresses objects by their sha256, which is kept
  in the step's metadata, and verifies it on every read, so a pickle is never loaded unless its
  bytes are exactly those the step wrote.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from dlplatform.errors import IntegrityError, InvalidInput
from dlplatform.metadata import records
from dlplatform.metadata.artifacts import ArtifactStore

_RECORDS_MODULE = records.__name__


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if type(value) is list:
        return all(_is_json(v, depth + 1) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def encode(value: Any) -> tuple[str, bytes, dict[str, Any]]:
    """(format, bytes, extra description) of a step output.

    Raises:
        InvalidInput: the value cannot be pickled either.
    """
    if isinstance(value, pa.Table):
        sink = io.BytesIO()
        pq.write_table(value, sink)
        return "parquet", sink.getvalue(), {"rows": value.num_rows}
    if _is_json(value):
        return "json", json.dumps(value, separators=(",", ":")).encode(), {}
    if isinstance(value, BaseModel) and type(value).__module__ == _RECORDS_MODULE:
        return "record", value.model_dump_json().encode(), {"type": type(value).__name__}
    try:
        data = pickle.dumps(value, protocol=5)
    except Exception as exc:
        raise InvalidInput(
            f"step output of type {type(value).__name__} cannot be persisted: {exc}"
        ) from exc
    return "pickle", data, {"type": f"{type(value).__module__}.{type(value).__qualname__}"}


def persist_output(artifacts: ArtifactStore, value: Any) -> dict[str, Any]:
    """Store a step output; returns its ``output_ref`` (format, sha256, size_bytes, ...)."""
    fmt, data, extra = encode(value)
    ref = artifacts.put_bytes(data)
    return {"format": fmt, "sha256": ref.sha256, "size_bytes": ref.size_bytes, **extra}


def load_output(artifacts: ArtifactStore, output_ref: dict[str, Any] | str) -> Any:
    """Load a persisted step output (its bytes are verified against the recorded sha256).

    Raises:
        IntegrityError: the stored bytes do not match the recorded hash.
        NotFound: the object is gone.
        InvalidInput: the reference is malformed.
    """
    ref = json.loads(output_ref) if isinstance(output_ref, str) else output_ref
    if not isinstance(ref, dict) or "sha256" not in ref or "format" not in ref:
        raise InvalidInput("malformed step output reference")
    data = artifacts.get_bytes(str(ref["sha256"]))  # verifies sha256 before returning bytes
    fmt = ref["format"]
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data))
    if fmt == "json":
        return json.loads(data)
    if fmt == "record":
        cls = getattr(records, str(ref.get("type", "")), None)
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise InvalidInput(f"unknown record type {ref.get('type')!r} in step output")
        return cls.model_validate_json(data)
    if fmt == "pickle":
        return pickle.loads(data)
    raise IntegrityError(f"unknown step output format {fmt!r}")


def entity_of(value: Any) -> str | None:
    """The lineage entity (``kind:id``) a step output refers to, if it is such a record."""
    if isinstance(value, records.Run):
        return f"run:{value.id}"
    if isinstance(value, records.ModelVersion):
        return f"model_version:{value.model}@{value.version}"
    if isinstance(value, records.Deployment):
        return f"deployment:{value.name}"
    if isinstance(value, records.Commit):
        return f"commit:{value.id}"
    if isinstance(value, records.Dataset):
        return f"dataset:{value.name}"
    return None


def entities_in(value: Any) -> list[str]:
    """Lineage entities in an output: the value itself, or the items of a list/tuple/dict."""
    items: list[Any] = [value]
    if isinstance(value, list | tuple):
        items = list(value)
    elif isinstance(value, dict):
        items = list(value.values())
    found = [e for e in (entity_of(v) for v in items) if e is not None]
    return list(dict.fromkeys(found))
