"""Where the cluster templates are (the repository's ``clusters/`` folder) and what they
hold: the placeholder image, namespace, GPU type and names that ``render`` replaces; reading
their YAML documents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from dlplatform.errors import InvalidInput, NotFound

# What the templates in clusters/kuberay hold; `render` replaces them.
TEMPLATE_IMAGE = "dlplatform:2.60.0"
TEMPLATE_GPU_IMAGE = "dlplatform:2.60.0-gpu"
TEMPLATE_NAMESPACE = "dlplatform"
TEMPLATE_GPU_TYPE = "NVIDIA-A10G"
CPU_GROUP = "cpu"
GPU_GROUP = "gpu"
GPU_NODE_LABEL = "nvidia.com/gpu.product"
CPU_ONLY_ANNOTATION = "dlplatform.io/cpu-only"
"""Set to "true" by ``render --gpu-workers 0``: the cluster has no GPU group on purpose."""
LAB_USER_TEMPLATE = "default"
"""The lab user the template names; ``render --lab-user NAME`` (repeatable) replaces it."""
JOB_TEAM_TEMPLATE = "default"
"""The team of the RayJob template (namespace ``dlp-team-default``); ``render --job-team``."""
TEMPLATE_GATEWAY_HOST = "dlplatform.example.com"
TEMPLATE_OPERATOR_NAMESPACE = "ray-system"
KUBERAY_VERSION = "v1.7.0"
KUBERNETES_VERSION = "1.30"
RENDERED_FILES = (
    "pvc.yaml",
    "raycluster.yaml",
    "rayservice.yaml",
    "rayjob.yaml",
    "ingress.yaml",
    "lab.yaml",
    "kustomization.yaml",
)


# --- locating the templates ---------------------------------------------------------------------


def clusters_dir() -> Path:
    """The repository's ``clusters/`` folder (next to the ``dlplatform`` package).

    Raises:
        NotFound: the package is not installed from a checkout (``pip install -e .``).
    """
    path = Path(__file__).resolve().parents[2] / "clusters"
    if not (path / "kuberay").is_dir():
        raise NotFound(
            f"cluster templates not found at {path}; use a checkout of the repository "
            "(pip install -e .) or pass the templates folder explicitly"
        )
    return path


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The YAML documents of ``path`` (empty documents skipped).

    Raises:
        InvalidInput: the file is not YAML, or a document is not a mapping.
    """
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path.name}: not readable YAML: {exc}") from exc
    for doc in docs:
        if not isinstance(doc, dict):
            raise InvalidInput(f"{path.name}: every YAML document must be a mapping")
    return docs


def cluster_files(folder: Path) -> Iterator[Path]:
    """The YAML files under ``folder``, sorted."""
    yield from sorted(p for p in folder.rglob("*.yaml") if p.is_file())
