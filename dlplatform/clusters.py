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
  ``ServeDeploySchema``, and the modules a manifest names (a Serve ``import_path``, a RayJob's
  ``python -m`` entrypoint) checked without importing them: a dotted name by regex, a platform
  module (``dlplatform.*``) located on disk and its attribute found in the parsed source
  (``platform_module_file``). A manifest is input: validating it never runs code it names.
- Core objects (Deployment, Service, PersistentVolumeClaim, NetworkPolicy, Ingress, ...) go
  through ``kubernetes-validate`` in strict mode.
- Every object goes through the security rules of ``k8s_security``: restricted pods, API tokens
  only where needed, token files under ``umask 077``, NetworkPolicies that keep Ray's ports to the
  cluster's own pods, a TLS Ingress for the gateway only, one lab per user that holds only its
  user's Secret, and teams' RayJobs on clusters of their own that hold nothing of the platform's.

Every validator raises ``InvalidInput`` whose message names the file/object and the problem.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from functools import cache
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from dlplatform import _ray_internals as ray_internals
from dlplatform import k8s_security
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
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PACKAGE_DIR = Path(__file__).resolve().parent  # the dlplatform package: located, not imported
_DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


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
        elif not root.startswith(_SHARED_SCHEMES):
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


def platform_module_file(module: str) -> Path | None:
    """The source file of ``module`` when it is one of the platform's own (``dlplatform.*``),
    found on disk without importing anything; None when it is not there.

    Validation never imports a module a manifest names: importing runs the module's code (and
    its packages' ``__init__``), and a manifest is input, not code to run.

    Raises:
        ValueError: ``module`` is not a dotted Python name or not under ``dlplatform``.
    """
    if not _MODULE_PATH.fullmatch(module):
        raise ValueError(f"{module!r} is not a Python module path (dotted identifiers)")
    parts = module.split(".")
    if parts[0] != _PACKAGE_DIR.name:
        raise ValueError(f"{module!r} is not a module of the platform ({_PACKAGE_DIR.name}.*)")
    folder = _PACKAGE_DIR
    for part in parts[1:-1]:
        folder = folder / part
        if not (folder / "__init__.py").is_file():
            return None
    if len(parts) == 1:
        return folder / "__init__.py"
    for candidate in (folder / f"{parts[-1]}.py", folder / parts[-1] / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _top_level_binding(source: Path, name: str) -> ast.AST | None:
    """The statement that binds ``name`` at the top of ``source`` (parsed, never run)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    found: ast.AST | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [(a.asname or a.name).split(".")[0] for a in node.names]
        else:
            continue
        if name in names:
            found = node  # the last binding wins, as at run time
    return found


def _import_path_problem(import_path: str) -> str | None:
    """Why ``module:attribute`` does not name a Serve application or builder of the platform."""
    module, sep, attr = import_path.partition(":")
    if not sep:
        module, _, attr = import_path.rpartition(".")
    if not module or not _IDENTIFIER.fullmatch(attr):
        return f"{import_path!r} is not 'module:attribute'"
    try:
        source = platform_module_file(module)
    except ValueError as exc:
        return (
            f"{exc}; the validator never imports code, so a Serve config may name only the "
            "platform's own applications (models are deployed through the gateway)"
        )
    if source is None:
        return f"module {module} does not exist"
    node = _top_level_binding(source, attr)
    if node is None:
        return f"{module} defines no {attr}"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        if len(positional) != 1 or args.kwonlyargs or args.vararg:
            return f"{import_path} is a function but not a builder of one argument"
    elif isinstance(node, ast.ClassDef):
        return f"{import_path} is a class, not a Serve application or builder function"
    return None


def _serve_config_problems(text: Any, where: str) -> list[str]:
    from pydantic import ValidationError
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
        problem = _import_path_problem(app.import_path)
        if problem:
            problems.append(
                f"{where}: application {app.name!r}: import_path {app.import_path!r} does not "
                f"resolve: {problem}"
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
        if not _MODULE_PATH.fullmatch(module):
            return [f"{where}: entrypoint module {module!r} is not a Python module path"]
        if module.split(".")[0] != _PACKAGE_DIR.name:
            return []  # the job's own code, from its image or working_dir: not checked offline
        if platform_module_file(module) is None:
            return [f"{where}: entrypoint module {module} does not exist"]
        if module == "dlplatform.train.entrypoint" and "--spec-json" in argv:
            from pydantic import ValidationError

            from dlplatform.train.spec import TrainingJobSpec

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
    docs = [d for r in obj.get("resources") or [] for d in load_documents(folder / r)]
    problems = k8s_security.deployment_problems(docs)
    if problems:
        raise InvalidInput("kustomization: " + "; ".join(problems))


def platform_manifest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What the platform needs from a RayCluster spec: autoscaling, a GPU group with
    ``nvidia.com/gpu`` limits, the home on a PVC at the head, object storage for artifacts;
    and the security rules of ``k8s_security`` on every object (pods, NetworkPolicies, the
    Ingress, labs, teams' RayJobs)."""
    problems = k8s_security.security_problems(docs)
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


def lab_secret(lab_user: str) -> str:
    """The name of ``lab_user``'s lab: its Secret (keys ``token``, ``jupyter_token``),
    Deployment, Service, claim and NetworkPolicy are all ``dlp-lab-<lab_user>``.

    Raises:
        InvalidInput: ``lab_user`` cannot be part of those names.
    """
    name = k8s_security.lab_secret(lab_user)
    if not lab_user or len(name) > 63 or not _DNS_1035.match(name):
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
    if (
        not team
        or len(f"dlp-job-{team}") > _NAME_LIMITS["RayJob"]
        or not _DNS_1123_LABEL.match(team)
    ):
        raise InvalidInput(
            f"--job-team {team!r} cannot name the RayJob dlp-job-{team} (lowercase letters, "
            "digits and '-', at most 39 characters)"
        )
    return f"{k8s_security.JOB_TOKEN_PREFIX}{team}"


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
    template = k8s_security.lab_secret(LAB_USER_TEMPLATE)
    out = []
    for user in lab_users:
        for doc in docs:
            doc = _replace_strings(doc, template, lab_secret(user))
            out.append(
                _replace_values(doc, LAB_USER_TEMPLATE, user, key=k8s_security.LAB_USER_LABEL)
            )
    return out


def _job_doc(doc: dict[str, Any], team: str) -> dict[str, Any]:
    """The RayJob template's object for ``team``."""
    t = JOB_TEAM_TEMPLATE
    for old, new in (
        (f"{k8s_security.JOB_TOKEN_PREFIX}{t}", job_token_secret(team)),
        (f"{k8s_security.JOB_STORE_PREFIX}{t}", f"{k8s_security.JOB_STORE_PREFIX}{team}"),
        (f"dlp-job-{t}", f"dlp-job-{team}"),
        (f"dlp-team-{t}", f"dlp-team-{team}"),  # the team's bucket in working_dir
    ):
        doc = _replace_strings(doc, old, new)
    return _replace_values(doc, t, team, key=k8s_security.TEAM_LABEL)


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
    if not _DNS_1123_LABEL.match(job_namespace) or len(job_namespace) > 63:
        raise InvalidInput(f"--job-namespace {job_namespace!r} is not a DNS-1123 label")
    if job_namespace == namespace:
        raise InvalidInput(
            f"--job-namespace {job_namespace} is the platform's namespace: a pod there can mount "
            "the platform's Secrets (its Ray token, object-store keys); give the team its own"
        )
    if not _DNS_1123_LABEL.match(operator_namespace) or len(operator_namespace) > 63:
        raise InvalidInput(f"--operator-namespace {operator_namespace!r} is not a DNS-1123 label")
    if (
        len(gateway_host) > 253
        or "." not in gateway_host
        or not _DNS_1123_SUBDOMAIN.match(gateway_host)
    ):
        raise InvalidInput(
            f"--gateway-host {gateway_host!r} is not a DNS name (e.g. dlp.example.com)"
        )
    if gpu_image is None:
        if "@" in image:
            raise InvalidInput("--image has a digest; name the GPU image with --gpu-image")
        gpu_image = f"{image}-gpu"
    elif not _tag_matches(gpu_image, _ray_version()):
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
