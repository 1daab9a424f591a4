"""``ray up`` cluster launcher configs, validated offline: Ray's own ``prepare_config`` +
``validate_config`` (the steps ``ray up`` runs before it touches a cloud), then the platform's
rules (the head starts the platform, token auth, shared object storage, documented worker
bounds, images tagged with the Ray version)."""

from __future__ import annotations

import contextlib
import re
import sys
from importlib.metadata import version
from typing import Any

from dlplatform import _ray_internals as ray_internals
from dlplatform.errors import InvalidInput

SHARED_SCHEMES = ("s3://", "gs://")
_ENV_ASSIGN = re.compile(r"(?:^|[\s;])([A-Z_][A-Z0-9_]*)=(\S+)")


def installed_ray_version() -> str:
    return version("ray")


def _env_assignments(command: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _ENV_ASSIGN.finditer(command)}


def _image_tag(image: str) -> str | None:
    ref = image.split("@", 1)[0]
    name = ref.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def tag_matches(image: str, ray_version: str) -> bool:
    tag = _image_tag(image)
    return tag is not None and (tag == ray_version or tag.startswith(f"{ray_version}-"))


def validate_ray_up_config(config: dict[str, Any], *, name: str = "config") -> dict[str, Any]:
    """Validate a ``ray up`` config offline; returns the config as ``ray up`` would use it.

    Raises:
        InvalidInput: Ray's own validation or a platform rule failed.
    """
    if not isinstance(config, dict):
        raise InvalidInput(f"{name}: a cluster config must be a mapping")
    provider = config.get("provider")
    if isinstance(provider, dict) and provider.get("type") == "external":
        # Ray would import provider.module to use it; validation never imports what a file names
        raise InvalidInput(
            f"{name}: provider type 'external' names a module to import "
            f"({provider.get('module')!r}); it cannot be validated offline"
        )
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Ray's cli_logger prints progress on stdout
            prepared = ray_internals.ray_up_config(config)
    except Exception as exc:  # Ray raises schema, value, type, click and provider errors
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise InvalidInput(f"{name}: Ray rejects the cluster config: {message}") from exc
    problems = _ray_up_platform_problems(config, prepared)
    if problems:
        raise InvalidInput(f"{name}: " + "; ".join(problems))
    return prepared


def _ray_up_platform_problems(raw: dict[str, Any], prepared: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    if "cluster_name" not in raw:
        problems.append("cluster_name is missing (Ray would call the cluster 'default')")
    head_cmds = [str(c) for c in prepared.get("head_start_ray_commands", [])]
    worker_cmds = [str(c) for c in prepared.get("worker_start_ray_commands", [])]
    head_start = next(
        (i for i, c in enumerate(head_cmds) if "ray start" in c and "--head" in c), None
    )
    if head_start is None:
        problems.append("head_start_ray_commands has no `ray start --head`")
    else:
        platform = [c for c in head_cmds[head_start + 1 :] if re.search(r"\bdlp up\b", c)]
        if not platform:
            problems.append(
                "head_start_ray_commands must start the platform (`dlp up --address auto`) "
                "after `ray start --head`"
            )
        elif not any(re.search(r"--address[= ]auto\b", c) for c in platform):
            problems.append("`dlp up` on the head must join the cluster: `dlp up --address auto`")
    ray_starts = [c for c in head_cmds + worker_cmds if "ray start" in c]
    if not any("--address" in c for c in worker_cmds if "ray start" in c):
        problems.append("worker_start_ray_commands has no `ray start --address=...`")
    roots: set[str] = set()
    for cmd in ray_starts + [c for c in head_cmds if "dlp up" in c]:
        env = _env_assignments(cmd)
        if "ray start" in cmd and env.get("RAY_AUTH_MODE") != "token":
            problems.append(
                f"RAY_AUTH_MODE=token is missing on `{cmd[:60]}...` (token auth stays on)"
            )
        root = env.get("DLP_ARTIFACT_ROOT")
        if root is None:
            problems.append(f"DLP_ARTIFACT_ROOT is not set on `{cmd[:60]}...`")
        elif not root.startswith(SHARED_SCHEMES):
            problems.append(f"DLP_ARTIFACT_ROOT={root} is not shared object storage (s3://, gs://)")
        else:
            roots.add(root)
    if len(roots) > 1:
        problems.append(f"nodes disagree on the artifact root: {sorted(roots)}")
    for mount in raw.get("file_mounts") or {}:
        if "token" not in str(mount):
            continue
        owner_only = re.compile(rf"\bchmod\s+(?:0?600|go-rwx)\s+{re.escape(str(mount))}(?:\s|$)")
        for key in ("head_setup_commands", "worker_setup_commands"):
            if not any(owner_only.search(str(c)) for c in prepared.get(key) or []):
                problems.append(
                    f"{key} must make the token file owner-only (`chmod 600 {mount}`): rsync "
                    "copies it with its local mode, and other users on a node could read it"
                )
    if prepared.get("provider", {}).get("type") == "local":
        for key in ("min_workers", "max_workers"):
            if key not in raw:
                problems.append(f"{key} is not documented (set it explicitly)")
    else:
        head_type = prepared.get("head_node_type")
        for node_type, spec in raw.get("available_node_types", {}).items():
            if node_type == head_type:
                continue
            if "min_workers" not in spec or "max_workers" not in spec:
                problems.append(f"node type {node_type!r} must set min_workers and max_workers")
            elif spec["min_workers"] > spec["max_workers"]:
                problems.append(
                    f"node type {node_type!r}: min_workers {spec['min_workers']} > "
                    f"max_workers {spec['max_workers']}"
                )
    ray_version = installed_ray_version()
    docker = raw.get("docker") or {}
    images = [docker.get(k) for k in ("image", "head_image", "worker_image")]
    images += [
        (spec.get("docker") or {}).get("worker_image")
        for spec in raw.get("available_node_types", {}).values()
    ]
    for image in filter(None, images):
        if not tag_matches(str(image), ray_version):
            problems.append(f"image {image} must be tagged with the Ray version {ray_version}")
    return problems
