"""Offline validation of every cluster file: `ray up` configs through Ray's own checks, KubeRay
manifests through the CRD schemas and operator rules, core objects through kubernetes-validate;
and every deliberately broken copy in clusters/broken/ must fail, for the reason it states."""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from dlplatform import clusters
from dlplatform.errors import InvalidInput

REPO = Path(__file__).resolve().parents[3]
CLUSTERS = REPO / "clusters"
RAY_UP = sorted((CLUSTERS / "ray-up").glob("*.yaml"))
KUBERAY = sorted((CLUSTERS / "kuberay").glob("*.yaml"))
BROKEN = sorted((CLUSTERS / "broken").rglob("*.yaml"))
RAY_VERSION = clusters._ray_version()


def _expected(path: Path) -> str:
    for line in path.read_text().splitlines()[:5]:
        if line.startswith("# expect:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{path} has no '# expect:' line naming the error it must cause")


def _doc(name: str, kind: str | None = None) -> dict:
    docs = clusters.load_documents(CLUSTERS / "kuberay" / name)
    return next(d for d in docs if kind is None or d["kind"] == kind)


# --- the real files pass ---------------------------------------------------------------------


def test_every_expected_file_is_there() -> None:
    assert [p.name for p in RAY_UP] == ["aws.yaml", "gcp.yaml", "local.yaml"]
    assert {p.name for p in KUBERAY} == set(clusters.RENDERED_FILES)


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_config_passes_rays_validation(path: Path) -> None:
    prepared = clusters.validate_ray_up_config(yaml.safe_load(path.read_text()), name=path.name)
    assert prepared["cluster_name"] == "dlplatform"
    head_cmds = prepared["head_start_ray_commands"]
    start = next(i for i, c in enumerate(head_cmds) if "ray start --head" in c)
    assert any("dlp up --address auto" in c for c in head_cmds[start + 1 :])


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_configs_have_cpu_head_and_autoscaling_cpu_and_gpu_groups(name: str) -> None:
    raw = yaml.safe_load((CLUSTERS / "ray-up" / name).read_text())
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["max_workers"] == 0 and head["resources"].get("GPU", 0) == 0
    workers = {k: v for k, v in types.items() if k != raw["head_node_type"]}
    gpu = [v for v in workers.values() if v["resources"].get("GPU", 0) > 0]
    cpu = [v for v in workers.values() if v["resources"].get("GPU", 0) == 0]
    assert gpu and cpu
    for spec in gpu + cpu:  # autoscaling: a documented range that can grow
        assert 0 <= spec["min_workers"] < spec["max_workers"] <= raw["max_workers"]
    scheme = "s3://" if name == "aws.yaml" else "gs://"
    assert f"DLP_ARTIFACT_ROOT={scheme}" in " ".join(raw["head_start_ray_commands"])


def test_local_config_lists_head_and_workers() -> None:
    raw = yaml.safe_load((CLUSTERS / "ray-up" / "local.yaml").read_text())
    assert raw["provider"]["head_ip"] and len(raw["provider"]["worker_ips"]) == raw["max_workers"]
    prepared = clusters.validate_ray_up_config(raw)
    node = prepared["available_node_types"]["local.cluster.node"]
    assert node["min_workers"] == node["max_workers"] == 2


@pytest.mark.parametrize("path", KUBERAY, ids=lambda p: p.name)
def test_kuberay_file_validates(path: Path) -> None:
    clusters.validate_file(path)


def test_raycluster_has_autoscaling_gpu_group_pvc_home_and_object_storage() -> None:
    rc = _doc("raycluster.yaml")
    spec = rc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    assert spec["rayVersion"] == RAY_VERSION
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    gpu = groups["gpu"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1
    assert groups["cpu"]["maxReplicas"] > groups["cpu"]["minReplicas"]
    head = spec["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in head["containers"][0]["env"]}
    assert env["DLP_ARTIFACT_ROOT"].startswith("s3://")
    claim = head["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim in {
        d["metadata"]["name"] for d in clusters.load_documents(CLUSTERS / "kuberay" / "pvc.yaml")
    }
    hook = " ".join(head["containers"][0]["lifecycle"]["postStart"]["exec"]["command"])
    assert "dlp up --address auto" in hook


def test_rayservice_serves_the_gateway_builder_that_exists() -> None:
    from ray.serve.schema import ServeDeploySchema

    from dlplatform.api import gateway

    service = _doc("rayservice.yaml")
    config = ServeDeploySchema.model_validate(yaml.safe_load(service["spec"]["serveConfigV2"]))
    [app] = config.applications
    assert app.import_path == "dlplatform.api.gateway:build_gateway"
    assert inspect.isfunction(gateway.build_gateway)
    assert app.args["home"] == "/home/ray/dlplatform"
    assert service["spec"]["upgradeStrategy"]["type"] == "None"


def test_rayjob_runs_the_training_entrypoint_on_the_platform_cluster() -> None:
    job = _doc("rayjob.yaml")
    assert job["spec"]["clusterSelector"] == {
        "ray.io/cluster": _doc("raycluster.yaml")["metadata"]["name"]
    }
    assert "rayClusterSpec" not in job["spec"]
    module = job["spec"]["entrypoint"].split()[2]
    assert module == "dlplatform.train.entrypoint"
    assert importlib.util.find_spec(module) is not None


def test_lab_is_a_deployment_and_a_service_that_select_the_same_pods() -> None:
    docs = clusters.load_documents(CLUSTERS / "kuberay" / "lab.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _lab() -> dict:
    return _doc("lab.yaml", "Deployment")


def _lab_env(lab: dict) -> dict[str, dict]:
    return {e["name"]: e for e in lab["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_lab_gets_the_gateway_url_and_the_users_token_secret_only() -> None:
    lab = _lab()
    env = _lab_env(lab)
    assert set(env) == {"DLP_URL", "DLP_TOKEN", "JUPYTER_TOKEN"}
    # DLP_URL is the Service KubeRay makes for the RayCluster's head, on Serve's port
    rc = _doc("raycluster.yaml")
    ports = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    serve_port = next(p["containerPort"] for p in ports if p["name"] == "serve")
    service = f"{rc['metadata']['name']}-head-svc.{clusters.TEMPLATE_NAMESPACE}.svc.cluster.local"
    assert env["DLP_URL"]["value"] == f"http://{service}:{serve_port}"
    assert env["DLP_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": f"dlp-lab-token-{clusters.LAB_USER_TEMPLATE}",
        "key": "token",
    }
    pod = lab["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert "envFrom" not in pod["containers"][0]
    text = (CLUSTERS / "kuberay" / "lab.yaml").read_text().split("apiVersion:", 1)[1]
    for needle in ("ray://", "RAY_", "AWS_", "DLP_S3_", "ray-token", "object-store", ":10001"):
        assert needle not in text, needle
    assert clusters.lab_problems([lab]) == []


def _env(name: str, value: str | None = None, secret: str | None = None) -> dict:
    if secret is not None:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": "k"}}}
    return {"name": name, "value": value}


def _add_env(*entries: dict):
    return lambda pod: pod["containers"][0]["env"].extend(entries)


def _set_env(name: str, entry: dict | None):
    def mutate(pod: dict) -> None:
        env = [e for e in pod["containers"][0]["env"] if e["name"] != name]
        pod["containers"][0]["env"] = env + ([entry] if entry else [])

    return mutate


def _irsa(pod: dict) -> None:
    pod["serviceAccountName"] = "ray"


CREDENTIALS = "a lab pod must hold no cluster credentials or Ray addresses"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_add_env(_env("RAY_AUTH_TOKEN", secret="dlplatform-ray-token")), "env RAY_AUTH_TOKEN"),
        (_add_env(_env("RAY_AUTH_TOKEN", secret="dlplatform-ray-token")),
         "Secret 'dlplatform-ray-token' as env RAY_AUTH_TOKEN"),
        (_add_env(_env("RAY_AUTH_MODE", "token")), "env RAY_AUTH_MODE"),
        (_add_env(_env("RAY_ADDRESS", "ray://dlplatform-head-svc:10001")), "env RAY_ADDRESS"),
        (_add_env(_env("DLP_RAY_ADDRESS", "auto")), "env DLP_RAY_ADDRESS"),
        (_add_env(_env("CLUSTER", "ray://dlplatform-head-svc:10001")), "is a Ray address"),
        (_add_env(_env("JOBS", "http://dlplatform-head-svc:8265")), "is a Ray address"),
        (_add_env(_env("DLP_ARTIFACT_ROOT", "s3://dlplatform-artifacts/prod")),
         "env DLP_ARTIFACT_ROOT"),
        (_add_env(_env("AWS_SECRET_ACCESS_KEY", "x")), "env AWS_SECRET_ACCESS_KEY"),
        (_add_env(_env("DLP_S3_ENDPOINT_URL", "http://minio:9000")), "env DLP_S3_ENDPOINT_URL"),
        (_add_env(_env("BUCKET_KEY", secret="dlplatform-object-store")),
         "Secret 'dlplatform-object-store' as env BUCKET_KEY"),
        (lambda pod: pod["containers"][0].__setitem__(
            "envFrom", [{"secretRef": {"name": "dlplatform-object-store", "optional": True}}]),
         "Secret 'dlplatform-object-store' as envFrom"),
        (lambda pod: pod["volumes"].append(
            {"name": "ray-token", "secret": {"secretName": "dlplatform-ray-token"}}),
         "Secret 'dlplatform-ray-token' as volume 'ray-token'"),
        (lambda pod: pod["volumes"].append({"name": "p", "projected": {"sources": [
            {"secret": {"name": "dlplatform-object-store"}}]}}),
         "Secret 'dlplatform-object-store' as volume 'p'"),
        (lambda pod: pod["containers"][0]["command"].append(
            "--ServerApp.env=ray://head:10001"), "a Ray address in the command"),
        (lambda pod: pod.__setitem__("initContainers", [{"name": "init", "image": "busybox",
            "env": [_env("RAY_AUTH_TOKEN", secret="dlplatform-ray-token")]}]),
         "env RAY_AUTH_TOKEN in 'init'"),
        (lambda pod: pod.pop("automountServiceAccountToken"), "the Kubernetes API token"),
        (_irsa, "ServiceAccount 'ray' with eks.amazonaws.com/role-arn"),
    ],
)  # fmt: skip
def test_lab_holding_cluster_credentials_fails(mutate, message: str) -> None:
    lab = _lab()
    mutate(lab["spec"]["template"]["spec"])
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "ray", "annotations": {"eks.amazonaws.com/role-arn": "arn:..."}},
    }
    [problem] = clusters.platform_manifest_problems([lab, account])
    assert problem.startswith(f"Deployment/dlplatform-lab: {CREDENTIALS}")
    assert message in problem


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_set_env("DLP_URL", None), "DLP_URL must be the gateway's in-cluster Service URL"),
        (_set_env("DLP_URL", _env("DLP_URL", "dlplatform-head-svc:8000")), "DLP_URL must be"),
        (_set_env("DLP_URL", _env("DLP_URL", "http://127.0.0.1:8000")), "own loopback"),
        (_set_env("DLP_URL", _env("DLP_URL", "http://localhost:8000")), "own loopback"),
        (_set_env("DLP_TOKEN", None), "DLP_TOKEN is missing"),
        (_set_env("DLP_TOKEN", _env("DLP_TOKEN", "dlp_secret")), "not a literal value"),
        (_add_env(_env("DLP_GATEWAY_URL", "http://x:8000")), "DLP_GATEWAY_URL is not read"),
    ],
)
def test_lab_that_cannot_reach_the_gateway_as_its_user_fails(mutate, message: str) -> None:
    lab = _lab()
    mutate(lab["spec"]["template"]["spec"])
    [problem] = clusters.lab_problems([lab])
    assert problem.startswith("Deployment/dlplatform-lab: ") and message in problem


def test_lab_rule_finds_lab_pods_of_any_workload_and_leaves_ray_pods_alone(
    tmp_path: Path,
) -> None:
    pod = _lab()["spec"]["template"]
    pod["spec"]["containers"][0]["env"].append(_env("RAY_ADDRESS", "ray://head:10001"))
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lab", **pod["metadata"]},
            "spec": pod["spec"]}  # fmt: skip
    cron = {"kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": pod}}}}  # fmt: skip
    assert [p.split(":")[0] for p in clusters.lab_problems([bare, cron])] == [
        "Pod/lab", "CronJob/nightly"
    ]  # fmt: skip
    # without the lab label the same pod is not the lab's (the Ray pods hold the token by design)
    pod["metadata"]["labels"]["app.kubernetes.io/component"] = "ray-head"
    assert clusters.lab_problems([bare]) == []
    assert clusters.lab_problems([_doc("raycluster.yaml"), _doc("rayservice.yaml")]) == []
    # `dlp k8s validate` refuses a lab file that gives the lab a Ray address
    path = tmp_path / "lab.yaml"
    text = (CLUSTERS / "kuberay" / "lab.yaml").read_text()
    path.write_text(text.replace("name: DLP_URL\n", "name: RAY_ADDRESS\n", 1))
    with pytest.raises(
        InvalidInput, match=re.escape(f"lab.yaml: Deployment/dlplatform-lab: {CREDENTIALS}")
    ):
        clusters.validate_file(path)


def test_manifests_use_the_placeholder_image_with_the_ray_version_tag() -> None:
    images = set()
    for path in KUBERAY:
        for doc in clusters.load_documents(path):
            images |= {c["image"] for c in clusters._iter_containers(doc)}
    assert images == {clusters.TEMPLATE_IMAGE, clusters.TEMPLATE_GPU_IMAGE}
    assert f"dlplatform:{RAY_VERSION}" == clusters.TEMPLATE_IMAGE


# --- the broken copies fail ------------------------------------------------------------------


def test_every_real_config_has_broken_copies() -> None:
    sources = {p.stem for p in RAY_UP + KUBERAY}
    covered = {p.name.split("-")[0] for p in BROKEN}
    assert sources == covered


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_broken_config_fails_for_its_stated_reason(path: Path) -> None:
    expected = _expected(path)
    with pytest.raises(InvalidInput) as info:
        clusters.validate_file(path, resources_dir=CLUSTERS / "kuberay")
    assert expected in info.value.message


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_broken_config_differs_from_its_original_in_few_lines(path: Path) -> None:
    """Each broken file is a copy of a real one with one defect, not an unrelated file."""
    folder = "ray-up" if path.parent.name == "ray-up" else "kuberay"
    stem = path.name.split("-")[0]
    original = (CLUSTERS / folder / f"{stem}.yaml").read_text().splitlines()
    broken = path.read_text().splitlines()[2:]
    changed = sum(1 for line in difflib.ndiff(original, broken) if line[:2] in ("+ ", "- "))
    assert 0 < changed <= 16, changed


# --- the schema rules themselves -------------------------------------------------------------


def test_strict_schema_makes_defaults_optional_and_rejects_unknown_fields() -> None:
    schema = {
        "type": "object",
        "required": ["a", "b"],
        "properties": {
            "a": {"type": "string", "default": "x"},
            "b": {"type": "integer"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"k": {"type": "string"}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    }  # fmt: skip
    strict = clusters._strict_schema(schema)
    assert strict["required"] == ["b"]
    assert strict["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["free"]
    assert strict["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert clusters._drop_nulls({"a": None, "b": {"c": None, "d": 1}, "l": [{"e": None}]}) == {
        "b": {"d": 1}, "l": [{}]
    }  # fmt: skip


def test_null_values_are_dropped_like_the_api_server_does() -> None:
    rc = _doc("raycluster.yaml")
    rc["spec"]["suspend"] = None
    clusters.validate_kuberay_object(rc)


def test_crd_schemas_in_the_repo_are_kuberay_v1_7_0() -> None:
    folder = CLUSTERS / "schemas" / f"kuberay-{clusters.KUBERAY_VERSION}"
    for kind, file_name in clusters._CRD_FILES.items():
        schema = json.loads((folder / file_name).read_text())
        assert schema["properties"]["kind"]["type"] == "string", kind
    assert "59d663aeec13760646da3db9c1cf8cfe883e30b7" in (folder / "README.md").read_text()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.__setitem__("apiVersion", "ray.io/v1alpha1"), "apiVersion must be ray.io/v1"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].__setitem__("minReplicas", -1), "minReplicas"),
        (lambda d: d["spec"]["workerGroupSpecs"][1].__setitem__("groupName", "cpu"), "used twice"),
        (lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
         .__setitem__("image", "rayproject/ray:2.60.0-py311@sha256:" + "0" * 64), None),
    ],
)  # fmt: skip
def test_operator_rules(mutate, message: str | None) -> None:
    rc = _doc("raycluster.yaml")
    mutate(rc)
    if message is None:
        clusters.validate_kuberay_object(rc)  # a digest after a matching tag is fine
        return
    with pytest.raises(InvalidInput, match=re.escape(message)):
        clusters.validate_kuberay_object(rc)


def test_not_a_mapping_and_unknown_kinds_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="must be a mapping"):
        clusters.validate_ray_up_config(["not", "a", "dict"])  # type: ignore[arg-type]
    bad = tmp_path / "x.yaml"
    bad.write_text("apiVersion: v1\nkind: NoSuchKind\nmetadata: {name: a}\n")
    with pytest.raises(InvalidInput, match="no Kubernetes"):
        clusters.validate_file(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidInput, match="mapping"):
        clusters.validate_file(bad)
    bad.write_text("a: [\n")
    with pytest.raises(InvalidInput, match="not readable YAML"):
        clusters.validate_file(bad)
