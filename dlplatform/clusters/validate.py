"""Validate one cluster file or object: core Kubernetes objects (``kubernetes-validate``,
strict), a kustomization, and ``validate_file``, which sends each file to its validator
(``ray_up``, ``kuberay``, core) and the security rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate

from dlplatform.clusters import security
from dlplatform.clusters.kuberay import (
    CRD_FILES,
    DNS_1123_LABEL,
    drop_nulls,
    error_path,
    object_name,
    platform_manifest_problems,
    validate_kuberay_object,
)
from dlplatform.clusters.ray_up import validate_ray_up_config
from dlplatform.clusters.templates import KUBERNETES_VERSION, TEMPLATE_IMAGE, load_documents
from dlplatform.errors import InvalidInput


def validate_core_object(obj: dict[str, Any], *, k8s_version: str = KUBERNETES_VERSION) -> None:
    """Validate a core Kubernetes object (Deployment, Service, PVC, ...) strictly, offline.

    Raises:
        InvalidInput: unknown kind, a schema violation or an unknown field.
    """

    obj = drop_nulls(obj)
    name = object_name(obj)
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise InvalidInput(f"{name}: {error_path(exc.absolute_path)}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise InvalidInput(f"{name}: no Kubernetes {k8s_version} schema for this kind") from exc
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"{name}: apiVersion and kind are required") from exc
    meta_name = (obj.get("metadata") or {}).get("name")
    if not isinstance(meta_name, str) or not meta_name:
        raise InvalidInput(f"{name}: metadata.name is required")


def validate_manifest(obj: dict[str, Any], *, schema_dir: Path | None = None) -> None:
    """Validate one Kubernetes object: KubeRay kinds by CRD, everything else as a core object."""
    if obj.get("kind") in CRD_FILES:
        validate_kuberay_object(obj, schema_dir=schema_dir)
    else:
        validate_core_object(obj)


def validate_kustomization(obj: dict[str, Any], folder: Path) -> None:
    """Check a kustomization: known keys, resources that exist, the placeholder image name.

    Raises:
        InvalidInput: the first problem found.
    """
    allowed = {"apiVersion", "kind", "namespace", "resources", "images", "labels", "commonLabels"}
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise InvalidInput(f"kustomization: unknown keys {unknown}")
    if obj.get("kind") != "Kustomization":
        raise InvalidInput("kustomization: kind must be Kustomization")
    ns = obj.get("namespace")
    if ns is not None and not (isinstance(ns, str) and DNS_1123_LABEL.match(ns)):
        raise InvalidInput(f"kustomization: namespace {ns!r} is not a DNS-1123 label")
    for resource in obj.get("resources") or []:
        if not isinstance(resource, str) or "/" in resource or not (folder / resource).is_file():
            raise InvalidInput(
                f"kustomization: resource {resource!r} is not a file of {folder.name}/"
            )
    for image in obj.get("images") or []:
        if image.get("name") != TEMPLATE_IMAGE.split(":")[0]:
            raise InvalidInput(
                f"kustomization: image {image.get('name')!r} does not name the manifests' image "
                f"{TEMPLATE_IMAGE.split(':')[0]!r}"
            )
    docs = [d for r in obj.get("resources") or [] for d in load_documents(folder / r)]
    problems = security.deployment_problems(docs)
    if problems:
        raise InvalidInput("kustomization: " + "; ".join(problems))


def validate_file(
    path: Path, *, schema_dir: Path | None = None, resources_dir: Path | None = None
) -> None:
    """Validate one cluster file: a ``ray up`` config, a kustomization or Kubernetes manifests.

    Args:
        resources_dir: where a kustomization's resources are (default: the file's folder).

    Raises:
        InvalidInput: the first failing file/object, with the reasons.
    """
    docs = load_documents(path)
    if not docs:
        raise InvalidInput(f"{path.name}: the file holds no objects")
    if len(docs) == 1 and "provider" in docs[0] and "kind" not in docs[0]:
        validate_ray_up_config(docs[0], name=path.name)
        return
    if len(docs) == 1 and docs[0].get("kind") == "Kustomization":
        validate_kustomization(docs[0], resources_dir or path.parent)
        return
    for doc in docs:
        try:
            validate_manifest(doc, schema_dir=schema_dir)
        except InvalidInput as exc:
            raise InvalidInput(f"{path.name}: {exc.message}") from exc
    problems = platform_manifest_problems(docs)
    if problems:
        raise InvalidInput(f"{path.name}: " + "; ".join(problems))
