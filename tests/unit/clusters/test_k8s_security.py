"""The Kubernetes trust boundaries, checked offline on every manifest (issue 18): restricted pods,
NetworkPolicies around Ray's ports, a TLS Ingress for the gateway only, one lab per user that holds
only its user's Secret, teams' RayJobs on Ray clusters of their own; and validation that never
imports what a manifest names."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from dlplatform import clusters
from dlplatform.clusters import kuberay, security
from dlplatform.errors import InvalidInput

REPO = Path(__file__).resolve().parents[3]
KUBERAY = REPO / "clusters" / "kuberay"
IMAGE = "registry.example.com/ml/dlplatform:2.60.0"


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    files = clusters.render(
        IMAGE, "ml-prod", lab_users=["alice", "bob"], gateway_host="dlp.corp.example",
        operator_namespace="kuberay", job_team="vision",
    )  # fmt: skip
    return {name: [d for d in yaml.safe_load_all(text) if d] for name, text in files.items()}


def _doc(name: str, kind: str) -> dict[str, Any]:
    return next(d for d in clusters.load_documents(KUBERAY / name) if d["kind"] == kind)


def _write(tmp_path: Path, name: str, docs: list[dict[str, Any]]) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def _refused(tmp_path: Path, name: str, docs: list[dict[str, Any]], message: str) -> str:
    """``validate_file`` refuses ``docs`` with ``message`` (the public entry point of the rules)."""
    with pytest.raises(InvalidInput) as info:
        clusters.validate_file(_write(tmp_path, name, docs))
    assert message in info.value.message, info.value.message
    return info.value.message


def _pods(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(where, labels, pod spec) of every pod a manifest makes; written here, not borrowed from
    the module under test."""
    spec = doc.get("spec") or {}
    kind = doc["kind"]
    out = []
    if kind in ("Deployment", "StatefulSet", "Job"):
        t = spec["template"]
        out.append((kind, t["metadata"]["labels"], t["spec"]))
    cluster = {"RayCluster": spec, "RayService": spec.get("rayClusterConfig"),
               "RayJob": spec.get("rayClusterSpec")}.get(kind)  # fmt: skip
    if cluster:
        groups = [("head", cluster["headGroupSpec"])] + [
            (g["groupName"], g) for g in cluster.get("workerGroupSpecs", [])
        ]
        for where, group in groups:
            t = group["template"]
            out.append((f"{kind} {where}", t["metadata"]["labels"], t["spec"]))
    if kind == "RayJob":
        t = spec["submitterPodTemplate"]
        out.append(("submitter", t["metadata"]["labels"], t["spec"]))
    return out


# --- every pod restricted (finding 10) ------------------------------------------------------


def test_every_rendered_pod_and_container_is_restricted(rendered) -> None:
    seen = 0
    for name, docs in rendered.items():
        for doc in docs:
            for where, _labels, pod in _pods(doc):
                seen += 1
                sc = pod["securityContext"]
                assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, (name, where)
                assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, (name, where)
                head_of_autoscaler = where.endswith("head") and doc["kind"] != "RayJob"
                assert pod["automountServiceAccountToken"] is head_of_autoscaler, (name, where)
                for c in pod.get("initContainers", []) + pod["containers"]:
                    csc = c["securityContext"]
                    assert csc["allowPrivilegeEscalation"] is False, (name, where)
                    assert csc["capabilities"] == {"drop": ["ALL"]}, (name, where)
            cluster = (doc.get("spec") or {}).get("rayClusterConfig") or (
                doc["spec"] if doc["kind"] == "RayCluster" else None
            )
            if cluster:  # the autoscaler sidecar KubeRay adds to the head
                sidecar = cluster["autoscalerOptions"]["securityContext"]
                assert sidecar == {"allowPrivilegeEscalation": False,
                                   "capabilities": {"drop": ["ALL"]}}  # fmt: skip
    assert seen == 11  # RayCluster 3, RayService 3, RayJob 3, two labs


def test_the_ray_token_file_is_written_under_umask_077(rendered) -> None:
    for name in ("raycluster.yaml", "rayservice.yaml"):
        head = _pods(rendered[name][0])[0][2]["containers"][0]
        script = head["lifecycle"]["postStart"]["exec"]["command"][2]
        # in a subshell: the umask covers the token file, not what `dlp up` writes after it
        assert '(umask 077 && printf %s "$RAY_AUTH_TOKEN" > "$HOME/.ray-auth-token");' in script
        assert script.count(".ray-auth-token") == 2  # written once, then read by dlp up


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda pod: pod["securityContext"].pop("runAsNonRoot"), "set securityContext.runAsNonRoot"),
        (lambda pod: pod["securityContext"].pop("seccompProfile"), "seccompProfile.type: RuntimeDefault"),
        (lambda pod: pod["containers"][0]["securityContext"].__setitem__(
            "allowPrivilegeEscalation", True), "allowPrivilegeEscalation: false"),
        (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].__setitem__(
            "drop", ["NET_RAW"]), "capabilities.drop: [ALL]"),
        (lambda pod: pod["containers"][0]["securityContext"]["capabilities"].__setitem__(
            "add", ["NET_ADMIN"]), "adds capabilities ['NET_ADMIN']"),
        (lambda pod: pod["containers"][0]["securityContext"].__setitem__("privileged", True),
         "runs privileged"),
        (lambda pod: pod.__setitem__("automountServiceAccountToken", True),
         "worker group cpu: set automountServiceAccountToken: false"),
        (lambda pod: pod.pop("automountServiceAccountToken"), "automountServiceAccountToken"),
        (lambda pod: pod.__setitem__("hostNetwork", True), "hostNetwork is true"),
        (lambda pod: pod.__setitem__("volumes", [{"name": "h", "hostPath": {"path": "/"}}]),
         "volume 'h' is a hostPath"),
        (lambda pod: pod["containers"][0].__setitem__("args", [
            "echo $RAY_AUTH_TOKEN | tee /tmp/ray-token"]), "without `umask 077` first"),
    ],
)  # fmt: skip
def test_validate_refuses_a_ray_worker_that_is_not_restricted(
    mutate, message: str, tmp_path: Path
) -> None:
    rc = _doc("raycluster.yaml", "RayCluster")
    mutate(rc["spec"]["workerGroupSpecs"][0]["template"]["spec"])
    others = [d for d in clusters.load_documents(KUBERAY / "raycluster.yaml") if d is not rc][1:]
    _refused(tmp_path, "raycluster.yaml", [rc, *others], message)


def test_a_token_file_written_after_umask_077_passes_and_before_it_fails() -> None:
    pod = {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
           "automountServiceAccountToken": False}  # fmt: skip
    sc = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    ok = 'umask 077; printf %s "$T" > /run/ray/auth_token; umask 022; echo > /tmp/log'
    bad = 'printf %s "$T" > /run/ray/auth_token; umask 077'
    for script, problems in ((ok, 0), (bad, 1)):
        job = {"kind": "Pod", "metadata": {"name": "p"},
               "spec": {**pod, "containers": [{"name": "c", "securityContext": sc,
                                               "command": ["bash", "-c", script]}]}}  # fmt: skip
        assert len(security.pod_security_problems([job])) == problems, script


# --- NetworkPolicies around Ray's ports (finding 10) ----------------------------------------


def test_rendered_network_policies_admit_only_the_gateway_from_outside_the_ray_pods(rendered):
    rc_docs = rendered["raycluster.yaml"]
    [ray, gateway] = [d for d in rc_docs if d["kind"] == "NetworkPolicy"]
    label = {"dlplatform.io/ray-cluster": "dlplatform"}
    for _where, labels, _pod in _pods(rc_docs[0]):
        assert label.items() <= labels.items()
    assert ray["spec"]["podSelector"] == {"matchLabels": label}
    internal, operator = ray["spec"]["ingress"]
    assert internal == {"from": [{"podSelector": {"matchLabels": label}}]}  # every port
    assert operator["ports"] == [{"port": 8265, "protocol": "TCP"}]
    assert operator["from"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "kuberay"}  # --operator-namespace
    }
    assert gateway["spec"]["podSelector"]["matchLabels"]["ray.io/node-type"] == "head"
    assert gateway["spec"]["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]
    # the team's job cluster: its own pods only (no gateway rule)
    job_policy = next(d for d in rendered["rayjob.yaml"] if d["kind"] == "NetworkPolicy")
    job_label = {"dlplatform.io/ray-cluster": "dlp-job-vision"}
    assert job_policy["metadata"]["namespace"] == "dlp-team-vision"
    assert job_policy["spec"]["ingress"][0] == {
        "from": [{"podSelector": {"matchLabels": job_label}}]
    }
    assert all(r.get("ports") != [{"port": 8000, "protocol": "TCP"}]
               for r in job_policy["spec"]["ingress"])  # fmt: skip


def _ray_docs() -> list[dict[str, Any]]:
    return clusters.load_documents(KUBERAY / "raycluster.yaml")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # a rule that admits anyone to every port
        (lambda docs: docs[1]["spec"]["ingress"].append({}),
         "NetworkPolicy/dlplatform-ray admits every port from anywhere"),
        # the same cluster's label but from every namespace
        (lambda docs: docs[1]["spec"]["ingress"][0]["from"][0].__setitem__(
            "namespaceSelector", {}), "NetworkPolicy/dlplatform-ray admits every port from"),
        # the dashboard from anyone
        (lambda docs: docs[1]["spec"]["ingress"][1].pop("from"),
         "admits ports [8265] from anywhere"),
        # the operator, but on every port
        (lambda docs: docs[1]["spec"]["ingress"][1].pop("ports"), "admits every port from"),
        # the gateway's rule on every pod, not only the head
        (lambda docs: docs[2]["spec"]["podSelector"]["matchLabels"].pop("ray.io/node-type"),
         "admits ports [8000] from anywhere to RayCluster/dlplatform worker group cpu"),
        # a second, permissive policy that selects every pod of the namespace
        (lambda docs: docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                   "metadata": {"name": "allow-all"},
                                   "spec": {"podSelector": {}, "ingress": [{}]}}),
         "NetworkPolicy/allow-all admits every port from anywhere"),
        # the gateway's port as the start of a range
        (lambda docs: docs[2]["spec"]["ingress"][0]["ports"][0].__setitem__("endPort", 10001),
         "admits ports ['8000-10001'] from anywhere"),
        # a policy in another namespace does not apply to these pods
        (lambda docs: docs[1]["metadata"].__setitem__("namespace", "elsewhere"),
         "worker group cpu: no NetworkPolicy in this file selects it"),
        # no policy at all
        (lambda docs: docs.__delitem__(slice(1, 3)), "no NetworkPolicy in this file selects it"),
        # the gateway unreachable
        (lambda docs: docs.__delitem__(2), "no NetworkPolicy admits the gateway port 8000"),
    ],
)  # fmt: skip
def test_validate_refuses_network_policies_that_open_rays_ports(
    mutate, message: str, tmp_path: Path
) -> None:
    docs = _ray_docs()
    mutate(docs)
    _refused(tmp_path, "raycluster.yaml", docs, message)


def test_selectors_with_expressions_are_evaluated() -> None:
    labels = {"dlplatform.io/ray-cluster": "dlplatform", "ray.io/node-type": "worker"}
    selects = security._selects
    assert selects({}, labels)
    assert selects({"matchExpressions": [{"key": "ray.io/node-type", "operator": "In",
                                          "values": ["worker"]}]}, labels)  # fmt: skip
    assert not selects({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert selects({"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}, labels)
    assert not selects({"matchLabels": {"ray.io/node-type": "head"}}, labels)


# --- the Ingress (finding 10) ---------------------------------------------------------------


def test_rendered_ingress_serves_only_the_gateway_over_tls_for_its_host(rendered) -> None:
    [ingress] = rendered["ingress.yaml"]
    assert ingress["spec"]["tls"] == [
        {"hosts": ["dlp.corp.example"], "secretName": "dlplatform-gateway-tls"}
    ]
    [rule] = ingress["spec"]["rules"]
    assert rule["host"] == "dlp.corp.example"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "dlplatform-head-svc", "port": {"number": 8000}}
    # the gateway accepts that Host header (it refuses others)
    env = {e["name"]: e.get("value") for e in _pods(rendered["raycluster.yaml"][0])[0][2]
           ["containers"][0]["env"]}  # fmt: skip
    assert "dlp.corp.example" in yaml.safe_load(env["DLP_ALLOWED_HOSTS"])
    serve = yaml.safe_load(rendered["rayservice.yaml"][0]["spec"]["serveConfigV2"])
    assert "dlp.corp.example" in serve["applications"][0]["args"]["allowed_hosts"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda i: i["spec"].pop("tls"), "no tls section"),
        (lambda i: i["spec"]["rules"][0].pop("host"), "a rule without a host"),
        (lambda i: i["spec"]["tls"][0].__setitem__("hosts", ["other.example.com"]),
         "host dlplatform.example.com is not in a tls entry"),
        (lambda i: i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]
         .__setitem__("number", 8265), "port 8265 is not the gateway"),
        (lambda i: i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
         .__setitem__("name", "dlp-lab-default"), "backend dlp-lab-default port 8000 is not"),
    ],
)  # fmt: skip
def test_validate_refuses_an_ingress_beyond_the_gateway_or_without_tls(
    mutate, message: str, tmp_path: Path
) -> None:
    ingress = _doc("ingress.yaml", "Ingress")
    mutate(ingress)
    _refused(tmp_path, "ingress.yaml", [ingress], message)


def test_a_kustomization_needs_an_ingress_whose_host_the_gateway_allows(tmp_path: Path) -> None:
    for name in clusters.RENDERED_FILES:
        (tmp_path / name).write_text((KUBERAY / name).read_text())
    kustomization = tmp_path / "kustomization.yaml"
    clusters.validate_file(kustomization)
    ingress = (tmp_path / "ingress.yaml").read_text()
    (tmp_path / "ingress.yaml").write_text(ingress.replace("dlplatform.example.com", "dlp.org"))
    with pytest.raises(InvalidInput, match=r"host dlp\.org is not among the allowed hosts"):
        clusters.validate_file(kustomization)


# --- one lab per user (finding 3) -----------------------------------------------------------


def test_render_makes_one_lab_per_user_with_its_own_secret_claim_and_login(rendered) -> None:
    labs = rendered["lab.yaml"]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in labs) == sorted(
        (kind, f"dlp-lab-{user}")
        for user in ("alice", "bob")
        for kind in ("Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy")
    )
    for user in ("alice", "bob"):
        deployment = next(d for d in labs if d["kind"] == "Deployment"
                          and d["metadata"]["name"] == f"dlp-lab-{user}")  # fmt: skip
        pod = deployment["spec"]["template"]
        assert pod["metadata"]["labels"]["dlplatform.io/lab-user"] == user
        assert deployment["spec"]["selector"]["matchLabels"]["dlplatform.io/lab-user"] == user
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert set(env) == {"DLP_URL", "DLP_TOKEN", "JUPYTER_TOKEN"}
        assert (
            env["DLP_URL"]["value"] == "http://dlplatform-head-svc.ml-prod.svc.cluster.local:8000"
        )
        assert env["DLP_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": f"dlp-lab-{user}",
                                                                 "key": "token"}  # fmt: skip
        assert env["JUPYTER_TOKEN"]["valueFrom"]["secretKeyRef"] == {
            "name": f"dlp-lab-{user}", "key": "jupyter_token"}  # fmt: skip
        [volume] = pod["spec"]["volumes"]
        assert volume["persistentVolumeClaim"]["claimName"] == f"dlp-lab-{user}"
        service = next(d for d in labs if d["kind"] == "Service"
                       and d["metadata"]["name"] == f"dlp-lab-{user}")  # fmt: skip
        assert service["spec"]["selector"]["dlplatform.io/lab-user"] == user
        policy = next(d for d in labs if d["kind"] == "NetworkPolicy"
                      and d["metadata"]["name"] == f"dlp-lab-{user}")  # fmt: skip
        assert policy["spec"]["podSelector"]["matchLabels"]["dlplatform.io/lab-user"] == user
        assert policy["spec"]["ingress"] == [] and set(policy["spec"]["policyTypes"]) == {
            "Ingress", "Egress"}  # fmt: skip
        text = yaml.safe_dump(deployment)
        for needle in ("ray://", "RAY_", "AWS_", "DLP_S3_", "ray-token", "object-store", ":10001",
                       "dlplatform-lab"):  # fmt: skip
            assert needle not in text, needle
    # the platform's claims no longer include a shared lab claim
    assert [d["metadata"]["name"] for d in rendered["pvc.yaml"]] == ["dlplatform-home"]


def _lab_docs() -> list[dict[str, Any]]:
    return clusters.load_documents(KUBERAY / "lab.yaml")


def _lab_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return docs[0]["spec"]["template"]["spec"]


def _env(name: str, value: str | None = None, secret: str | None = None, key: str = "k") -> dict:
    if secret is not None:
        return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    return {"name": name, "value": value}


def _add_env(*entries: dict):
    return lambda pod: pod["containers"][0]["env"].extend(entries)


def _set_env(name: str, entry: dict | None):
    def mutate(pod: dict) -> None:
        env = [e for e in pod["containers"][0]["env"] if e["name"] != name]
        pod["containers"][0]["env"] = env + ([entry] if entry else [])

    return mutate


CREDENTIALS = "a lab pod must hold no cluster credentials, Ray addresses or other users' Secrets"


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
        # another user's Secret: the lab of `default` may read dlp-lab-default only
        (_add_env(_env("OTHER", secret="dlp-lab-bob", key="token")),
         "Secret 'dlp-lab-bob' as env OTHER"),
        (lambda pod: pod["containers"][0].__setitem__(
            "envFrom", [{"secretRef": {"name": "dlplatform-object-store", "optional": True}}]),
         "Secret 'dlplatform-object-store' as envFrom"),
        (lambda pod: pod["volumes"].append(
            {"name": "ray-token", "secret": {"secretName": "dlplatform-ray-token"}}),
         "Secret 'dlplatform-ray-token' as volume 'ray-token'"),
        (lambda pod: pod["volumes"].append({"name": "p", "projected": {"sources": [
            {"secret": {"name": "dlplatform-object-store"}}]}}),
         "Secret 'dlplatform-object-store' as volume 'p'"),
        (lambda pod: pod["volumes"].append(
            {"name": "bobs", "persistentVolumeClaim": {"claimName": "dlp-lab-bob"}}),
         "the claim 'dlp-lab-bob' as volume 'bobs'"),
        (lambda pod: pod["containers"][0]["command"].append(
            "--ServerApp.env=ray://head:10001"), "a Ray address in the command"),
        (lambda pod: pod.__setitem__("initContainers", [{"name": "init", "image": "busybox",
            "env": [_env("RAY_AUTH_TOKEN", secret="dlplatform-ray-token")]}]),
         "env RAY_AUTH_TOKEN in 'init'"),
        (lambda pod: pod.pop("automountServiceAccountToken"), "the Kubernetes API token"),
        (lambda pod: pod.__setitem__("serviceAccountName", "ray"),
         "ServiceAccount 'ray' with eks.amazonaws.com/role-arn"),
    ],
)  # fmt: skip
def test_lab_holding_cluster_credentials_or_another_users_fails(mutate, message: str) -> None:
    docs = _lab_docs()
    mutate(_lab_pod(docs))
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "ray", "annotations": {"eks.amazonaws.com/role-arn": "arn:..."}},
    }
    [problem] = security.lab_problems([*docs, account])
    assert problem.startswith(f"Deployment/dlp-lab-default: {CREDENTIALS}")
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
        (_set_env("DLP_TOKEN", _env("DLP_TOKEN", secret="dlp-lab-default", key="jupyter_token")),
         "DLP_TOKEN must come from Secret dlp-lab-default, key token"),
        (_set_env("JUPYTER_TOKEN", None), "JUPYTER_TOKEN is missing (its own Jupyter login"),
        (_set_env("JUPYTER_TOKEN", _env("JUPYTER_TOKEN", "letmein")), "not a literal value"),
        (lambda pod: pod["containers"][0]["command"].append("--ServerApp.token="),
         "the Jupyter login is set on the command line"),
        (_add_env(_env("DLP_GATEWAY_URL", "http://x:8000")), "DLP_GATEWAY_URL is not read"),
    ],
)  # fmt: skip
def test_lab_that_cannot_reach_the_gateway_as_its_user_with_its_own_login_fails(
    mutate, message: str
) -> None:
    docs = _lab_docs()
    mutate(_lab_pod(docs))
    problems = security.lab_problems(docs)
    assert any(p.startswith("Deployment/dlp-lab-default: ") and message in p for p in problems), (
        problems
    )


def test_the_shared_lab_of_old_is_refused(tmp_path: Path) -> None:
    """The lab before issue 18: no user label, one Jupyter login Secret for everyone."""
    docs = _lab_docs()
    pod = docs[0]["spec"]["template"]
    del pod["metadata"]["labels"]["dlplatform.io/lab-user"]
    _refused(tmp_path, "lab.yaml", docs, "a lab pod is one user's: label it dlplatform.io/lab-user")
    docs = _lab_docs()
    _set_env("JUPYTER_TOKEN", _env("JUPYTER_TOKEN", secret="dlplatform-lab", key="jupyter_token"))(
        _lab_pod(docs)
    )
    _refused(tmp_path, "lab.yaml", docs, "Secret 'dlplatform-lab' as env JUPYTER_TOKEN")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda np: np["spec"].__setitem__("ingress", [{"ports": [{"port": 8888}]}]),
         "a lab is reached by kubectl port-forward only"),
        (lambda np: np["spec"]["egress"].append({}), "a lab reaches only the gateway"),
        (lambda np: np["spec"]["egress"][0]["ports"].append({"port": 10001}),
         "a lab reaches only the gateway"),
        (lambda np: np["spec"]["egress"][0]["to"][0]["podSelector"]["matchLabels"].pop(
            "ray.io/node-type"), "a lab reaches only the gateway"),
        (lambda np: np["spec"].__setitem__("policyTypes", ["Ingress"]),
         "no NetworkPolicy in this file restricts the lab's ingress and egress"),
        (lambda np: np["spec"]["podSelector"]["matchLabels"].__setitem__(
            "dlplatform.io/lab-user", "bob"), "no NetworkPolicy in this file restricts"),
    ],
)  # fmt: skip
def test_lab_network_policy_lets_out_only_the_gateway_and_dns(
    mutate, message: str, tmp_path: Path
) -> None:
    docs = _lab_docs()
    mutate(next(d for d in docs if d["kind"] == "NetworkPolicy"))
    _refused(tmp_path, "lab.yaml", docs, message)


def test_lab_rule_finds_lab_pods_of_any_workload_and_leaves_ray_pods_alone() -> None:
    docs = _lab_docs()
    pod = docs[0]["spec"]["template"]
    pod["spec"]["containers"][0]["env"].append(_env("RAY_ADDRESS", "ray://head:10001"))
    bare = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lab", **pod["metadata"]},
            "spec": pod["spec"]}  # fmt: skip
    cron = {"kind": "CronJob", "metadata": {"name": "nightly"},
            "spec": {"jobTemplate": {"spec": {"template": pod}}}}  # fmt: skip
    assert [p.split(":")[0] for p in security.lab_problems([bare, cron])] == [
        "Pod/lab", "CronJob/nightly"
    ]  # fmt: skip
    # without the lab label the same pod is not the lab's (the Ray pods hold the token by design)
    pod["metadata"]["labels"]["app.kubernetes.io/component"] = "ray-head"
    assert security.lab_problems([bare]) == []
    ray = [*_ray_docs(), *clusters.load_documents(KUBERAY / "rayservice.yaml")]
    assert security.lab_problems(ray) == []


# --- a team's RayJob on a cluster of its own (finding 1) ------------------------------------


def test_rendered_rayjob_runs_on_its_own_cluster_and_reaches_only_the_gateway(rendered) -> None:
    job, _policy = rendered["rayjob.yaml"]
    assert job["metadata"]["namespace"] == "dlp-team-vision"  # not the platform's namespace
    assert job["metadata"]["labels"]["dlplatform.io/team"] == "vision"
    spec = job["spec"]
    assert "clusterSelector" not in spec and spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"]["authOptions"] == {"mode": "token"}  # a token of its own
    text = yaml.safe_dump(job)
    for needle in ("dlplatform-ray-token", "dlplatform-object-store", "dlplatform-home",
                   "DLP_ARTIFACT_ROOT", "RAY_AUTH", "ray://", ":10001", ":6379"):  # fmt: skip
        assert needle not in text, needle
    for _where, labels, pod in _pods(job):
        assert labels["dlplatform.io/ray-cluster"] == "dlp-job-vision"
        for c in pod["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            secrets = {e["valueFrom"]["secretKeyRef"]["name"] for e in env.values()
                       if "valueFrom" in e}  # fmt: skip
            secrets |= {s["secretRef"]["name"] for s in c.get("envFrom", [])}
            assert secrets <= {"dlp-job-token-vision", "dlp-job-store-vision"}
    head = _pods(job)[0][2]["containers"][0]
    env = {e["name"]: e for e in head["env"]}
    assert env["DLP_URL"]["value"] == "http://dlplatform-head-svc.ml-prod.svc.cluster.local:8000"
    assert env["DLP_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "dlp-job-token-vision", "key": "token"}  # fmt: skip


def _job_docs() -> list[dict[str, Any]]:
    return clusters.load_documents(KUBERAY / "rayjob.yaml")


def _shared_cluster(docs: list[dict[str, Any]]) -> None:
    spec = docs[0]["spec"]
    spec.pop("rayClusterSpec")
    spec["clusterSelector"] = {"ray.io/cluster": "dlplatform"}


def _head_env(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return docs[0]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0][
        "env"
    ]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_shared_cluster, "a RayJob on a shared Ray cluster (clusterSelector) runs its code with "
                          "the trust of that cluster's operators"),
        (lambda docs: docs[0]["spec"]["rayClusterSpec"]["authOptions"].__setitem__(
            "secretName", "dlplatform-ray-token"), "secretName 'dlplatform-ray-token': leave it out"),
        (lambda docs: docs[0]["spec"]["rayClusterSpec"].pop("authOptions"),
         "set rayClusterSpec.authOptions.mode: token"),
        (lambda docs: _head_env(docs).append(_env("RAY_AUTH_TOKEN", secret="dlplatform-ray-token")),
         "Secret 'dlplatform-ray-token' as env RAY_AUTH_TOKEN"),
        (lambda docs: _head_env(docs).append(_env("DLP_ARTIFACT_ROOT", "s3://dlplatform-artifacts")),
         "env DLP_ARTIFACT_ROOT in 'ray-head' (the artifact root)"),
        (lambda docs: _head_env(docs).append(_env("AWS_SECRET_ACCESS_KEY", "abc")),
         "env AWS_SECRET_ACCESS_KEY in 'ray-head' (object-store credentials)"),
        (lambda docs: _head_env(docs).append(_env("TOKEN", secret="dlp-job-token-other")),
         "Secret 'dlp-job-token-other' as env TOKEN"),
        (lambda docs: docs[0]["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
         .__setitem__("volumes", [{"name": "h", "persistentVolumeClaim":
                                   {"claimName": "dlplatform-home"}}]),
         "the claim 'dlplatform-home' as volume 'h'"),
        (lambda docs: docs[0]["spec"].__setitem__(
            "runtimeEnvYAML", "env_vars:\n  DLP_TOKEN: dlp_abc\n"),
         "DLP_TOKEN in runtimeEnvYAML (written into the manifest)"),
        (lambda docs: docs[0]["metadata"]["labels"].pop("dlplatform.io/team"),
         "label the RayJob dlplatform.io/team"),
    ],
)  # fmt: skip
def test_validate_refuses_a_rayjob_that_shares_the_platforms_trust(
    mutate, message: str, tmp_path: Path
) -> None:
    docs = _job_docs()
    mutate(docs)
    _refused(tmp_path, "rayjob.yaml", docs, message)


def test_a_teams_bucket_keys_from_its_own_secret_are_allowed() -> None:
    docs = _job_docs()
    _head_env(docs).append(_env("AWS_ACCESS_KEY_ID", secret="dlp-job-store-default"))
    _head_env(docs).append(_env("DLP_S3_ENDPOINT_URL", "http://minio.team:9000"))
    assert security.job_problems(docs) == []


def test_render_keeps_a_teams_job_out_of_the_platforms_namespace() -> None:
    with pytest.raises(InvalidInput, match="is the platform's namespace"):
        clusters.render(IMAGE, "ml", job_team="vision", job_namespace="ml")
    with pytest.raises(InvalidInput, match="--job-team"):
        clusters.render(IMAGE, "ml", job_team="Vision_Team")


# --- validation never imports what a manifest names (finding 19) ----------------------------

_RAYJOB = """
apiVersion: ray.io/v1
kind: RayJob
metadata: {{name: probe}}
spec:
  clusterSelector: {{ray.io/cluster: dlplatform}}
  entrypoint: python -m {module}
"""
_RAYSERVICE = """
apiVersion: ray.io/v1
kind: RayService
metadata: {{name: probe}}
spec:
  serveConfigV2: |
    applications:
      - name: app
        import_path: {import_path}
  rayClusterConfig:
    rayVersion: "2.60.0"
    headGroupSpec:
      rayStartParams: {{}}
      template:
        spec:
          containers: [{{name: ray-head, image: "dlplatform:2.60.0"}}]
"""


def test_validation_imports_no_module_a_manifest_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A package on sys.path whose import leaves a mark: validating manifests that name it (a
    RayJob entrypoint, a Serve import_path) must leave none, nor import the platform module a
    manifest names."""
    package = tmp_path / "site" / "probe_pkg"
    package.mkdir(parents=True)
    mark = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(mark)!r}, 'a').write('pkg ')\n")
    (package / "mod.py").write_text(f"open({str(mark)!r}, 'a').write('mod ')\napp = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    gateway_loaded = "dlplatform.api.gateway" in sys.modules
    said = {}
    for name, text in {
        "job.yaml": _RAYJOB.format(module="probe_pkg.mod"),
        "service.yaml": _RAYSERVICE.format(import_path="probe_pkg.mod:app"),
        "platform.yaml": _RAYSERVICE.format(import_path="dlplatform.api.gateway:build_gateway"),
    }.items():
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        with pytest.raises(InvalidInput) as info:  # each also breaks other rules
            clusters.validate_file(path)
        said[name] = info.value.message
    assert not mark.exists(), f"validation imported the probe package: {mark.read_text()}"
    assert not any(m.startswith("probe_pkg") for m in sys.modules)
    assert gateway_loaded or "dlplatform.api.gateway" not in sys.modules
    # what it said instead: an outside module in a Serve config cannot be checked offline
    assert "not a module of the platform" in said["service.yaml"]
    assert "does not resolve" not in said["platform.yaml"]  # the gateway's builder was found
    assert "entrypoint module" not in said["job.yaml"]  # a team's module: not checked offline


@pytest.mark.parametrize(
    ("import_path", "message"),
    [
        ("dlplatform.api.gateway:build_gateway", None),
        ("dlplatform.api.gateway:no_such_builder", "defines no no_such_builder"),
        (
            "dlplatform.api.no_such_module:app",
            "module dlplatform.api.no_such_module does not exist",
        ),
        ("dlplatform.api.gateway:deploy_gateway", "not a builder of one argument"),
        ("dlplatform.api.gateway:GATEWAY_APP", None),  # a module-level value: a built app
        ("dlplatform..api:x", "is not a Python module path"),
        ("os:system", "not a module of the platform"),
    ],
)
def test_serve_import_paths_are_checked_from_the_source_not_by_importing(
    import_path: str, message: str | None
) -> None:
    problem = kuberay._import_path_problem(import_path)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem


def test_platform_module_file_locates_without_importing() -> None:
    path = clusters.platform_module_file("dlplatform.train.entrypoint")
    assert path == REPO / "dlplatform" / "train" / "entrypoint.py"
    assert clusters.platform_module_file("dlplatform.train.nope") is None
    assert clusters.platform_module_file("dlplatform.nope.entrypoint") is None
    for bad in ("os", "dlplatform/train", "dlplatform.train.", "../dlplatform"):
        with pytest.raises(ValueError):
            clusters.platform_module_file(bad)


def test_an_external_ray_up_provider_is_refused_before_ray_could_import_it() -> None:
    config = {"cluster_name": "x", "provider": {"type": "external", "module": "probe.Provider"}}
    with pytest.raises(InvalidInput, match="names a module to import"):
        clusters.validate_ray_up_config(copy.deepcopy(config))
