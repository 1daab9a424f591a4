"""Offline validation of every cluster file: `ray up` configs through Ray's own checks, KubeRay
manifests through the CRD schemas and operator rules, core objects through kubernetes-validate;
and every deliberately broken copy in clusters/broken/ must fail, for the reason it states."""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from dlplatform import clusters
from dlplatform.clusters import kuberay, ray_up, rendering
from dlplatform.errors import InvalidInput

REPO = Path(__file__).resolve().parents[3]
CLUSTERS = REPO / "clusters"
RAY_UP = sorted((CLUSTERS / "ray-up").glob("*.yaml"))
KUBERAY = sorted((CLUSTERS / "kuberay").glob("*.yaml"))
BROKEN = sorted((CLUSTERS / "broken").rglob("*.yaml"))
RAY_VERSION = ray_up.installed_ray_version()


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


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_ray_up_token_file_is_made_owner_only_on_every_node(path: Path) -> None:
    """`ray get-auth-token --generate` writes with the default umask and rsync keeps that mode."""
    raw = yaml.safe_load(path.read_text())
    assert "~/.ray/auth_token" in raw["file_mounts"]
    prepared = clusters.validate_ray_up_config(copy.deepcopy(raw), name=path.name)
    for key in ("head_setup_commands", "worker_setup_commands"):
        assert "chmod 600 ~/.ray/auth_token" in prepared[key]
    raw["setup_commands"] = [c for c in raw["setup_commands"] if "chmod" not in c]
    with pytest.raises(InvalidInput, match=r"must make the token file owner-only"):
        clusters.validate_ray_up_config(raw, name=path.name)


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


def test_rayjob_is_a_teams_job_on_a_ray_cluster_of_its_own() -> None:
    """Not a job on the platform's shared cluster (clusterSelector): there, its code would be
    trusted like the platform's operators (test_k8s_security checks what it holds)."""
    job = _doc("rayjob.yaml", "RayJob")
    assert "clusterSelector" not in job["spec"]
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == RAY_VERSION
    assert job["metadata"]["namespace"] != _doc("raycluster.yaml")["metadata"]["namespace"]
    assert job["spec"]["entrypoint"].split()[:3] == ["python", "-m", "team_job.train"]


def test_lab_is_a_deployment_a_service_and_a_claim_of_one_user() -> None:
    docs = clusters.load_documents(CLUSTERS / "kuberay" / "lab.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    service = next(d for d in docs if d["kind"] == "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["dlplatform.io/lab-user"] == clusters.LAB_USER_TEMPLATE
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert {d["metadata"]["name"] for d in docs} == {f"dlp-lab-{clusters.LAB_USER_TEMPLATE}"}
    # DLP_URL is the Service KubeRay makes for the RayCluster's head, on Serve's port
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    rc = _doc("raycluster.yaml")
    ports = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["ports"]
    serve_port = next(p["containerPort"] for p in ports if p["name"] == "serve")
    service_dns = (
        f"{rc['metadata']['name']}-head-svc.{clusters.TEMPLATE_NAMESPACE}.svc.cluster.local"
    )
    assert env["DLP_URL"]["value"] == f"http://{service_dns}:{serve_port}"


def test_manifests_use_the_placeholder_image_with_the_ray_version_tag() -> None:
    images = set()
    for path in KUBERAY:
        for doc in clusters.load_documents(path):
            images |= {c["image"] for c in rendering._iter_containers(doc)}
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
    strict = kuberay._strict_schema(schema)
    assert strict["required"] == ["b"]
    assert strict["additionalProperties"] is False
    assert "additionalProperties" not in strict["properties"]["free"]
    assert strict["properties"]["map"]["additionalProperties"] == {"type": "string"}
    assert kuberay.drop_nulls({"a": None, "b": {"c": None, "d": 1}, "l": [{"e": None}]}) == {
        "b": {"d": 1}, "l": [{}]
    }  # fmt: skip


def test_null_values_are_dropped_like_the_api_server_does() -> None:
    rc = _doc("raycluster.yaml")
    rc["spec"]["suspend"] = None
    clusters.validate_kuberay_object(rc)


def test_crd_schemas_in_the_repo_are_kuberay_v1_7_0() -> None:
    folder = CLUSTERS / "schemas" / f"kuberay-{clusters.KUBERAY_VERSION}"
    for kind, file_name in kuberay.CRD_FILES.items():
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
