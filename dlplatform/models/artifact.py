"""A model version's artifact: written once by training, loaded safely by serving and clients.

A version's artifact is a directory in the artifact store (content-addressed, verified on read)::

    weights.pt     the torch state dict, saved with torch.save, loaded with weights_only=True
    model.json     {"format", "model_config", "signature", "builder", "code_version"}

Loading never unpickles arbitrary objects, and the artifact store refuses any file whose bytes
no longer match their hash (``IntegrityError``). A user-code ``builder`` (the run's
``model_factory``) is imported only where the model is built: a model replica, a job, or a
client that is told to trust it; ``verify_version`` (the gateway's deploy check) never imports it.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from dlplatform.context import Backend
from dlplatform.errors import IntegrityError, InvalidInput
from dlplatform.metadata import ArtifactRecord, ModelVersion, Run
from dlplatform.metadata.records import utcnow
from dlplatform.models import builtin
from dlplatform.models.registry import resolve_version
from dlplatform.models.spec import ModelSignature, is_code_path

FORMAT = "dlplatform.model/1"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "model.json"
# The tag model.json records for a built-in model: stored in every version written so far, so it
# keeps the old module path; it is compared, never imported (builtin.build_model builds it).
BUILTIN_BUILDER = "dlplatform.train.models:build_model"


def register_version(
    backend: Backend,
    *,
    run: Run,
    model_name: str,
    state_dict_path: Path,
    model_config: dict[str, Any],
    signature: ModelSignature,
    builder: str | None,
    metrics: dict[str, float],
    params: dict[str, Any],
    dataset_commit: str | None,
    dataset_version_hash: str | None,
    code_version: str | None,
) -> ModelVersion:
    """Store the weights + config as one artifact and register the next version of ``model_name``.

    The lineage edge ``run:<id>`` → ``model_version:<name>@<v>`` is written in the same
    transaction as the version.
    """
    state = torch.load(state_dict_path, map_location="cpu", weights_only=True)
    with tempfile.TemporaryDirectory(prefix="dlp-model-") as tmp:
        torch.save(state, Path(tmp, WEIGHTS_FILE))
        config = {
            "format": FORMAT,
            "model_config": model_config,
            "signature": signature.model_dump(mode="json"),
            "builder": builder,
            "code_version": code_version,
        }
        Path(tmp, CONFIG_FILE).write_text(json.dumps(config, sort_keys=True, indent=1))
        ref = backend.artifacts.put_dir(tmp)
    backend.store.record_artifact(
        ArtifactRecord(
            sha256=ref.sha256,
            size_bytes=ref.size_bytes,
            kind="dir",
            purpose="model",
            created_at=utcnow(),
        )
    )
    version = ModelVersion(
        model=model_name,
        version=0,
        run_id=run.id,
        artifact_sha256=ref.sha256,
        signature_json=signature.model_dump_json(),
        config_json=json.dumps({**config, "artifact_kind": "dir"}, sort_keys=True),
        metrics_json=json.dumps(metrics, sort_keys=True),
        params_json=json.dumps(params, sort_keys=True, default=str),
        dataset_commit=dataset_commit,
        dataset_version_hash=dataset_version_hash,
        code_version=code_version,
        created_at=utcnow(),
    )
    return backend.store.add_model_version(
        version, owner=run.owner, edges_to=[(f"run:{run.id}", "produced")]
    )


# --- loading ---------------------------------------------------------------------------------


def _import_builder(ref: str) -> Any:
    """The user-code builder at ``ref`` (runs its module's code: model replicas and jobs only)."""
    module_name, _, fn_name = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInput(f"cannot import the model builder {ref!r}: {exc}") from exc
    return fn


def load_model(
    backend: Backend, model: str, version_or_alias: str | int | None = None
) -> tuple[torch.nn.Module, ModelSignature]:
    """The registered network (eval mode, CPU) and its input signature.

    Every file is verified against its hash before use, and weights are read with
    ``torch.load(weights_only=True)``: no arbitrary object is ever unpickled.

    Raises:
        NotFound: no such model/version/alias.
        IntegrityError: the stored artifact does not match its hash.
        InvalidInput: a user-code model without a ``model_factory``.
    """
    version = resolve_version(backend, model, version_or_alias)
    config, state = _read_files(backend, version)
    return model_from_files(config, state, f"{model}@{version.version}")


def verify_version(
    backend: Backend, model: str, version_or_alias: str | int | None = None
) -> ModelVersion:
    """Check that a version can be served without running any of its code (the deploy check in
    the gateway): every file matches its hash, ``model.json`` has our format and a builder, the
    weights are a plain state dict. A built-in model is also built with its weights; a user-code
    builder is checked for its form ``module:function`` only, never imported here.

    Raises:
        NotFound: no such model/version/alias.
        IntegrityError: the stored artifact does not match its hash, or an unknown format.
        InvalidInput: a user-code model without a ``model_factory`` (it cannot be rebuilt).
    """
    version = resolve_version(backend, model, version_or_alias)
    config, state = _read_files(backend, version)
    label = f"{model}@{version.version}"
    if _builder_of(config, label) == BUILTIN_BUILDER:
        model_from_files(config, state, label, allow_code=False)
    return version


def _read_files(backend: Backend, version: ModelVersion) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``model.json``, the state dict) of ``version``, each file verified against its hash."""
    tmp = Path(tempfile.mkdtemp(prefix="dlp-load-"))
    try:
        dest = backend.artifacts.get_dir(version.artifact_sha256, tmp / "model")
        config = json.loads((dest / CONFIG_FILE).read_text())
        state = torch.load(dest / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return config, state


def _builder_of(config: dict[str, Any], label: str) -> str:
    """The builder ``model.json`` names, checked for its form only.

    Raises:
        IntegrityError: an unknown format, or a builder that is no ``module:function``.
        InvalidInput: a user-code model without a ``model_factory``.
    """
    if config.get("format") != FORMAT:
        raise IntegrityError(f"model {label} has an unknown format")
    builder = config.get("builder")
    if builder is None:
        raise InvalidInput(
            f"model {label} came from user code without a model_factory; it cannot be rebuilt"
        )
    if not isinstance(builder, str) or not (builder == BUILTIN_BUILDER or is_code_path(builder)):
        raise IntegrityError(f"model {label} names a malformed builder {str(builder)[:80]!r}")
    return builder


def model_from_files(
    config: dict[str, Any], state: dict[str, Any], label: str, *, allow_code: bool = True
) -> tuple[torch.nn.Module, ModelSignature]:
    """The network described by a model's ``model.json`` with its weights (eval mode).

    Args:
        allow_code: whether a user-code ``model_factory`` may be imported to build it (a client
            loading someone else's model over HTTP passes False unless told to trust it).

    Raises:
        IntegrityError: an unknown format.
        InvalidInput: a user-code model without a ``model_factory``, or one not allowed here.
    """
    builder = _builder_of(config, label)
    signature = ModelSignature.model_validate(config["signature"])
    if builder != BUILTIN_BUILDER and not allow_code:
        raise InvalidInput(
            f"model {label} is built by user code ({builder}); loading it runs that code here: "
            "pass allow_code=True if you trust it"
        )
    build = builtin.build_model if builder == BUILTIN_BUILDER else _import_builder(builder)
    module: torch.nn.Module = build(config["model_config"])
    module.load_state_dict(state)
    module.eval()
    return module, signature
