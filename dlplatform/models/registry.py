"""The model registry: immutable model versions, movable aliases, and their files.

Versions are found by number, alias or ``latest`` (``resolve_version``); aliases move with a
history (``promote``); a version's files are read hash-verified and every download is audited.
Writing and loading a version's artifact is ``dlplatform.models.artifact`` (it loads torch; this
module does not).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.context import Backend
from dlplatform.errors import NotFound
from dlplatform.metadata import AliasEvent, ModelSummary, ModelVersion
from dlplatform.metadata.records import ArtifactFile


def parse_model_ref(ref: str) -> tuple[str, str | None]:
    """``"name@3"``/``"name@production"``/``"name"`` → (name, version-or-alias or None)."""
    name, sep, rest = ref.partition("@")
    return name, (rest if sep else None)


def resolve_version(
    backend: Backend, model: str, version_or_alias: str | int | None
) -> ModelVersion:
    """A version by number, by alias, or the latest one when None.

    Raises:
        NotFound: no such model, version or alias.
    """
    store = backend.store
    if version_or_alias is None or version_or_alias == "latest":
        versions = store.list_model_versions(model)
        if not versions:
            raise NotFound(f"model {model!r} has no versions")
        return versions[0]
    if isinstance(version_or_alias, int) or str(version_or_alias).isdigit():
        return store.get_model_version(model, int(version_or_alias))
    return store.get_model_version(model, store.resolve_alias(model, str(version_or_alias)))


def list_models(backend: Backend, principal: Principal) -> list[ModelSummary]:
    """Every model by name, with the number of its newest version."""
    authorize(backend.store, principal, Permission.MODEL_VIEW, "models")
    return backend.store.list_models()


def list_versions(backend: Backend, principal: Principal, model: str) -> list[ModelVersion]:
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"model:{model}")
    return backend.store.list_model_versions(model)


def get_version(
    backend: Backend, principal: Principal, model: str, version_or_alias: str | int | None = None
) -> ModelVersion:
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"model:{model}")
    return resolve_version(backend, model, version_or_alias)


def promote(
    backend: Backend, principal: Principal, model: str, version: int | str, alias: str
) -> AliasEvent:
    """Point ``alias`` (e.g. ``production``) at a version; the move is kept in the alias history.

    Raises:
        NotFound: the model or version does not exist.
        InvalidInput: a bad alias (numbers are not aliases).
    """
    authorize(backend.store, principal, Permission.MODEL_PROMOTE, f"model:{model}")
    number = resolve_version(backend, model, version).version
    event = backend.store.set_alias(model, alias, number, by=principal.name)
    audit(
        backend.store,
        principal,
        "model.promote",
        f"model_version:{model}@{number}",
        f"alias={alias}",
    )
    return event


def alias_history(backend: Backend, principal: Principal, model: str) -> list[AliasEvent]:
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"model:{model}")
    return backend.store.alias_history(model)


# --- downloads -------------------------------------------------------------------------------


def read_model_object(
    backend: Backend, principal: Principal, model: str, version_or_alias: str | int, sha256: str
) -> bytes:
    """One stored object of a model version's artifact (its manifest, or a file it lists), its
    bytes verified against ``sha256``; the download is audited. The client checks the manifest
    against the version's ``artifact_sha256`` and each file against the manifest.

    Raises:
        NotFound: no such version, or ``sha256`` is not part of its artifact.
        PermissionDenied: the caller lacks ``model.view``.
    """
    target = f"model:{model}"
    authorize(backend.store, principal, Permission.MODEL_VIEW, target)
    version = resolve_version(backend, model, version_or_alias)
    manifest = json.loads(backend.artifacts.get_bytes(version.artifact_sha256))
    allowed = {version.artifact_sha256} | {str(e["sha256"]) for e in manifest.values()}
    if sha256 not in allowed:
        raise NotFound(f"{sha256[:16]} is not part of model {model}@{version.version}")
    data = backend.artifacts.get_bytes(sha256)
    audit(backend.store, principal, "model.download", f"{target}@{version.version}", sha256[:16])
    return data


def list_version_artifacts(
    backend: Backend, principal: Principal, model: str, version_or_alias: str | int | None
) -> list[ArtifactFile]:
    """The files of a version's weights-only artifact (``weights.pt``, ``model.json``), read
    from its manifest (verified against the version's ``artifact_sha256``).

    Raises:
        NotFound: no such model, version or alias.
        PermissionDenied: the caller lacks ``model.view``.
        IntegrityError: the stored manifest is damaged.
    """
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"model:{model}")
    version = resolve_version(backend, model, version_or_alias)
    files = backend.artifacts.read_manifest(version.artifact_sha256)
    return [
        ArtifactFile.of(path, ref.sha256, ref.size_bytes, version.created_at)
        for path, ref in sorted(files.items())
    ]


def open_version_artifact(
    backend: Backend, principal: Principal, model: str, version_or_alias: str | int, path: str
) -> tuple[ArtifactFile, Iterator[bytes]]:
    """One file of a version's artifact and its bytes, verified as they are read (a damaged
    file raises ``IntegrityError`` before its last chunk); the download is audited. ``path``
    must be one the manifest lists, exactly, so nothing outside the version is ever named.

    Raises:
        NotFound: no such version, or it has no file ``path``.
        PermissionDenied: the caller lacks ``model.view``.
    """
    target = f"model:{model}"
    authorize(backend.store, principal, Permission.MODEL_VIEW, target)
    version = resolve_version(backend, model, version_or_alias)
    ref = backend.artifacts.read_manifest(version.artifact_sha256).get(path)
    if ref is None:
        raise NotFound(f"model {model}@{version.version} has no file {path[:200]!r}")
    chunks = backend.artifacts.iter_verified(ref)
    audit(backend.store, principal, "model.download", f"{target}@{version.version}", path)
    return ArtifactFile.of(path, ref.sha256, ref.size_bytes, version.created_at), chunks
