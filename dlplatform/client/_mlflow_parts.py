"""What the MLflow importer makes of MLflow's things: keys, paths and names the platform takes,
requests of a size the gateway takes, and which files of a model version are a torch state dict
(``dlplatform.client.mlflow_import``)."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from dlplatform.models.spec import ModelSignature
from dlplatform.train.tracking import ModelLog

_CHUNK_ITEMS = 900  # params or tags per request: the gateway takes 1,000
_CHUNK_CHARS = 400_000  # ... and at most 1 MiB of JSON in all
_BAD_KEY_CHAR = re.compile(r"[^A-Za-z0-9_./-]")
_BAD_SEGMENT_CHAR = re.compile(r"[^A-Za-z0-9_.-]")
_BAD_NAME_CHAR = re.compile(r"[^a-z0-9._-]")
_STATE_DICT_SUFFIXES = (".pt", ".pth")


def chunks(values: dict[str, Any]) -> list[dict[str, Any]]:
    """``values`` in parts small enough for one request each (at least one part)."""
    parts: list[dict[str, Any]] = [{}]
    size = 0
    for key, value in values.items():
        n = len(key) + len(str(value)) + 8
        if parts[-1] and (len(parts[-1]) >= _CHUNK_ITEMS or size + n > _CHUNK_CHARS):
            parts.append({})
            size = 0
        parts[-1][key] = value
        size += n
    return parts


def state_dict_file(local: Path) -> tuple[Path | None, str]:
    """The torch state dict among a model version's files, or why there is none."""
    if local.is_file():
        local = local.parent
    mlmodel = local / "MLmodel"
    if mlmodel.is_file():
        flavors = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}) or {}
        return None, flavor_reason(flavors)
    files = [f for f in local.rglob("*") if f.is_file()]
    named = [f for f in files if f.name == "state_dict.pth"]
    candidates = named or [f for f in files if f.suffix in _STATE_DICT_SUFFIXES]
    if len(candidates) == 1:
        return candidates[0], ""
    if not candidates:
        return None, "no torch state dict file (state_dict.pth, *.pt, *.pth) among its files"
    shown = ", ".join(sorted(f.relative_to(local).as_posix() for f in candidates)[:5])
    return None, f"more than one candidate state dict ({shown})"


def flavor_reason(flavors: dict[str, Any]) -> str:
    """Why a model of these MLflow flavors (``MLmodel``'s ``flavors``) is not imported."""
    hint = ("the platform registers torch state dicts read weights-only: log one with "
            "mlflow.pytorch.log_state_dict and register that")  # fmt: skip
    torch_flavor = flavors.get("pytorch")
    if isinstance(torch_flavor, dict):
        if torch_flavor.get("serialization_format") == "pt2" or "model.pt2" in str(torch_flavor):
            return f"MLflow's pytorch flavor saved a torch.export program (pt2); {hint}"
        return f"MLflow's pytorch flavor pickled the whole module (data/model.pth); {hint}"
    names = ", ".join(n for n in flavors if n != "python_function") or "python_function"
    pickled = ", pickled" if any(_is_pickled(f) for f in flavors.values()) else ""
    return f"a {names} model{pickled}, not torch weights; {hint}"


def _is_pickled(flavor: Any) -> bool:
    if not isinstance(flavor, dict):
        return False
    return (str(flavor.get("serialization_format")) in ("pickle", "cloudpickle")
            or "cloudpickle_version" in flavor
            or str(flavor.get("pickled_model", "")).endswith(".pkl"))  # fmt: skip


def model_spec(name: str, tags: dict[str, str]) -> tuple[ModelLog, str]:
    """The registration of a version from its MLflow tags ``dlp.signature``, ``dlp.builder``,
    ``dlp.config``, and a note when it cannot be served.

    Raises:
        ValueError: a tag that does not parse (pydantic's ValidationError is one).
    """
    notes = []
    if "dlp.signature" in tags:
        signature = ModelSignature.model_validate_json(tags["dlp.signature"])
    else:
        signature = ModelSignature(kind="tabular", features=(), dtypes=(), input_shape=(),
                                   task="regression", label="")  # fmt: skip
        notes.append("no dlp.signature tag: registered with an empty signature")
    builder = tags.get("dlp.builder")
    if builder is None:
        notes.append("no dlp.builder tag: the weights are stored but cannot be served")
    config = json.loads(tags.get("dlp.config", "{}"))
    if not isinstance(config, dict):
        raise ValueError("tag dlp.config is not a JSON object")
    spec = ModelLog(name=name, weights="-", signature=signature, builder=builder, config=config)
    return spec, "; ".join(notes)


# --- names ------------------------------------------------------------------------------------


def clean_key(key: str) -> str:
    """A param, metric or tag key the platform takes: 1-128 of ``A-Z a-z 0-9 _ . / -``."""
    return _plain(key, _BAD_KEY_CHAR)


def clean_segment(name: str) -> str:
    """One artifact path segment the platform takes (never ``.`` or ``..``)."""
    return _plain(name, _BAD_SEGMENT_CHAR)


def _plain(value: str, bad: re.Pattern[str]) -> str:
    clean = bad.sub("_", value)
    if not clean or not (clean[0].isalnum() or clean[0] == "_"):
        clean = f"_{clean}"
    return clean[:128]


def model_name(name: str) -> str:
    """A registry name (``NAME_PATTERN``): lower case, other characters as ``-``."""
    clean = _BAD_NAME_CHAR.sub("-", name.lower())
    while ".." in clean:
        clean = clean.replace("..", ".")
    clean = clean.lstrip("._-")[:63]
    return clean or "mlflow-model"


def iso_time(ms: int | None) -> str:
    """MLflow's milliseconds since the epoch as ISO 8601 in UTC."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def json_float(value: float) -> float | str:
    """The wire form of a point's value: JSON has no NaN or infinity; the gateway reads these
    strings back as the floats."""
    value = float(value)
    if math.isfinite(value):
        return value
    return {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (MLflow's can span pages)."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
