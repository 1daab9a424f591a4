"""`dlp k8s render`: image, namespace, worker counts and GPU type filled in, output validated;
bad arguments are one-line errors. Plus static checks of the Dockerfile."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from dlplatform import clusters
from dlplatform.cli import app
from dlplatform.clusters import ray_up, rendering, security
from dlplatform.errors import InvalidInput

REPO = Path(__file__).resolve().parents[3]
IMAGE = "registry.example.com/ml/dlplatform:2.60.0-build7"


def _docs(files: dict[str, str], name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files[name]) if d]


def _groups(spec: dict) -> dict[str, dict]:
    return {g["groupName"]: g for g in spec["workerGroupSpecs"]}


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return clusters.render(IMAGE, "ml-prod", cpu_workers=3, gpu_workers=2, gpu_type="Tesla-T4")


def test_render_fills_image_namespace_workers_and_gpu_type(rendered: dict[str, str]) -> None:
    assert set(rendered) == set(clusters.RENDERED_FILES)
    text = "\n".join(rendered.values())
    assert not re.search(r"image: dlplatform:", text)
    assert ".dlplatform.svc" not in text and "dlplatform-head-svc.ml-prod.svc.cluster.local" in text
    for name in clusters.RENDERED_FILES:
        for doc in _docs(rendered, name):
            if doc["kind"] == "Kustomization":
                assert doc["namespace"] == "ml-prod" and "images" not in doc
            elif name == "rayjob.yaml":  # a team's job lives in the team's namespace
                assert doc["metadata"]["namespace"] == "dlp-team-default", doc["kind"]
            else:
                assert doc["metadata"]["namespace"] == "ml-prod", (name, doc["kind"])
            for container in rendering._iter_containers(doc):
                assert container["image"] in {IMAGE, f"{IMAGE}-gpu"}
    rc = _docs(rendered, "raycluster.yaml")[0]
    rs = _docs(rendered, "rayservice.yaml")[0]
    for spec in (rc["spec"], rs["spec"]["rayClusterConfig"]):
        groups = _groups(spec)
        assert groups["cpu"]["maxReplicas"] == 3 and groups["gpu"]["maxReplicas"] == 2
        gpu_pod = groups["gpu"]["template"]["spec"]
        assert gpu_pod["nodeSelector"]["nvidia.com/gpu.product"] == "Tesla-T4"
        assert gpu_pod["containers"][0]["image"] == f"{IMAGE}-gpu"
    serve = yaml.safe_load(rs["spec"]["serveConfigV2"])
    assert "dlplatform-serve-svc.ml-prod.svc" in serve["applications"][0]["args"]["allowed_hosts"]


def test_rendered_files_validate_as_files(rendered: dict[str, str], tmp_path: Path) -> None:
    for name, text in rendered.items():
        (tmp_path / name).write_text(text)
    for name in rendered:
        clusters.validate_file(tmp_path / name)


def test_rendered_labs_talk_to_the_gateway_each_as_its_own_user() -> None:
    files = clusters.render(IMAGE, "ml-prod", lab_users=["alice", "bob"])
    labs = [d for d in _docs(files, "lab.yaml") if d["kind"] == "Deployment"]
    assert [lab["metadata"]["name"] for lab in labs] == ["dlp-lab-alice", "dlp-lab-bob"]
    for lab, user in zip(labs, ("alice", "bob"), strict=True):
        pod = lab["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert (
            env["DLP_URL"]["value"] == "http://dlplatform-head-svc.ml-prod.svc.cluster.local:8000"
        )
        for var, key in (("DLP_TOKEN", "token"), ("JUPYTER_TOKEN", "jupyter_token")):
            assert env[var]["valueFrom"]["secretKeyRef"] == {"name": f"dlp-lab-{user}", "key": key}
        assert set(env) == {"DLP_URL", "DLP_TOKEN", "JUPYTER_TOKEN"}
        assert (
            pod["automountServiceAccountToken"] is False and "envFrom" not in pod["containers"][0]
        )
    assert "--lab-user alice --lab-user bob" in files["lab.yaml"].splitlines()[0]
    assert "dlp-lab-" not in "".join(v for k, v in files.items() if k != "lab.yaml")
    assert security.lab_problems(_docs(files, "lab.yaml")) == []


@pytest.mark.parametrize("lab_users", [[""], ["Alice"], ["a_b"], ["a/b"], ["x" * 60], [],
                                       ["alice", "alice"]])  # fmt: skip
def test_render_rejects_lab_users_that_cannot_name_a_lab(lab_users: list[str]) -> None:
    with pytest.raises(InvalidInput, match="--lab-user"):
        clusters.render(IMAGE, "ml", lab_users=lab_users)


def test_render_refuses_a_lab_template_with_cluster_credentials(tmp_path: Path) -> None:
    source = tmp_path / "kuberay"
    source.mkdir()
    for name in clusters.RENDERED_FILES:
        text = (REPO / "clusters" / "kuberay" / name).read_text()
        if name == "lab.yaml":
            text = text.replace("name: DLP_URL\n", "name: DLP_RAY_ADDRESS\n")
        (source / name).write_text(text)
    with pytest.raises(InvalidInput, match=r"rendered lab\.yaml: .*env DLP_RAY_ADDRESS"):
        clusters.render(IMAGE, "ml", source=source)


def test_zero_gpu_workers_drops_the_gpu_group_and_counts_cap_replicas(tmp_path: Path) -> None:
    files = clusters.render(IMAGE, "cpu-only", cpu_workers=0, gpu_workers=0)
    rc = _docs(files, "raycluster.yaml")[0]
    groups = _groups(rc["spec"])
    assert set(groups) == {"cpu"}
    assert (
        groups["cpu"]["replicas"]
        == groups["cpu"]["minReplicas"]
        == groups["cpu"]["maxReplicas"]
        == 0
    )
    assert "nvidia.com/gpu" not in files["raycluster.yaml"]
    # the CPU-only output passes `dlp k8s validate` as files; unannotated, it would not
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    for name in files:
        clusters.validate_file(tmp_path / name)
    rc["metadata"]["annotations"].pop(clusters.CPU_ONLY_ANNOTATION)
    assert any("nvidia.com/gpu" in p for p in clusters.platform_manifest_problems([rc]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"image": "dlplatform:latest"}, "must be tagged with the Ray version"),
        ({"image": "dlplatform"}, "must be tagged with the Ray version"),
        ({"image": "dlplatform:2.6.0"}, "must be tagged with the Ray version"),
        ({"image": "dlplatform:2.60.0@sha256:" + "a" * 64}, "--gpu-image"),
        ({"namespace": "ML_Prod"}, "DNS-1123"),
        ({"namespace": "../etc"}, "DNS-1123"),
        ({"cpu_workers": -1}, "--cpu-workers"),
        ({"gpu_workers": 5000}, "--gpu-workers"),
        ({"gpu_type": "T4; rm -rf /"}, "label value"),
        ({"gpu_image": "dlplatform:latest-gpu"}, "--gpu-image"),
    ],
)
def test_render_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"image": IMAGE, "namespace": "ml", **kwargs}
    with pytest.raises(InvalidInput, match=re.escape(message)):
        clusters.render(**args)


def test_render_validates_its_output(tmp_path: Path) -> None:
    """A template that renders into an invalid object is refused, nothing is returned."""
    source = tmp_path / "kuberay"
    source.mkdir()
    for name in clusters.RENDERED_FILES:
        text = (REPO / "clusters" / "kuberay" / name).read_text()
        if name == "raycluster.yaml":
            text = text.replace(
                "      maxReplicas: 8\n", "      maxReplicas: 8\n      maxReplica: 9\n"
            )
        (source / name).write_text(text)
    with pytest.raises(InvalidInput, match="'maxReplica' was unexpected"):
        clusters.render(IMAGE, "ml", source=source)


def test_cli_render_writes_files_and_refuses_to_overwrite(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["k8s", "render", "--image", IMAGE, "--namespace", "team-a", "--cpu-workers", "2",
            "--gpu-workers", "1", "--gpu-type", "NVIDIA-L4", "--out", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(Path(f).name for f in report["files"]) == sorted(clusters.RENDERED_FILES)
    assert report["labs"] == [{"user": "default", "secret": "dlp-lab-default"}]
    assert report["job"] == {"team": "default", "namespace": "dlp-team-default",
                             "token_secret": "dlp-job-token-default"}  # fmt: skip
    rc = next(yaml.safe_load_all((out / "raycluster.yaml").read_text()))
    assert rc["metadata"]["namespace"] == "team-a"
    assert _groups(rc["spec"])["gpu"]["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-L4"
    }
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert again.stderr.strip().startswith("error:") and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0


def test_cli_render_writes_one_lab_per_lab_user_and_a_teams_job(tmp_path: Path) -> None:
    args = ["k8s", "render", "--image", IMAGE, "--namespace", "ml", "--lab-user", "alice",
            "--lab-user", "bob", "--job-team", "vision", "--gateway-host", "dlp.example.org",
            "--out", str(tmp_path), "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["labs"] == [{"user": "alice", "secret": "dlp-lab-alice"},
                              {"user": "bob", "secret": "dlp-lab-bob"}]  # fmt: skip
    assert (
        report["job"]["namespace"] == "dlp-team-vision"
        and report["gateway_host"] == "dlp.example.org"
    )
    names = {d["metadata"]["name"] for d in yaml.safe_load_all((tmp_path / "lab.yaml").read_text())}
    assert names == {"dlp-lab-alice", "dlp-lab-bob"}


def test_cli_render_bad_image_is_one_line_exit_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["k8s", "render", "--image", "dlplatform:latest", "--namespace", "ml", "--out",
              str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error:")
    ]
    assert not (tmp_path / "o").exists()


def test_cli_validate_reports_broken_files() -> None:
    runner = CliRunner()
    good = runner.invoke(
        app,
        ["k8s", "validate", str(REPO / "clusters" / "kuberay" / "pvc.yaml"),
         str(REPO / "clusters" / "ray-up" / "local.yaml"), "--json"],
    )  # fmt: skip
    assert good.exit_code == 0, good.output
    assert [r["ok"] for r in json.loads(good.stdout)] == [True, True]  # Ray's chatter: stderr
    bad = runner.invoke(
        app,
        [
            "k8s",
            "validate",
            str(REPO / "clusters" / "broken" / "kuberay" / "pvc-unknown-field.yaml"),
        ],
    )
    assert bad.exit_code == 1 and "1 of 1 files are invalid" in bad.stderr
    lab = runner.invoke(
        app,
        ["k8s", "validate", str(REPO / "clusters" / "broken" / "kuberay" / "lab-ray-token.yaml"),
         "--json"],
    )  # fmt: skip
    assert lab.exit_code == 1
    [row] = json.loads(lab.stdout)
    assert "a lab pod must hold no cluster credentials" in row["problem"]
    assert "env RAY_AUTH_TOKEN" in row["problem"]


# --- the container image ---------------------------------------------------------------------


def test_dockerfile_builds_on_the_official_ray_image_and_installs_the_package() -> None:
    text = (REPO / "Dockerfile").read_text()
    ray_version = ray_up.installed_ray_version()
    assert re.search(rf"^ARG BASE_IMAGE=rayproject/ray:{re.escape(ray_version)}-py311$", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    assert re.search(r'pip install "/home/ray/dlplatform-src\[lab\]"', text)
    for source in re.findall(r"^COPY (?:--chown=\S+ )?(.+) \S+$", text, re.M):
        for part in source.split():
            assert (REPO / part).exists(), part
    lines = (REPO / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for needed in ("dlplatform", "pyproject.toml", "README.md"):
        assert needed not in ignored
