"""KubeRay objects (RayCluster, RayService, RayJob), validated offline: the CRD's OpenAPI
schema as the API server applies it, the operator's own rules, ``serveConfigV2`` through
Serve's schema, the modules a manifest names (located, never imported), and what the platform
needs from a RayCluster spec (``platform_manifest_problems``)."""

from __future__ import annotations

import ast
import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from pydantic import ValidationError

from dlplatform.clusters import security
from dlplatform.clusters.ray_up import SHARED_SCHEMES, installed_ray_version, tag_matches
from dlplatform.clusters.templates import CPU_ONLY_ANNOTATION, KUBERAY_VERSION, clusters_dir
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.train.spec import TrainingJobSpec

CRD_FILES = {
    "RayCluster": "rayclusters.v1.schema.json",
    "RayService": "rayservices.v1.schema.json",
    "RayJob": "rayjobs.v1.schema.json",
}
NAME_LIMITS = {"RayCluster": 53, "RayService": 47, "RayJob": 47}
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_SUBMISSION_MODES = {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
_UPGRADE_TYPES = {"NewCluster", "NewClusterWithIncrementalUpgrade", "None"}


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the dlplatform package: located, not imported
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)


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

    path = Path(schema_dir) / CRD_FILES[kind]
    try:
        schema = json.loads(path.read_text())
    except OSError as exc:
        raise NotFound(f"KubeRay CRD schema {path} is missing") from exc
    return jsonschema.Draft7Validator(_strict_schema(schema))


def drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [drop_nulls(v) for v in value]
    return value


def error_path(path: Any) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def _schema_errors(validator: Any, obj: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{error_path(e.absolute_path)}: {_short(e.message)}" for e in errors[:10]]


def _short(text: str, limit: int = 240) -> str:
    return text if len(text) <= limit else f"{text[: limit // 2]} ... {text[-limit // 2 :]}"


def object_name(obj: dict[str, Any]) -> str:
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
    elif ray_version != installed_ray_version():
        problems.append(
            f"{where}.rayVersion {ray_version} is not the platform's Ray version {installed_ray_version()}"
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
        if ray_version and image and not tag_matches(image, ray_version):
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
    # Ray: only a RayService's serveConfigV2 needs Serve's schema, not `dlp k8s render`
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
    if kind not in CRD_FILES:
        raise InvalidInput(f"{object_name(obj)}: not a KubeRay kind ({', '.join(CRD_FILES)})")
    folder = schema_dir or clusters_dir() / "schemas" / f"kuberay-{KUBERAY_VERSION}"
    obj = drop_nulls(obj)
    name = object_name(obj)
    problems = _schema_errors(_crd_validator(kind, str(folder)), obj)
    if obj.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion must be ray.io/v1, not {obj.get('apiVersion')!r}")
    meta_name = (obj.get("metadata") or {}).get("name")
    limit = NAME_LIMITS[kind]
    if not isinstance(meta_name, str) or not DNS_1035.match(meta_name):
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


def platform_manifest_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What the platform needs from a RayCluster spec: autoscaling, a GPU group with
    ``nvidia.com/gpu`` limits, the home on a PVC at the head, object storage for artifacts;
    and the security rules of ``k8s_security`` on every object (pods, NetworkPolicies, the
    Ingress, labs, teams' RayJobs)."""
    problems = security.security_problems(docs)
    for obj in docs:
        kind = obj.get("kind")
        spec = obj.get("spec") or {}
        cluster = {"RayCluster": spec, "RayService": spec.get("rayClusterConfig")}.get(str(kind))
        if not isinstance(cluster, dict):
            continue
        name = object_name(obj)
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
            if not (isinstance(root, str) and root.startswith(SHARED_SCHEMES)):
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
