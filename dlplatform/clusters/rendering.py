"""Render the KubeRay manifests of one deployment from the templates: image, namespace, worker
groups, the gateway's host, one lab per user, a team's RayJob; every rendered file is validated
before it is returned."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from dlplatform.clusters import security
from dlplatform.clusters.kuberay import (
    DNS_1035,
    DNS_1123_LABEL,
    DNS_1123_SUBDOMAIN,
    LABEL_VALUE,
    NAME_LIMITS,
    platform_manifest_problems,
)
from dlplatform.clusters.ray_up import installed_ray_version, tag_matches
from dlplatform.clusters.templates import (
    CPU_GROUP,
    CPU_ONLY_ANNOTATION,
    GPU_GROUP,
    GPU_NODE_LABEL,
    JOB_TEAM_TEMPLATE,
    LAB_USER_TEMPLATE,
    RENDERED_FILES,
    TEMPLATE_GATEWAY_HOST,
    TEMPLATE_GPU_IMAGE,
    TEMPLATE_GPU_TYPE,
    TEMPLATE_IMAGE,
    TEMPLATE_NAMESPACE,
    TEMPLATE_OPERATOR_NAMESPACE,
    clusters_dir,
    load_documents,
)
from dlplatform.clusters.validate import validate_kustomization, validate_manifest
from dlplatform.errors import InvalidInput, NotFound


def lab_secret(lab_user: str) -> str:
    """The name of ``lab_user``'s lab: its Secret (keys ``token``, ``jupyter_token``),
    Deployment, Service, claim and NetworkPolicy are all ``dlp-lab-<lab_user>``.

    Raises:
        InvalidInput: ``lab_user`` cannot be part of those names.
    """
    name = security.lab_secret(lab_user)
    if not lab_user or len(name) > 63 or not DNS_1035.match(name):
        raise InvalidInput(
            f"--lab-user {lab_user!r} cannot name the lab {name!r} (lowercase letters, digits and "
            "'-', at most 55 characters; a platform user name with '_' needs another --lab-user)"
        )
    return name


def job_token_secret(team: str) -> str:
    """The Secret a team's RayJob reads ``DLP_TOKEN`` from (key ``token``), in its namespace.

    Raises:
        InvalidInput: ``team`` cannot name the RayJob ``dlp-job-<team>`` (at most 47 characters).
    """
    if not team or len(f"dlp-job-{team}") > NAME_LIMITS["RayJob"] or not DNS_1123_LABEL.match(team):
        raise InvalidInput(
            f"--job-team {team!r} cannot name the RayJob dlp-job-{team} (lowercase letters, "
            "digits and '-', at most 39 characters)"
        )
    return f"{security.JOB_TOKEN_PREFIX}{team}"


def _check_render_args(
    image: str, namespace: str, cpu_workers: int, gpu_workers: int, gpu_type: str
) -> None:
    ray_version = installed_ray_version()
    if not image or any(c.isspace() for c in image):
        raise InvalidInput(f"--image {image!r} is not an image reference")
    if not tag_matches(image, ray_version):
        raise InvalidInput(
            f"--image {image} must be tagged with the Ray version: {ray_version} or "
            f"{ray_version}-<suffix> (KubeRay checks rayVersion against it)"
        )
    if not DNS_1123_LABEL.match(namespace) or len(namespace) > 63:
        raise InvalidInput(f"--namespace {namespace!r} is not a DNS-1123 label")
    for flag, value in (("--cpu-workers", cpu_workers), ("--gpu-workers", gpu_workers)):
        if not 0 <= value <= 1000:
            raise InvalidInput(f"{flag} must be between 0 and 1000, not {value}")
    if not gpu_type or len(gpu_type) > 63 or not LABEL_VALUE.match(gpu_type):
        raise InvalidInput(f"--gpu-type {gpu_type!r} is not a Kubernetes label value")


def _replace_strings(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_replace_strings(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace_strings(v, old, new) for k, v in value.items()}
    return value


def _iter_containers(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        for key, child in value.items():
            if key in ("containers", "initContainers") and isinstance(child, list):
                yield from (c for c in child if isinstance(c, dict))
            else:
                yield from _iter_containers(child)
    elif isinstance(value, list):
        for child in value:
            yield from _iter_containers(child)


def _scale_groups(cluster: dict[str, Any], cpu: int, gpu: int, gpu_type: str) -> None:
    groups = []
    for group in cluster.get("workerGroupSpecs") or []:
        name = group.get("groupName")
        if name == GPU_GROUP and gpu == 0:
            continue  # a CPU-only cluster has no GPU group at all
        limit = {CPU_GROUP: cpu, GPU_GROUP: gpu}.get(name)
        if limit is not None:
            group["maxReplicas"] = limit
            group["minReplicas"] = min(group.get("minReplicas", 0), limit)
            group["replicas"] = min(group.get("replicas", group["minReplicas"]), limit)
        if name == GPU_GROUP:
            spec = group.setdefault("template", {}).setdefault("spec", {})
            spec.setdefault("nodeSelector", {})[GPU_NODE_LABEL] = gpu_type
        groups.append(group)
    cluster["workerGroupSpecs"] = groups


def _replace_values(value: Any, old: str, new: str, *, key: str | None = None) -> Any:
    """``value`` with every string equal to ``old`` (under ``key``, when given) set to ``new``."""
    if isinstance(value, list):
        return [_replace_values(v, old, new, key=key) for v in value]
    if isinstance(value, dict):
        return {
            k: new
            if v == old and (key is None or k == key)
            else _replace_values(v, old, new, key=key)
            for k, v in value.items()
        }
    return value


def _lab_docs(docs: list[dict[str, Any]], lab_users: Sequence[str]) -> list[dict[str, Any]]:
    """The lab template's objects once per user, named and labelled for that user."""
    template = security.lab_secret(LAB_USER_TEMPLATE)
    out = []
    for user in lab_users:
        for doc in docs:
            doc = _replace_strings(doc, template, lab_secret(user))
            out.append(_replace_values(doc, LAB_USER_TEMPLATE, user, key=security.LAB_USER_LABEL))
    return out


def _job_doc(doc: dict[str, Any], team: str) -> dict[str, Any]:
    """The RayJob template's object for ``team``."""
    t = JOB_TEAM_TEMPLATE
    for old, new in (
        (f"{security.JOB_TOKEN_PREFIX}{t}", job_token_secret(team)),
        (f"{security.JOB_STORE_PREFIX}{t}", f"{security.JOB_STORE_PREFIX}{team}"),
        (f"dlp-job-{t}", f"dlp-job-{team}"),
        (f"dlp-team-{t}", f"dlp-team-{team}"),  # the team's bucket in working_dir
    ):
        doc = _replace_strings(doc, old, new)
    return _replace_values(doc, t, team, key=security.TEAM_LABEL)


def render(
    image: str,
    namespace: str,
    cpu_workers: int = 8,
    gpu_workers: int = 4,
    gpu_type: str = TEMPLATE_GPU_TYPE,
    *,
    gpu_image: str | None = None,
    lab_users: Sequence[str] = (LAB_USER_TEMPLATE,),
    gateway_host: str = TEMPLATE_GATEWAY_HOST,
    operator_namespace: str = TEMPLATE_OPERATOR_NAMESPACE,
    job_team: str = JOB_TEAM_TEMPLATE,
    job_namespace: str | None = None,
    source: Path | None = None,
) -> dict[str, str]:
    """The KubeRay manifests for one deployment, as ``{file name: YAML text}``, validated.

    Args:
        image: the platform image (its tag starts with the Ray version, e.g.
            ``reg/dlplatform:2.60.0``).
        namespace: the Kubernetes namespace of the platform's objects and service DNS names.
        cpu_workers: the most CPU worker pods the autoscaler may start.
        gpu_workers: the most GPU worker pods (0 drops the GPU group).
        gpu_type: the GPU model, matched against the node label ``nvidia.com/gpu.product``.
        gpu_image: the GPU workers' image; default ``image`` with ``-gpu`` added to its tag.
        lab_users: one lab per user: ``dlp-lab-<user>`` (Deployment, Service, claim,
            NetworkPolicy), reading the Secret ``dlp-lab-<user>`` that the operator creates.
        gateway_host: the gateway's public host name: the Ingress's host and TLS name, and one
            of the gateway's allowed hosts.
        operator_namespace: where the KubeRay operator runs (its pods may reach the dashboard).
        job_team: the team of ``rayjob.yaml``: RayJob ``dlp-job-<team>``, Secrets
            ``dlp-job-token-<team>`` and ``dlp-job-store-<team>``.
        job_namespace: the team's namespace (default ``dlp-team-<team>``), never the platform's.
        source: the templates folder; default the repository's ``clusters/kuberay``.

    Raises:
        InvalidInput: a bad argument, or a rendered object that fails validation.
        NotFound: the templates are not there.
    """
    _check_render_args(image, namespace, cpu_workers, gpu_workers, gpu_type)
    if not lab_users or len(set(lab_users)) != len(lab_users):
        raise InvalidInput(f"--lab-user: give each user once, not {list(lab_users)}")
    for user in lab_users:
        lab_secret(user)
    job_token_secret(job_team)
    job_namespace = job_namespace or f"dlp-team-{job_team}"
    if not DNS_1123_LABEL.match(job_namespace) or len(job_namespace) > 63:
        raise InvalidInput(f"--job-namespace {job_namespace!r} is not a DNS-1123 label")
    if job_namespace == namespace:
        raise InvalidInput(
            f"--job-namespace {job_namespace} is the platform's namespace: a pod there can mount "
            "the platform's Secrets (its Ray token, object-store keys); give the team its own"
        )
    if not DNS_1123_LABEL.match(operator_namespace) or len(operator_namespace) > 63:
        raise InvalidInput(f"--operator-namespace {operator_namespace!r} is not a DNS-1123 label")
    if (
        len(gateway_host) > 253
        or "." not in gateway_host
        or not DNS_1123_SUBDOMAIN.match(gateway_host)
    ):
        raise InvalidInput(
            f"--gateway-host {gateway_host!r} is not a DNS name (e.g. dlp.example.com)"
        )
    if gpu_image is None:
        if "@" in image:
            raise InvalidInput("--image has a digest; name the GPU image with --gpu-image")
        gpu_image = f"{image}-gpu"
    elif not tag_matches(gpu_image, installed_ray_version()):
        raise InvalidInput(f"--gpu-image {gpu_image} must be tagged with the Ray version")
    folder = source or clusters_dir() / "kuberay"
    header = (
        f"# Rendered by `dlp k8s render --image {image} --namespace {namespace} "
        f"--cpu-workers {cpu_workers} --gpu-workers {gpu_workers} --gpu-type {gpu_type} "
        + "".join(f"--lab-user {u} " for u in lab_users)
        + f"--gateway-host {gateway_host} --operator-namespace {operator_namespace} "
        f"--job-team {job_team} --job-namespace {job_namespace}`\n"
    )
    out: dict[str, str] = {}
    for file_name in RENDERED_FILES:
        path = folder / file_name
        if not path.is_file():
            raise NotFound(f"template {path} is missing")
        docs = load_documents(path)
        if file_name == "lab.yaml":
            docs = _lab_docs(docs, lab_users)
        elif file_name == "rayjob.yaml":
            docs = [_job_doc(doc, job_team) for doc in docs]
        rendered = []
        for doc in docs:
            doc = _replace_strings(doc, f".{TEMPLATE_NAMESPACE}.svc", f".{namespace}.svc")
            doc = _replace_strings(doc, TEMPLATE_GATEWAY_HOST, gateway_host)
            doc = _replace_values(doc, TEMPLATE_OPERATOR_NAMESPACE, operator_namespace)
            if doc.get("kind") == "Kustomization":
                doc["namespace"] = namespace
                doc.pop("images", None)  # the image is already in the rendered files
            else:
                doc.setdefault("metadata", {})["namespace"] = (
                    job_namespace if file_name == "rayjob.yaml" else namespace
                )
            for container in _iter_containers(doc):
                if container.get("image") == TEMPLATE_IMAGE:
                    container["image"] = image
                elif container.get("image") == TEMPLATE_GPU_IMAGE:
                    container["image"] = gpu_image
            spec = doc.get("spec") or {}
            # the platform's cluster; a team's RayJob sizes its own cluster per job
            for cluster in (spec if doc.get("kind") == "RayCluster" else None,
                            spec.get("rayClusterConfig")):  # fmt: skip
                if isinstance(cluster, dict):
                    _scale_groups(cluster, cpu_workers, gpu_workers, gpu_type)
                    if gpu_workers == 0:
                        annotations = doc["metadata"].setdefault("annotations", {})
                        annotations[CPU_ONLY_ANNOTATION] = "true"
            rendered.append(doc)
        out[file_name] = header + yaml.safe_dump_all(rendered, sort_keys=False, width=100)
    _validate_rendered(out)
    return out


def _validate_rendered(files: dict[str, str]) -> None:

    with tempfile.TemporaryDirectory(prefix="dlp-render-") as tmp:
        for file_name, text in files.items():
            (Path(tmp) / file_name).write_text(text)
        for file_name in files:
            path = Path(tmp) / file_name
            if file_name == "kustomization.yaml":
                validate_kustomization(load_documents(path)[0], Path(tmp))
                continue
            docs = load_documents(path)
            for doc in docs:
                validate_manifest(doc)
            problems = platform_manifest_problems(docs)
            if problems:
                raise InvalidInput(f"rendered {file_name}: " + "; ".join(problems))
