"""Cluster configs: render the KubeRay manifests for a deployment, and validate cluster files offline.

The templates live in the repository's ``clusters/`` folder (``ray-up/`` cluster launcher configs,
``kuberay/`` manifests, ``schemas/`` the KubeRay CRD schemas). Validation never talks to a cloud
or a Kubernetes API server:

- ``ray up`` configs go through Ray's own ``prepare_config`` + ``validate_config`` (and, for the
  local provider, ``_bootstrap_config``): the steps ``ray up`` runs before it touches a cloud. Then
  the platform's rules: the head starts the platform (``dlp up --address auto`` after
  ``ray start --head``), Ray token auth is on, the artifact root is shared object storage
  (``s3://``/``gs://``) and the same on every node, every worker type documents its min/max, and
  docker images carry the Ray version in their tag.
- KubeRay objects go through the CRD's OpenAPI schema the way the API server applies it (defaults
  make a property optional, nulls are dropped, unknown fields are rejected) plus the operator's own
  rules (name length, replica bounds, submissionMode, upgradeStrategy, rayClusterSpec xor
  clusterSelector, rayVersion vs image tag), ``serveConfigV2`` through Serve's
  ``ServeDeploySchema`` with every import path resolved, and the RayJob entrypoint module found.
- Core objects (Deployment, Service, PersistentVolumeClaim, ...) go through ``kubernetes-validate``
  in strict mode.
- A lab pod (labelled ``app.kubernetes.io/component: lab``) is a plain HTTP client of the gateway:
  ``DLP_URL`` and the user's ``DLP_TOKEN`` from a Secret, and no Ray token, Ray address,
  object-store credential or Secret but its own (``lab_problems``).

Every validator raises ``InvalidInput`` whose message names the file/object and the problem.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import inspect
import json
import re
import shlex
import sys
from collections.abc import Iterator
from functools import cache
from importlib.metadata import version
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
"""The lab user the template names; ``render --lab-user NAME`` replaces it."""
LAB_TOKEN_SECRET_PREFIX = "dlp-lab-token-"
"""The lab reads ``DLP_TOKEN`` from the Secret ``dlp-lab-token-<user>``, key ``token``."""
LAB_TOKEN_KEY = "token"
LAB_LOGIN_SECRET = "dlplatform-lab"
"""The lab's other Secret: key ``jupyter_token``, the JupyterLab login."""
KUBERAY_VERSION = "v1.7.0"
KUBERNETES_VERSION = "1.30"
RENDERED_FILES = (
    "pvc.yaml",
    "raycluster.yaml",
    "rayservice.yaml",
    "rayjob.yaml",
    "lab.yaml",
    "kustomization.yaml",
)

_CRD_FILES = {
    "RayCluster": "rayclusters.v1.schema.json",
    "RayService": "rayservices.v1.schema.json",
    "RayJob": "rayjobs.v1.schema.json",
}
_NAME_LIMITS = {"RayCluster": 53, "RayService": 47, "RayJob": 47}
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
_UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}
_SHARED_SCHEMES = ("s3://", "gs://")
_ENV_ASSIGN = re.compile(r"(?:^|[\s;])([A-Z_][A-Z0-9_]*)=(\S+)")
_DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
# What a lab pod must not hold: it is a plain HTTP client of the gateway (DLP_URL + DLP_TOKEN).
_LAB_FORBIDDEN_ENV = {
    "RAY_ADDRESS": "a Ray address",
    "DLP_RAY_ADDRESS": "a Ray address",
    "DLP_ARTIFACT_ROOT": "the artifact root",
    "GOOGLE_APPLICATION_CREDENTIALS": "object-store credentials",
}
_LAB_FORBIDDEN_ENV_PREFIXES = {
    "RAY_AUTH_": "Ray token auth",
    "AWS_": "object-store credentials",
    "AZURE_": "object-store credentials",
    "DLP_S3_": "object-store settings",
}
_RAY_ADDRESS_TEXT = re.compile(r"ray://|:(?:6379|8265|10001)\b")  # Ray Client, GCS, dashboard
_CLOUD_IDENTITY_ANNOTATIONS = (
    "eks.amazonaws.com/role-arn",
    "iam.gke.io/gcp-service-account",
    "azure.workload.identity/client-id",
)
_LOOPBACK_HOSTS = ("127.", "localhost", "[::1]", "0.0.0.0")
_POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


# --- locating the templates ---------------------------------------------------------------------


def clusters_dir() -> Path:
    """The repository's ``clusters/`` folder (next to the ``dlplatform`` package).

    Raises:
        NotFound: the package is not installed from a checkout (``pip install -e .``).
    """
    path = Path(__file__).resolve().parent.parent / "clusters"
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


# --- ray up -------------------------------------------------------------------------------------


def _ray_version() -> str:
    return version("ray")


def _env_assignments(command: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in _ENV_ASSIGN.finditer(command)}


def _image_tag(image: str) -> str | None:
    ref = image.split("@", 1)[0]
    name = ref.rsplit("/", 1)[-1]
    return name.split(":", 1)[1] if ":" in name else None


def _tag_matches(image: str, ray_version: str) -> bool:
    tag = _image_tag(image)
    return tag is not None and (tag == ray_version or tag.startswith(f"{ray_version}-"))


def validate_ray_up_config(config: dict[str, Any], *, name: str = "config") -> dict[str, Any]:
    """Validate a ``ray up`` config offline; returns the config as ``ray up`` would use it.

    Raises:
        InvalidInput: Ray's own validation or a platform rule failed.
    """
    from ray.autoscaler._private.util import prepare_config, validate_config

    if not isinstance(config, dict):
        raise InvalidInput(f"{name}: a cluster config must be a mapping")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Ray's cli_logger prints progress on stdout
            prepared = prepare_config(copy.deepcopy(config))
            validate_config(prepared)
            if prepared.get("provider", {}).get("type") == "local":
                from ray.autoscaler._private.commands import _bootstrap_config

                prepared = _bootstrap_config(copy.deepcopy(config), no_config_cache=True)
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
        elif not root.startswith(_SHARED_SCHEMES):
            problems.append(f"DLP_ARTIFACT_ROOT={root} is not shared object storage (s3://, gs://)")
        else:
            roots.add(root)
    if len(roots) > 1:
        problems.append(f"nodes disagree on the artifact root: {sorted(roots)}")
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
    ray_version = _ray_version()
    docker = raw.get("docker") or {}
    images = [docker.get(k) for k in ("image", "head_image", "worker_image")]
    images += [
        (spec.get("docker") or {}).get("worker_image")
        for spec in raw.get("available_node_types", {}).values()
    ]
    for image in filter(None, images):
        if not _tag_matches(str(image), ray_version):
            problems.append(f"image {image} must be tagged with the Ray version {ray_version}")
    return problems


# --- KubeRay CRDs -------------------------------------------------------------------------------


def _strict_schema(node: Any) -> Any:
    """The API server's view of a CRD schema: defaulted properties are optional, and (strict
    field validation) an object with ``properties`` rejects unknown fields unless it preserves
    them."""
    if isinstance(node, list):
        return [_strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict_schema(v) for k, v in node.items()}
    props = out.get("properties")
    if isinstance(props, dict):
        if "required" in out:
            out["required"] = [
                r
                for r in out["required"]
                if not (isinstance(props.get(r), dict) and "default" in props[r])
            ]
        if "additionalProperties" not in out and not out.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


@cache
def _crd_validator(kind: str, schema_dir: str) -> Any:
    import jsonschema

    path = Path(schema_dir) / _CRD_FILES[kind]
    try:
        schema = json.loads(path.read_text())
    except OSError as exc:
        raise NotFound(f"KubeRay CRD schema {path} is missing") from exc
    return jsonschema.Draft7Validator(_strict_schema(schema))


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _where(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def _schema_errors(validator: Any, obj: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_where(e.absolute_path)}: {_short(e.message)}" for e in errors[:10]]


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


def _object_name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind', '?')}/{meta.get('name', '?') if isinstance(meta, dict) else '?'}"


def _ray_container(template: dict[str, Any]) -> dict[str, Any]:
    containers = (template.get("spec") or {}).get("containers") or [{}]
    return containers[0] if isinstance(containers[0], dict) else {}


def _cluster_spec_problems(spec: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    ray_version = str(spec.get("rayVersion", ""))
    if not ray_version:
        problems.append(f"{where}.rayVersion is missing")
    elif ray_version != _ray_version():
        problems.append(
            f"{where}.rayVersion {ray_version} is not the platform's Ray version {_ray_version()}"
        )
    templates = [("headGroupSpec", (spec.get("headGroupSpec") or {}).get("template") or {})]
    names: set[str] = set()
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        gwhere = f"{where}.workerGroupSpecs[{i}]"
        templates.append((f"workerGroupSpecs[{i}]", group.get("template") or {}))
        gname = group.get("groupName")
        if gname in names:
            problems.append(f"{gwhere}: groupName {gname!r} is used twice")
        names.add(gname)
        lo, hi = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        replicas = group.get("replicas", lo)
        if not (isinstance(lo, int) and isinstance(hi, int) and isinstance(replicas, int)):
            continue  # the schema reports the types
        if not 0 <= lo <= replicas <= hi:
            problems.append(
                f"{gwhere}: needs 0 <= minReplicas ({lo}) <= replicas ({replicas}) <= "
                f"maxReplicas ({hi})"
            )
    for label, template in templates:
        image = str(_ray_container(template).get("image", ""))
        if ray_version and image and not _tag_matches(image, ray_version):
            problems.append(
                f"{where}.{label}: image {image} does not match rayVersion {ray_version} "
                "(its tag must be the Ray version, optionally followed by -suffix)"
            )
    return problems


def _resolve_import_path(import_path: str) -> Any:
    module_name, sep, attr = import_path.partition(":")
    if not sep:
        module_name, _, attr = import_path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{import_path!r} is not 'module:attribute'")
    module = importlib.import_module(module_name)
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _serve_config_problems(text: Any, where: str) -> list[str]:
    from pydantic import ValidationError
    from ray.serve import Application
    from ray.serve.schema import ServeDeploySchema

    if not isinstance(text, str):
        return [f"{where}: serveConfigV2 must be a string of Serve config YAML"]
    try:
        config = ServeDeploySchema.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        return [f"{where}: serveConfigV2 is not YAML: {exc}"]
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return [f"{where}: serveConfigV2 is not a valid Serve config: {loc}: {first['msg']}"]
    problems: list[str] = []
    for app in config.applications:
        try:
            target = _resolve_import_path(app.import_path)
        except (ImportError, AttributeError, ValueError) as exc:
            problems.append(
                f"{where}: application {app.name!r}: import_path {app.import_path!r} does not "
                f"resolve: {type(exc).__name__}: {exc}"
            )
            continue
        if isinstance(target, Application):
            if app.args:
                problems.append(
                    f"{where}: application {app.name!r} has args but {app.import_path} is a built "
                    "application, not a builder function"
                )
        elif not inspect.isfunction(target) or len(inspect.signature(target).parameters) != 1:
            problems.append(
                f"{where}: application {app.name!r}: {app.import_path} is neither a Serve "
                "application nor a builder function of one argument"
            )
    return problems


def _entrypoint_problems(entrypoint: Any, where: str) -> list[str]:
    if not isinstance(entrypoint, str) or not entrypoint.strip():
        return [f"{where}: entrypoint is empty"]
    try:
        argv = shlex.split(entrypoint)
    except ValueError as exc:
        return [f"{where}: entrypoint is not a valid command line: {exc}"]
    if len(argv) >= 3 and argv[0].startswith("python") and argv[1] == "-m":
        module = argv[2]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return [f"{where}: entrypoint module {module} does not exist"]
        if module == "dlplatform.train.entrypoint" and "--spec-json" in argv:
            from pydantic import ValidationError

            from dlplatform.train import TrainingJobSpec

            i = argv.index("--spec-json")
            try:
                TrainingJobSpec.model_validate_json(argv[i + 1] if i + 1 < len(argv) else "")
            except ValidationError as exc:
                first = exc.errors()[0]
                return [f"{where}: --spec-json is not a valid TrainingJobSpec: {first['msg']}"]
    return []


def validate_kuberay_object(obj: dict[str, Any], *, schema_dir: Path | None = None) -> None:
    """Validate a RayCluster, RayService or RayJob against its CRD schema and operator rules.

    Raises:
        InvalidInput: the object breaks the schema or a rule; the message lists the problems.
    """
    kind = obj.get("kind")
    if kind not in _CRD_FILES:
        raise InvalidInput(f"{_object_name(obj)}: not a KubeRay kind ({', '.join(_CRD_FILES)})")
    folder = schema_dir or clusters_dir() / "schemas" / f"kuberay-{KUBERAY_VERSION}"
    obj = _drop_nulls(obj)
    name = _object_name(obj)
    problems = _schema_errors(_crd_validator(kind, str(folder)), obj)
    if obj.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion must be ray.io/v1, not {obj.get('apiVersion')!r}")
    meta_name = (obj.get("metadata") or {}).get("name")
    limit = _NAME_LIMITS[kind]
    if not isinstance(meta_name, str) or not _DNS_1035.match(meta_name):
        problems.append(f"metadata.name {meta_name!r} is not a DNS-1035 label")
    elif len(meta_name) > limit:
        problems.append(f"metadata.name {meta_name!r} is longer than {limit} characters")
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        spec = {}
    if kind == "RayCluster":
        problems += _cluster_spec_problems(spec, "spec")
    elif kind == "RayService":
        upgrade = (spec.get("upgradeStrategy") or {}).get("type")
        if upgrade is not None and upgrade not in _UPGRADE_TYPES:
            problems.append(
                f"spec.upgradeStrategy.type {upgrade!r} is not one of {sorted(_UPGRADE_TYPES)}"
            )
        if isinstance(spec.get("rayClusterConfig"), dict):
            problems += _cluster_spec_problems(spec["rayClusterConfig"], "spec.rayClusterConfig")
        if "serveConfigV2" not in spec:
            problems.append("spec.serveConfigV2 is missing")
        else:
            problems += _serve_config_problems(spec["serveConfigV2"], "spec")
    else:
        mode = spec.get("submissionMode")
        if mode is not None and mode not in _SUBMISSION_MODES:
            problems.append(
                f"spec.submissionMode {mode!r} is not one of {sorted(_SUBMISSION_MODES)}"
            )
        has_spec, has_selector = "rayClusterSpec" in spec, bool(spec.get("clusterSelector"))
        if has_spec == has_selector:
            problems.append("spec needs exactly one of rayClusterSpec or clusterSelector")
        if isinstance(spec.get("rayClusterSpec"), dict):
            problems += _cluster_spec_problems(spec["rayClusterSpec"], "spec.rayClusterSpec")
        problems += _entrypoint_problems(spec.get("entrypoint"), "spec")
        if "runtimeEnvYAML" in spec:
            try:
                env = yaml.safe_load(spec["runtimeEnvYAML"])
                if env is not None and not isinstance(env, dict):
                    problems.append("spec.runtimeEnvYAML must hold a mapping")
            except yaml.YAMLError as exc:
                problems.append(f"spec.runtimeEnvYAML is not YAML: {exc}")
    if problems:
        raise InvalidInput(f"{name}: " + "; ".join(problems))


# --- core Kubernetes objects --------------------------------------------------------------------


def validate_core_object(obj: dict[str, Any], *, k8s_version: str = KUBERNETES_VERSION) -> None:
    """Validate a core Kubernetes object (Deployment, Service, PVC, ...) strictly, offline.

    Raises:
        InvalidInput: unknown kind, a schema violation or an unknown field.
    """
    import kubernetes_validate

    obj = _drop_nulls(obj)
    name = _object_name(obj)
    try:
        kubernetes_validate.validate(obj, k8s_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise InvalidInput(f"{name}: {_where(exc.absolute_path)}: {exc.message}") from exc
    except kubernetes_validate.SchemaNotFoundError as exc:
        raise InvalidInput(f"{name}: no Kubernetes {k8s_version} schema for this kind") from exc
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"{name}: apiVersion and kind are required") from exc
    meta_name = (obj.get("metadata") or {}).get("name")
    if not isinstance(meta_name, str) or not meta_name:
        raise InvalidInput(f"{name}: metadata.name is required")


def validate_manifest(obj: dict[str, Any], *, schema_dir: Path | None = None) -> None:
    """Validate one Kubernetes object: KubeRay kinds by CRD, everything else as a core object."""
    if obj.get("kind") in _CRD_FILES:
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
    if ns is not None and not (isinstance(ns, str) and _DNS_1123_LABEL.match(ns)):
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


def platform_manifest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What the platform needs from a RayCluster spec: autoscaling, a GPU group with
    ``nvidia.com/gpu`` limits, the home on a PVC at the head, object storage for artifacts;
    and from a lab pod: the gateway only (see ``lab_problems``)."""
    problems = lab_problems(docs)
    for obj in docs:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        cluster = {"RayCluster": spec, "RayService": spec.get("rayClusterConfig")}.get(str(kind))
        if not isinstance(cluster, dict):
            continue
        name = _object_name(obj)
        if cluster.get("enableInTreeAutoscaling") is not True:
            problems.append(f"{name}: enableInTreeAutoscaling must be true")
        head = _ray_container((cluster.get("headGroupSpec") or {}).get("template") or {})
        head_template = (cluster.get("headGroupSpec") or {}).get("template") or {}
        volumes = {v.get("name"): v for v in (head_template.get("spec") or {}).get("volumes") or []}
        env = {e.get("name"): e.get("value") for e in head.get("env") or []}
        home = env.get("DLP_HOME")
        mounted = [
            m for m in head.get("volumeMounts") or []
            if m.get("mountPath") == home and "persistentVolumeClaim" in volumes.get(m.get("name"), {})
        ]  # fmt: skip
        if not home or not mounted:
            problems.append(f"{name}: the head's DLP_HOME must be a mounted PersistentVolumeClaim")
        containers = [head] + [
            _ray_container(g.get("template") or {}) for g in cluster.get("workerGroupSpecs") or []
        ]
        for c in containers:
            root = {e.get("name"): e.get("value") for e in c.get("env") or []}.get(
                "DLP_ARTIFACT_ROOT"
            )
            if not (isinstance(root, str) and root.startswith(_SHARED_SCHEMES)):
                problems.append(
                    f"{name}: container {c.get('name')!r} needs DLP_ARTIFACT_ROOT on object storage"
                )
        gpu_groups = [
            g for g in cluster.get("workerGroupSpecs") or []
            if "nvidia.com/gpu" in ((_ray_container(g.get("template") or {}).get("resources") or {})
                                    .get("limits") or {})
        ]  # fmt: skip
        annotations = (obj.get("metadata") or {}).get("annotations") or {}
        if not gpu_groups and annotations.get(CPU_ONLY_ANNOTATION) != "true":
            problems.append(
                f"{name}: no worker group has an nvidia.com/gpu limit "
                f'(annotate {CPU_ONLY_ANNOTATION}: "true" for a CPU-only cluster)'
            )
    return problems


def _lab_pod(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of ``obj`` when it is (or templates) a pod labelled as the lab."""
    kind = obj.get("kind")
    template: Any = obj
    if kind == "CronJob":
        template = (((obj.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get(
            "template"
        )
    elif kind in _POD_TEMPLATE_KINDS:
        template = (obj.get("spec") or {}).get("template")
    elif kind != "Pod":
        return None
    if not isinstance(template, dict):
        return None
    labels: dict[str, Any] = {}
    for meta in (obj.get("metadata"), template.get("metadata")):
        if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
            labels.update(meta["labels"])
    spec = template.get("spec")
    if labels.get("app.kubernetes.io/component") != "lab" or not isinstance(spec, dict):
        return None
    return spec


def _is_lab_secret(name: Any) -> bool:
    return name == LAB_LOGIN_SECRET or (
        isinstance(name, str) and name.startswith(LAB_TOKEN_SECRET_PREFIX)
    )


def _lab_container_credentials(c: dict[str, Any]) -> list[str]:
    """The cluster credentials and Ray addresses one lab container holds."""
    found: list[str] = []
    where = f"in {c.get('name')!r}"
    for e in c.get("env") or []:
        var, value = str(e.get("name", "")), e.get("value")
        what = _LAB_FORBIDDEN_ENV.get(var) or next(
            (w for pre, w in _LAB_FORBIDDEN_ENV_PREFIXES.items() if var.startswith(pre)), None
        )
        if what:
            found.append(f"env {var} {where} ({what})")
        elif isinstance(value, str) and _RAY_ADDRESS_TEXT.search(value):
            found.append(f"env {var} {where} is a Ray address ({value})")
        secret = ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
        if secret is not None and not _is_lab_secret(secret):
            found.append(f"Secret {secret!r} as env {var} {where}")
    for source in c.get("envFrom") or []:
        secret = (source.get("secretRef") or {}).get("name")
        if secret is not None and not _is_lab_secret(secret):
            found.append(f"Secret {secret!r} as envFrom {where}")
    argv = [a for a in [*(c.get("command") or []), *(c.get("args") or [])] if isinstance(a, str)]
    if any(_RAY_ADDRESS_TEXT.search(a) for a in argv):
        found.append(f"a Ray address in the command {where}")
    return found


def _lab_pod_credentials(pod: dict[str, Any], docs: list[dict[str, Any]]) -> list[str]:
    """The cluster credentials and Ray addresses a lab pod holds (empty: none)."""
    containers = [*(pod.get("containers") or []), *(pod.get("initContainers") or [])]
    found = [f for c in containers if isinstance(c, dict) for f in _lab_container_credentials(c)]
    for volume in pod.get("volumes") or []:
        secrets = [(volume.get("secret") or {}).get("secretName")]
        secrets += [
            (s.get("secret") or {}).get("name")
            for s in (volume.get("projected") or {}).get("sources") or []
        ]
        found += [
            f"Secret {s!r} as volume {volume.get('name')!r}"
            for s in secrets
            if s is not None and not _is_lab_secret(s)
        ]
    if pod.get("automountServiceAccountToken") is not False:
        found.append("the Kubernetes API token (set automountServiceAccountToken: false)")
    account = pod.get("serviceAccountName") or "default"
    for doc in docs:
        meta = doc.get("metadata") or {}
        if doc.get("kind") == "ServiceAccount" and meta.get("name") == account:
            found += [
                f"ServiceAccount {account!r} with {key} (a cloud identity)"
                for key in _CLOUD_IDENTITY_ANNOTATIONS
                if key in (meta.get("annotations") or {})
            ]
    return found


def _lab_gateway_problems(pod: dict[str, Any]) -> list[str]:
    """What keeps a lab pod from reaching the gateway as its user: DLP_URL and DLP_TOKEN."""
    env: dict[str, dict[str, Any]] = {}
    for c in pod.get("containers") or []:
        for e in c.get("env") or []:
            env.setdefault(str(e.get("name", "")), e)
    problems: list[str] = []
    if "DLP_GATEWAY_URL" in env:
        problems.append("DLP_GATEWAY_URL is not read any more; set DLP_URL")
    url = (env.get("DLP_URL") or {}).get("value")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append("DLP_URL must be the gateway's in-cluster Service URL (http://...:8000)")
    elif url.split("://", 1)[1].startswith(_LOOPBACK_HOSTS):
        problems.append(f"DLP_URL {url} is the lab pod's own loopback, not the gateway's Service")
    token = env.get("DLP_TOKEN")
    if token is None:
        problems.append(
            f"DLP_TOKEN is missing (a secretKeyRef to {LAB_TOKEN_SECRET_PREFIX}<user>, key "
            f"{LAB_TOKEN_KEY})"
        )
    elif "valueFrom" not in token:
        problems.append(
            "DLP_TOKEN must come from a Secret (valueFrom.secretKeyRef), not a literal value"
        )
    return problems


def lab_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the lab pods in ``docs``: cluster credentials held, no way to the gateway.

    A lab pod (labelled ``app.kubernetes.io/component: lab``) is a plain HTTP client of the
    gateway: it needs ``DLP_URL`` and the user's ``DLP_TOKEN`` from a Secret, and must hold no Ray
    token, Ray address, object-store credential, artifact root, Kubernetes API token, nor any
    Secret but its own (``dlp-lab-token-<user>``, ``dlplatform-lab``). Whoever runs a notebook
    would otherwise act on the cluster whatever role their platform token has.
    """
    problems: list[str] = []
    for obj in docs:
        pod = _lab_pod(obj)
        if pod is None:
            continue
        name = _object_name(obj)
        found = _lab_pod_credentials(pod, docs)
        if found:
            problems.append(
                f"{name}: a lab pod must hold no cluster credentials or Ray addresses (it talks "
                "only to the gateway, with DLP_URL and the user's DLP_TOKEN); found: "
                + ", ".join(found)
            )
        problems += [f"{name}: {p}" for p in _lab_gateway_problems(pod)]
    return problems


# --- files and folders --------------------------------------------------------------------------


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


def cluster_files(folder: Path) -> Iterator[Path]:
    """The YAML files under ``folder``, sorted."""
    yield from sorted(p for p in folder.rglob("*.yaml") if p.is_file())


# --- rendering ----------------------------------------------------------------------------------


def lab_token_secret(lab_user: str) -> str:
    """The name of the Secret the lab reads ``DLP_TOKEN`` from (key ``token``).

    Raises:
        InvalidInput: ``lab_user`` cannot be part of a Secret name.
    """
    name = f"{LAB_TOKEN_SECRET_PREFIX}{lab_user}"
    if not lab_user or len(name) > 253 or not _DNS_1123_SUBDOMAIN.match(name):
        raise InvalidInput(
            f"--lab-user {lab_user!r} cannot name the Secret {name!r} (lowercase letters, digits, "
            "'-' and '.'; a platform user name with '_' needs another --lab-user)"
        )
    return name


def _check_render_args(
    image: str, namespace: str, cpu_workers: int, gpu_workers: int, gpu_type: str
) -> None:
    ray_version = _ray_version()
    if not image or any(c.isspace() for c in image):
        raise InvalidInput(f"--image {image!r} is not an image reference")
    if not _tag_matches(image, ray_version):
        raise InvalidInput(
            f"--image {image} must be tagged with the Ray version: {ray_version} or "
            f"{ray_version}-<suffix> (KubeRay checks rayVersion against it)"
        )
    if not _DNS_1123_LABEL.match(namespace) or len(namespace) > 63:
        raise InvalidInput(f"--namespace {namespace!r} is not a DNS-1123 label")
    for flag, value in (("--cpu-workers", cpu_workers), ("--gpu-workers", gpu_workers)):
        if not 0 <= value <= 1000:
            raise InvalidInput(f"{flag} must be between 0 and 1000, not {value}")
    if not gpu_type or len(gpu_type) > 63 or not _LABEL_VALUE.match(gpu_type):
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


def render(
    image: str,
    namespace: str,
    cpu_workers: int = 8,
    gpu_workers: int = 4,
    gpu_type: str = TEMPLATE_GPU_TYPE,
    *,
    gpu_image: str | None = None,
    lab_user: str = LAB_USER_TEMPLATE,
    source: Path | None = None,
) -> dict[str, str]:
    """The KubeRay manifests for one deployment, as ``{file name: YAML text}``, validated.

    Args:
        image: the platform image (its tag starts with the Ray version, e.g. ``reg/dlplatform:2.60.0``).
        namespace: the Kubernetes namespace of every object (and of the service DNS names).
        cpu_workers: the most CPU worker pods the autoscaler may start.
        gpu_workers: the most GPU worker pods (0 drops the GPU group).
        gpu_type: the GPU model, matched against the node label ``nvidia.com/gpu.product``.
        gpu_image: the GPU workers' image; default ``image`` with ``-gpu`` added to its tag.
        lab_user: the platform user of the lab: it reads ``DLP_TOKEN`` from the Secret
            ``dlp-lab-token-<lab_user>`` (key ``token``), which the operator creates.
        source: the templates folder; default the repository's ``clusters/kuberay``.

    Raises:
        InvalidInput: a bad argument, or a rendered object that fails validation.
        NotFound: the templates are not there.
    """
    _check_render_args(image, namespace, cpu_workers, gpu_workers, gpu_type)
    template_secret = lab_token_secret(LAB_USER_TEMPLATE)
    secret = lab_token_secret(lab_user)
    if gpu_image is None:
        if "@" in image:
            raise InvalidInput("--image has a digest; name the GPU image with --gpu-image")
        gpu_image = f"{image}-gpu"
    elif not _tag_matches(gpu_image, _ray_version()):
        raise InvalidInput(f"--gpu-image {gpu_image} must be tagged with the Ray version")
    folder = source or clusters_dir() / "kuberay"
    out: dict[str, str] = {}
    for file_name in RENDERED_FILES:
        path = folder / file_name
        if not path.is_file():
            raise NotFound(f"template {path} is missing")
        docs = load_documents(path)
        rendered = []
        for doc in docs:
            doc = _replace_strings(doc, f".{TEMPLATE_NAMESPACE}.svc", f".{namespace}.svc")
            if doc.get("kind") == "Kustomization":
                doc["namespace"] = namespace
                doc.pop("images", None)  # the image is already in the rendered files
            else:
                doc.setdefault("metadata", {})["namespace"] = namespace
            for container in _iter_containers(doc):
                if container.get("image") == TEMPLATE_IMAGE:
                    container["image"] = image
                elif container.get("image") == TEMPLATE_GPU_IMAGE:
                    container["image"] = gpu_image
                for e in container.get("env") or []:
                    ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                    if ref.get("name") == template_secret:
                        ref["name"] = secret
            spec = doc.get("spec") or {}
            for cluster in (
                spec if doc.get("kind") == "RayCluster" else None,
                spec.get("rayClusterConfig"),
                spec.get("rayClusterSpec"),
            ):
                if isinstance(cluster, dict):
                    _scale_groups(cluster, cpu_workers, gpu_workers, gpu_type)
                    if gpu_workers == 0:
                        annotations = doc["metadata"].setdefault("annotations", {})
                        annotations[CPU_ONLY_ANNOTATION] = "true"
            rendered.append(doc)
        header = (
            f"# Rendered by `dlp k8s render --image {image} --namespace {namespace} "
            f"--cpu-workers {cpu_workers} --gpu-workers {gpu_workers} --gpu-type {gpu_type} "
            f"--lab-user {lab_user}`\n"
        )
        out[file_name] = header + yaml.safe_dump_all(rendered, sort_keys=False, width=100)
    _validate_rendered(out)
    return out


def _validate_rendered(files: dict[str, str]) -> None:
    import tempfile

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
