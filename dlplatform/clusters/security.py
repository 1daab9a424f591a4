"""The platform's security rules for Kubernetes manifests, checked offline on every object.

Who reaches what, and the rule that checks it (``security_problems`` runs them all on one file's
objects; ``clusters.validate_file`` and ``clusters.render`` call it):

- **Every pod** runs restricted: ``runAsNonRoot``, ``seccompProfile: RuntimeDefault``, no host
  namespaces or hostPath, and each container ``allowPrivilegeEscalation: false`` with all
  capabilities dropped. Only the head of an autoscaling Ray cluster mounts a Kubernetes API token
  (its autoscaler sidecar scales the workers); every other pod says
  ``automountServiceAccountToken: false``. A token file is written under ``umask 077``
  (``pod_security_problems``).
- **Ray pods** of one cluster carry ``dlplatform.io/ray-cluster: NAME``. A NetworkPolicy in the
  same file admits Ray's ports only from pods with that label (in the same namespace), the
  dashboard (8265) from the KubeRay operator, and, on the platform's head, the gateway (8000) from
  anywhere; nothing else (``network_policy_problems``).
- **The Ingress** serves only the gateway's port, over TLS, for named hosts (``ingress_problems``).
- **A lab** (``app.kubernetes.io/component: lab``) belongs to one user
  (``dlplatform.io/lab-user: USER``): it reads only the Secret ``dlp-lab-USER`` (``token``: the
  user's platform token, ``jupyter_token``: its Jupyter login), mounts only its claim
  ``dlp-lab-USER``, holds no Ray token, Ray address, object-store credential or API token, and its
  NetworkPolicy admits nothing in and lets out only the gateway and DNS (``lab_problems``).
- **A team's RayJob** runs on a Ray cluster of its own (``rayClusterSpec``, never
  ``clusterSelector``: code on a shared cluster is trusted like its operators), with a Ray token of
  its own, the team's platform token from ``dlp-job-token-TEAM`` and at most the team's bucket keys
  from ``dlp-job-store-TEAM``; nothing of the platform's (``job_problems``).

Across the files of one deployment (a kustomization, a render), ``deployment_problems`` checks that
an Ingress exists and that its hosts are among the gateway's allowed hosts.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from typing import Any

import yaml

RAY_CLUSTER_LABEL = "dlplatform.io/ray-cluster"
"""On every pod of a Ray cluster; its NetworkPolicy admits Ray's ports from these pods only."""
LAB_USER_LABEL = "dlplatform.io/lab-user"
TEAM_LABEL = "dlplatform.io/team"
COMPONENT_LABEL = "app.kubernetes.io/component"
NODE_TYPE_LABEL = "ray.io/node-type"  # set by KubeRay: head or worker
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace
OPERATOR_LABELS = {"app.kubernetes.io/name": "kuberay-operator"}
GATEWAY_PORT = 8000
DASHBOARD_PORT = 8265
LAB_PREFIX = "dlp-lab-"
"""A lab's objects, its Secret and its claim are all named ``dlp-lab-<user>``."""
LAB_TOKEN_KEY = "token"
LAB_JUPYTER_KEY = "jupyter_token"
JOB_TOKEN_PREFIX = "dlp-job-token-"
JOB_STORE_PREFIX = "dlp-job-store-"

_POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
_RAY_KINDS = ("RayCluster", "RayService", "RayJob")
_FORBIDDEN_ENV = {
    "RAY_ADDRESS": "a Ray address",
    "DLP_RAY_ADDRESS": "a Ray address",
    "DLP_ARTIFACT_ROOT": "the artifact root",
    "GOOGLE_APPLICATION_CREDENTIALS": "object-store credentials",
}
_FORBIDDEN_ENV_PREFIXES = {
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
_PLATFORM_CLAIM_PREFIXES = ("dlplatform-", LAB_PREFIX)
_JUPYTER_LOGIN_FLAGS = re.compile(
    r"--(?:ServerApp|NotebookApp|IdentityProvider)\.(?:token|password)\b"
)
# A shell redirection or tee into a file whose name says token (e.g. > "$HOME/.ray-auth-token").
_TOKEN_FILE_WRITE = re.compile(
    r"(?:>>?|\btee\s+(?:-a\s+)?)\s*[\"']?[^\s;&|\"']*token[^\s;&|\"']*", re.IGNORECASE
)
_UMASK_077 = re.compile(r"\bumask\s+0?077\b")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --- the pods of an object ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PodTemplate:
    """One pod an object makes: where it is, its labels and spec, and what role it plays."""

    where: str
    labels: dict[str, Any]  # the pod's own labels (what a NetworkPolicy selects)
    spec: dict[str, Any]
    ray_kind: str | None = None  # RayCluster, RayService or RayJob: a pod of a Ray cluster
    namespace: str | None = None
    owner_labels: tuple[tuple[str, Any], ...] = ()  # the labels of the object that makes it
    is_head: bool = False
    may_mount_api_token: bool = False  # the head of an autoscaling cluster (its autoscaler)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def object_name(obj: dict[str, Any]) -> str:
    """``Kind/name`` of a manifest, for messages."""
    return f"{obj.get('kind', '?')}/{_mapping(obj.get('metadata')).get('name', '?')}"


def ray_cluster_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    """The Ray cluster spec inside a RayCluster, RayService or RayJob (None: there is none)."""
    spec = _mapping(obj.get("spec"))
    cluster = {
        "RayCluster": spec,
        "RayService": spec.get("rayClusterConfig"),
        "RayJob": spec.get("rayClusterSpec"),
    }.get(str(obj.get("kind")))
    return cluster if isinstance(cluster, dict) else None


def pod_templates(obj: dict[str, Any]) -> list[PodTemplate]:
    """Every pod ``obj`` makes: a Pod, a workload's template, a Ray cluster's head and workers,
    a RayJob's submitter."""
    namespace = _mapping(obj.get("metadata")).get("namespace")
    return [dataclasses.replace(p, namespace=namespace) for p in _pod_templates(obj)]


def _pod_templates(obj: dict[str, Any]) -> list[PodTemplate]:
    kind, name = obj.get("kind"), object_name(obj)
    spec = _mapping(obj.get("spec"))
    meta_labels = _mapping(_mapping(obj.get("metadata")).get("labels"))
    if kind == "Pod":
        return [PodTemplate(name, dict(meta_labels), spec)]
    template: Any = None
    if kind == "CronJob":
        template = _mapping(_mapping(spec.get("jobTemplate")).get("spec")).get("template")
    elif kind in _POD_TEMPLATE_KINDS:
        template = spec.get("template")
    if template is not None:
        t = _mapping(template)
        labels = dict(_mapping(_mapping(t.get("metadata")).get("labels")))
        owner = tuple(meta_labels.items())
        return [PodTemplate(name, labels, _mapping(t.get("spec")), owner_labels=owner)]
    cluster = ray_cluster_spec(obj)
    pods: list[PodTemplate] = []
    if cluster is not None:
        autoscaled = cluster.get("enableInTreeAutoscaling") is True
        head = _mapping(_mapping(cluster.get("headGroupSpec")).get("template"))
        pods.append(
            PodTemplate(
                f"{name} head",
                # KubeRay adds ray.io/node-type to each pod it makes (a NetworkPolicy may use it)
                {
                    **_mapping(_mapping(head.get("metadata")).get("labels")),
                    NODE_TYPE_LABEL: "head",
                },
                _mapping(head.get("spec")),
                str(kind),
                is_head=True,
                may_mount_api_token=autoscaled,
            )
        )
        for i, group in enumerate(_list(cluster.get("workerGroupSpecs"))):
            t = _mapping(_mapping(group).get("template"))
            label = _mapping(group).get("groupName", i)
            pods.append(
                PodTemplate(
                    f"{name} worker group {label}",
                    {
                        **_mapping(_mapping(t.get("metadata")).get("labels")),
                        NODE_TYPE_LABEL: "worker",
                    },
                    _mapping(t.get("spec")),
                    str(kind),
                )
            )
    if kind == "RayJob" and isinstance(spec.get("submitterPodTemplate"), dict):
        t = spec["submitterPodTemplate"]
        pods.append(
            PodTemplate(
                f"{name} submitter",
                dict(_mapping(_mapping(t.get("metadata")).get("labels"))),
                _mapping(t.get("spec")),
                "RayJob",
            )
        )
    return pods


def _containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainers", "containers"):
        yield from (c for c in _list(spec.get(key)) if isinstance(c, dict))


def _env(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(e.get("name", "")): e for e in _list(c.get("env")) if isinstance(e, dict)}


def _secret_ref(entry: dict[str, Any]) -> dict[str, Any]:
    return _mapping(_mapping(entry.get("valueFrom")).get("secretKeyRef"))


def _shell_texts(c: dict[str, Any]) -> list[str]:
    texts = [*_list(c.get("command")), *_list(c.get("args"))]
    for hook in _mapping(c.get("lifecycle")).values():
        texts += _list(_mapping(_mapping(hook).get("exec")).get("command"))
    return [t for t in texts if isinstance(t, str)]


# --- pod security -------------------------------------------------------------------------------


def _container_security(sc: Any, where: str) -> list[str]:
    sc = _mapping(sc)
    problems: list[str] = []
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: set securityContext.allowPrivilegeEscalation: false")
    caps = _mapping(sc.get("capabilities"))
    if "ALL" not in _list(caps.get("drop")):
        problems.append(f"{where}: set securityContext.capabilities.drop: [ALL]")
    if _list(caps.get("add")):
        problems.append(f"{where}: adds capabilities {caps['add']}")
    if sc.get("privileged") is True:
        problems.append(f"{where}: runs privileged")
    if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
        problems.append(f"{where}: runs as root")
    if _mapping(sc.get("seccompProfile")).get("type") not in (None, "RuntimeDefault", "Localhost"):
        problems.append(f"{where}: seccompProfile {sc['seccompProfile'].get('type')!r}")
    return problems


def _unquoted(text: str) -> str:
    return " ".join(text.replace('"', "").replace("'", "").split())


def _pod_security(pod: PodTemplate) -> list[str]:
    spec, where = pod.spec, pod.where
    sc = _mapping(spec.get("securityContext"))
    problems: list[str] = []
    if sc.get("runAsNonRoot") is not True:
        problems.append(f"{where}: set securityContext.runAsNonRoot: true")
    if sc.get("runAsUser") == 0:
        problems.append(f"{where}: runs as root (runAsUser 0)")
    if _mapping(sc.get("seccompProfile")).get("type") != "RuntimeDefault":
        problems.append(f"{where}: set securityContext.seccompProfile.type: RuntimeDefault")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key) is True:
            problems.append(f"{where}: {key} is true")
    for volume in _list(spec.get("volumes")):
        if isinstance(volume, dict) and "hostPath" in volume:
            problems.append(f"{where}: volume {volume.get('name')!r} is a hostPath")
    mount = spec.get("automountServiceAccountToken")
    if mount is not False and not (mount is True and pod.may_mount_api_token):
        problems.append(
            f"{where}: set automountServiceAccountToken: false (only the head of an autoscaling "
            "Ray cluster needs a Kubernetes API token)"
        )
    for c in _containers(spec):
        cwhere = f"{where} container {c.get('name')!r}"
        problems += _container_security(c.get("securityContext"), cwhere)
        for text in _shell_texts(c):
            for m in _TOKEN_FILE_WRITE.finditer(text):
                if not _UMASK_077.search(text[: m.start()]):
                    problems.append(
                        f"{cwhere}: writes a token file ({_unquoted(m.group(0))}) without "
                        "`umask 077` first: other users on the node could read it"
                    )
    return problems


def pod_security_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every pod and container restricted, API tokens only where needed, token files umask 077."""
    problems: list[str] = []
    for obj in docs:
        for pod in pod_templates(obj):
            problems += _pod_security(pod)
        cluster = ray_cluster_spec(obj)
        if cluster is not None and cluster.get("enableInTreeAutoscaling") is True:
            options = _mapping(cluster.get("autoscalerOptions"))
            problems += _container_security(
                options.get("securityContext"),
                f"{object_name(obj)} autoscalerOptions (the autoscaler sidecar)",
            )
    return problems


# --- network policies ---------------------------------------------------------------------------


def _selects(selector: Any, labels: dict[str, Any]) -> bool:
    """Whether a label selector (matchLabels, matchExpressions) selects ``labels``."""
    selector = _mapping(selector)
    if any(labels.get(k) != v for k, v in _mapping(selector.get("matchLabels")).items()):
        return False
    for expr in _list(selector.get("matchExpressions")):
        key, op = _mapping(expr).get("key"), _mapping(expr).get("operator")
        values = _list(_mapping(expr).get("values"))
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(str(op), False)
        if not ok:
            return False
    return True


def _policy_types(np: dict[str, Any]) -> set[str]:
    spec = _mapping(np.get("spec"))
    if "policyTypes" in spec:
        return {str(t) for t in _list(spec["policyTypes"])}
    return {"Ingress", *(["Egress"] if "egress" in spec else [])}


def _ports(rule: dict[str, Any]) -> list[Any] | None:
    """The ports a rule names (None: every port; a range ``port-endPort``, or ``any`` for an
    entry without a port, is never one of the allowed ports)."""
    ports = [_mapping(p) for p in _list(rule.get("ports"))]
    if not ports:
        return None
    return [
        p.get("port", "any") if p.get("endPort") in (None, p.get("port")) else
        f"{p.get('port')}-{p['endPort']}"
        for p in ports
    ]  # fmt: skip


def _only_ports(rule: dict[str, Any], allowed: set[Any]) -> bool:
    ports = _ports(rule)
    return ports is not None and all(p in allowed for p in ports)


def _is_cluster_peer(peer: Any, cluster: str) -> bool:
    peer = _mapping(peer)
    labels = _mapping(_mapping(peer.get("podSelector")).get("matchLabels"))
    return set(peer) == {"podSelector"} and labels.get(RAY_CLUSTER_LABEL) == cluster


def _is_operator_peer(peer: Any) -> bool:
    peer = _mapping(peer)
    namespace = _mapping(_mapping(peer.get("namespaceSelector")).get("matchLabels"))
    pods = _mapping(_mapping(peer.get("podSelector")).get("matchLabels"))
    return (
        set(peer) == {"namespaceSelector", "podSelector"}
        and set(namespace) == {NAMESPACE_NAME_LABEL}
        and OPERATOR_LABELS.items() <= pods.items()
    )


def _describe(rule: dict[str, Any], peers_key: str) -> str:
    ports = _ports(rule)
    peers = _list(rule.get(peers_key))
    what = "every port" if ports is None else f"ports {ports}"
    return f"{what} {'from' if peers_key == 'from' else 'to'} {peers or 'anywhere'}"


def _ray_ingress_problem(
    np: dict[str, Any], rule: dict[str, Any], pod: PodTemplate, cluster: str
) -> str | None:
    peers = _list(rule.get("from"))
    if peers and all(_is_cluster_peer(p, cluster) for p in peers):
        return None  # the cluster's own pods: every port
    operator = peers and all(_is_operator_peer(p) for p in peers)
    if operator and _only_ports(rule, {DASHBOARD_PORT, "dashboard"}):
        return None
    gateway = pod.is_head and pod.ray_kind in ("RayCluster", "RayService")
    if gateway and _only_ports(rule, {GATEWAY_PORT, "serve"}):
        return None
    return (
        f"{object_name(np)} admits {_describe(rule, 'from')} to {pod.where}: only the pods of "
        f"Ray cluster {cluster!r} may reach Ray's ports (the KubeRay operator the dashboard "
        f"{DASHBOARD_PORT}, anyone the gateway {GATEWAY_PORT} on the platform's head)"
    )


def _gateway_egress(rule: dict[str, Any]) -> bool:
    peers = _list(rule.get("to"))
    for peer in peers:
        labels = _mapping(_mapping(_mapping(peer).get("podSelector")).get("matchLabels"))
        if labels.get(NODE_TYPE_LABEL) != "head" or RAY_CLUSTER_LABEL not in labels:
            return False
        if set(_mapping(peer)) - {"podSelector", "namespaceSelector"}:
            return False
    return bool(peers) and _only_ports(rule, {GATEWAY_PORT})


def _lab_network_problems(
    pod: PodTemplate, policies: list[dict[str, Any]], user: str | None
) -> list[str]:
    problems: list[str] = []
    types = set().union(*(_policy_types(np) for np in policies)) if policies else set()
    if not {"Ingress", "Egress"} <= types:
        problems.append(
            f"{pod.where}: no NetworkPolicy in this file restricts the lab's ingress and egress "
            f"(podSelector {LAB_USER_LABEL}: {user}, policyTypes [Ingress, Egress])"
        )
    for np in policies:
        spec = _mapping(np.get("spec"))
        for rule in _list(spec.get("ingress")):
            problems.append(
                f"{object_name(np)} admits {_describe(_mapping(rule), 'from')} to the lab "
                f"{pod.where}: a lab is reached by kubectl port-forward only"
            )
        for rule in _list(spec.get("egress")):
            rule = _mapping(rule)
            if not (_only_ports(rule, {53}) or _gateway_egress(rule)):
                problems.append(
                    f"{object_name(np)} lets the lab {pod.where} reach {_describe(rule, 'to')}: "
                    f"a lab reaches only the gateway ({GATEWAY_PORT} on the platform's head) and "
                    "DNS (53)"
                )
    return problems


def _selecting(policies: list[dict[str, Any]], pod: PodTemplate) -> list[dict[str, Any]]:
    """The policies that apply to ``pod``: in its namespace (unset: the same as the pod's), with
    a selector that selects its labels."""
    return [
        np
        for np in policies
        if _mapping(np.get("metadata")).get("namespace") in (None, pod.namespace)
        and _selects(_mapping(np.get("spec")).get("podSelector"), pod.labels)
    ]


def network_policy_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Ray pods and labs are covered by NetworkPolicies in the same file, and those admit only
    what the module docstring lists."""
    policies = [d for d in docs if d.get("kind") == "NetworkPolicy"]
    problems: list[str] = []
    for obj in docs:
        pods = pod_templates(obj)
        ray_pods = [p for p in pods if p.ray_kind is not None]
        names = {p.labels.get(RAY_CLUSTER_LABEL) for p in ray_pods}
        if ray_pods and (len(names) != 1 or not isinstance(next(iter(names)), str)):
            problems.append(
                f"{object_name(obj)}: every pod of the Ray cluster needs the same label "
                f"{RAY_CLUSTER_LABEL} (its NetworkPolicy admits Ray's ports from those pods only)"
            )
            continue
        for pod in ray_pods:
            cluster = str(pod.labels[RAY_CLUSTER_LABEL])
            mine = _selecting(policies, pod)
            if not any("Ingress" in _policy_types(np) for np in mine):
                problems.append(
                    f"{pod.where}: no NetworkPolicy in this file selects it "
                    f"({RAY_CLUSTER_LABEL}: {cluster}): every pod could reach Ray's ports"
                )
                continue
            for np in mine:
                for rule in _list(_mapping(np.get("spec")).get("ingress")):
                    problem = _ray_ingress_problem(np, _mapping(rule), pod, cluster)
                    if problem:
                        problems.append(problem)
            if pod.is_head and pod.ray_kind in ("RayCluster", "RayService"):
                rules = [
                    _mapping(r) for np in mine for r in _list(_mapping(np["spec"]).get("ingress"))
                ]
                if not any(_only_ports(r, {GATEWAY_PORT, "serve"}) for r in rules):
                    problems.append(
                        f"{pod.where}: no NetworkPolicy admits the gateway port {GATEWAY_PORT} "
                        "from outside the cluster (the Ingress, the labs and teams' jobs use it)"
                    )
        for pod in pods:
            if _is_lab(pod):
                mine = _selecting(policies, pod)
                problems += _lab_network_problems(pod, mine, pod.labels.get(LAB_USER_LABEL))
    return problems


# --- the ingress --------------------------------------------------------------------------------


def _backends(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if isinstance(spec.get("defaultBackend"), dict):
        yield spec["defaultBackend"]
    for rule in _list(spec.get("rules")):
        for path in _list(_mapping(_mapping(rule).get("http")).get("paths")):
            yield _mapping(_mapping(path).get("backend"))


def ingress_problems(docs: list[dict[str, Any]]) -> list[str]:
    """An Ingress serves the gateway's port only, over TLS, for named hosts."""
    problems: list[str] = []
    for obj in docs:
        if obj.get("kind") != "Ingress":
            continue
        name, spec = object_name(obj), _mapping(obj.get("spec"))
        tls = [_mapping(t) for t in _list(spec.get("tls"))]
        tls_hosts = {h for t in tls if t.get("secretName") for h in _list(t.get("hosts"))}
        if not tls:
            problems.append(f"{name}: no tls section: the gateway's tokens would cross in clear")
        for rule in _list(spec.get("rules")):
            host = _mapping(rule).get("host")
            if not host:
                problems.append(f"{name}: a rule without a host (every name would reach it)")
            elif host not in tls_hosts:
                problems.append(f"{name}: host {host} is not in a tls entry with a secretName")
        for backend in _backends(spec):
            service = _mapping(backend.get("service"))
            port = _mapping(service.get("port"))
            sname = str(service.get("name", ""))
            gateway = port.get("number") == GATEWAY_PORT or port.get("name") == "serve"
            if not gateway or not sname.endswith(("-head-svc", "-serve-svc")):
                number = port.get("number") or port.get("name")
                problems.append(
                    f"{name}: backend {sname or backend} port {number} is not the gateway: only "
                    f"Serve's port {GATEWAY_PORT} on the head's Service goes out (not the "
                    "dashboard, not Ray's ports, not a lab)"
                )
    return problems


# --- credentials: labs and teams' jobs ----------------------------------------------------------


def _credentials(
    pod: PodTemplate,
    allowed_secrets: set[str],
    allowed_claims: set[str] | None = None,
    *,
    allow_store_env: bool = False,
) -> list[str]:
    """The cluster credentials, Ray addresses and foreign Secrets or claims a pod holds.

    Args:
        allowed_claims: the only claims it may mount (None: any but the platform's and labs').
    """
    found: list[str] = []
    for c in _containers(pod.spec):
        where = f"in {c.get('name')!r}"
        for var, e in _env(c).items():
            value, secret = e.get("value"), _secret_ref(e).get("name")
            what = _FORBIDDEN_ENV.get(var) or next(
                (w for pre, w in _FORBIDDEN_ENV_PREFIXES.items() if var.startswith(pre)), None
            )
            if what == "object-store settings" and allow_store_env:
                what = None
            elif what == "object-store credentials" and allow_store_env and secret is not None:
                what = None  # the team's bucket keys from its own Secret (checked below)
            if what:
                found.append(f"env {var} {where} ({what})")
            elif isinstance(value, str) and _RAY_ADDRESS_TEXT.search(value):
                found.append(f"env {var} {where} is a Ray address ({value})")
            if secret is not None and secret not in allowed_secrets:
                found.append(f"Secret {secret!r} as env {var} {where}")
        for source in _list(c.get("envFrom")):
            secret = _mapping(_mapping(source).get("secretRef")).get("name")
            if secret is not None and secret not in allowed_secrets:
                found.append(f"Secret {secret!r} as envFrom {where}")
        if any(_RAY_ADDRESS_TEXT.search(a) for a in _shell_texts(c)):
            found.append(f"a Ray address in the command {where}")
    for volume in _list(pod.spec.get("volumes")):
        volume = _mapping(volume)
        secrets = [_mapping(volume.get("secret")).get("secretName")]
        secrets += [
            _mapping(_mapping(s).get("secret")).get("name")
            for s in _list(_mapping(volume.get("projected")).get("sources"))
        ]
        found += [
            f"Secret {s!r} as volume {volume.get('name')!r}"
            for s in secrets
            if s is not None and s not in allowed_secrets
        ]
        claim = _mapping(volume.get("persistentVolumeClaim")).get("claimName")
        if claim is not None and (
            claim not in allowed_claims
            if allowed_claims is not None
            else str(claim).startswith(_PLATFORM_CLAIM_PREFIXES)
        ):
            found.append(f"the claim {claim!r} as volume {volume.get('name')!r}")
    if pod.spec.get("automountServiceAccountToken") is not False:
        found.append("the Kubernetes API token (set automountServiceAccountToken: false)")
    return found


def _cloud_identity(pod: PodTemplate, docs: list[dict[str, Any]]) -> list[str]:
    account = pod.spec.get("serviceAccountName") or "default"
    found: list[str] = []
    for doc in docs:
        meta = _mapping(doc.get("metadata"))
        if doc.get("kind") == "ServiceAccount" and meta.get("name") == account:
            found += [
                f"ServiceAccount {account!r} with {key} (a cloud identity)"
                for key in _CLOUD_IDENTITY_ANNOTATIONS
                if key in _mapping(meta.get("annotations"))
            ]
    return found


def _gateway_url_problems(env: dict[str, dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    if "DLP_GATEWAY_URL" in env:
        problems.append("DLP_GATEWAY_URL is not read any more; set DLP_URL")
    url = env.get("DLP_URL", {}).get("value")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.append("DLP_URL must be the gateway's in-cluster Service URL (http://...:8000)")
    elif url.split("://", 1)[1].startswith(_LOOPBACK_HOSTS):
        problems.append(f"DLP_URL {url} is the pod's own loopback, not the gateway's Service")
    return problems


def _from_secret(
    env: dict[str, dict[str, Any]], var: str, secret: str, key: str, why: str
) -> list[str]:
    entry = env.get(var)
    if entry is None:
        return [f"{var} is missing ({why}: a secretKeyRef to Secret {secret}, key {key})"]
    if "valueFrom" not in entry:
        return [f"{var} must come from a Secret (valueFrom.secretKeyRef), not a literal value"]
    ref = _secret_ref(entry)
    if (ref.get("name"), ref.get("key")) != (secret, key):
        return [f"{var} must come from Secret {secret}, key {key} (not {ref.get('name')})"]
    return []


def _is_lab(pod: PodTemplate) -> bool:
    """A lab's pod: it, or the object that makes it, is labelled ``component: lab``."""
    return "lab" in (pod.labels.get(COMPONENT_LABEL), dict(pod.owner_labels).get(COMPONENT_LABEL))


def lab_secret(user: str) -> str:
    """The Secret, Deployment, Service and claim of ``user``'s lab: ``dlp-lab-<user>``."""
    return f"{LAB_PREFIX}{user}"


def lab_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What is wrong with the lab pods in ``docs``: another user's or the cluster's credentials,
    no way to the gateway as its user, no Jupyter login of its own, an open network.

    A lab pod (labelled ``app.kubernetes.io/component: lab``) is one user's (label
    ``dlplatform.io/lab-user``) plain HTTP client of the gateway: ``DLP_URL``, and ``DLP_TOKEN``
    and ``JUPYTER_TOKEN`` from that user's Secret ``dlp-lab-<user>``. Whoever runs a notebook would
    otherwise act on the cluster whatever role their platform token has, or as another user.
    """
    problems: list[str] = []
    for obj in docs:
        for pod in pod_templates(obj):
            if not _is_lab(pod):
                continue
            name = object_name(obj)
            user = pod.labels.get(LAB_USER_LABEL)
            if not isinstance(user, str) or not _DNS_LABEL.match(user):
                problems.append(
                    f"{name}: a lab pod is one user's: label it {LAB_USER_LABEL}: <user> "
                    f"(its Secret and claim are {LAB_PREFIX}<user>)"
                )
                continue
            secret = lab_secret(user)
            found = _credentials(pod, {secret}, {secret}) + _cloud_identity(pod, docs)
            if found:
                problems.append(
                    f"{name}: a lab pod must hold no cluster credentials, Ray addresses or other "
                    f"users' Secrets (it talks only to the gateway, with DLP_URL and its user's "
                    f"DLP_TOKEN from Secret {secret}); found: " + ", ".join(found)
                )
            env: dict[str, dict[str, Any]] = {}
            for c in _list(pod.spec.get("containers")):
                for var, e in _env(_mapping(c)).items():
                    env.setdefault(var, e)
            lab_env = _gateway_url_problems(env)
            lab_env += _from_secret(env, "DLP_TOKEN", secret, LAB_TOKEN_KEY, "its user's token")
            lab_env += _from_secret(
                env, "JUPYTER_TOKEN", secret, LAB_JUPYTER_KEY, "its own Jupyter login"
            )
            if any(
                _JUPYTER_LOGIN_FLAGS.search(t)
                for c in _containers(pod.spec)
                for t in _shell_texts(c)
            ):
                lab_env.append(
                    "the Jupyter login is set on the command line; it must be JUPYTER_TOKEN "
                    f"from Secret {secret}"
                )
            problems += [f"{name}: {p}" for p in lab_env]
    return problems


def job_problems(docs: list[dict[str, Any]]) -> list[str]:
    """What keeps a RayJob from being a team's isolated job that reaches the platform only
    through the gateway (see the module docstring)."""
    problems: list[str] = []
    for obj in docs:
        if obj.get("kind") != "RayJob":
            continue
        name, spec = object_name(obj), _mapping(obj.get("spec"))
        if spec.get("clusterSelector"):
            problems.append(
                f"{name}: a RayJob on a shared Ray cluster (clusterSelector) runs its code with "
                "the trust of that cluster's operators: give it a cluster of its own "
                "(rayClusterSpec), or submit training through the gateway (dlp train submit)"
            )
            continue
        cluster = ray_cluster_spec(obj)
        if cluster is None:
            continue  # the CRD rules report it
        auth = _mapping(cluster.get("authOptions"))
        if auth.get("mode") != "token":
            problems.append(f"{name}: set rayClusterSpec.authOptions.mode: token")
        if auth.get("secretName"):
            problems.append(
                f"{name}: rayClusterSpec.authOptions.secretName {auth['secretName']!r}: leave it "
                "out, so that KubeRay makes a Ray token for this cluster alone"
            )
        team = _mapping(_mapping(obj.get("metadata")).get("labels")).get(TEAM_LABEL)
        if not isinstance(team, str) or not _DNS_LABEL.match(team):
            problems.append(f"{name}: label the RayJob {TEAM_LABEL}: <team>")
            continue
        allowed = {f"{JOB_TOKEN_PREFIX}{team}", f"{JOB_STORE_PREFIX}{team}"}
        found: list[str] = []
        for pod in pod_templates(obj):
            held = _credentials(pod, allowed, allow_store_env=True)
            found += [f"{f} ({pod.where})" for f in held]
        runtime_env = _runtime_env_vars(spec.get("runtimeEnvYAML"))
        for var in runtime_env:
            secret_like = var == "DLP_TOKEN" or var.startswith(("RAY_AUTH_", "AWS_", "AZURE_"))
            if secret_like or var in _FORBIDDEN_ENV:
                found.append(f"{var} in runtimeEnvYAML (written into the manifest)")
        if found:
            problems.append(
                f"{name}: a team's job holds nothing of the platform's (its Ray token or address, "
                "object store, artifact root, claims) and no Secret but its team's "
                f"({', '.join(sorted(allowed))}); found: " + ", ".join(found)
            )
        head = next((p for p in pod_templates(obj) if p.is_head), None)
        env = _env(_mapping(next(iter(_list(head.spec.get("containers"))), {}))) if head else {}
        token = f"{JOB_TOKEN_PREFIX}{team}"
        job_env = _gateway_url_problems(env)
        job_env += _from_secret(env, "DLP_TOKEN", token, LAB_TOKEN_KEY, "the team's token")
        problems += [f"{name} head: {p}" for p in job_env]
    return problems


def _runtime_env_vars(text: Any) -> dict[str, Any]:
    try:
        env = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}  # the CRD rules report it
    return _mapping(_mapping(env).get("env_vars"))


# --- one file, and one deployment ---------------------------------------------------------------


def security_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Every rule of this module on the objects of one file."""
    return (
        pod_security_problems(docs)
        + network_policy_problems(docs)
        + ingress_problems(docs)
        + lab_problems(docs)
        + job_problems(docs)
    )


def gateway_allowed_hosts(obj: dict[str, Any]) -> set[str] | None:
    """The Host headers the platform's gateway accepts (None: ``obj`` does not run it)."""
    if obj.get("kind") == "RayService":
        serve = _mapping(obj.get("spec")).get("serveConfigV2")
        try:
            config = _mapping(yaml.safe_load(serve)) if isinstance(serve, str) else {}
        except yaml.YAMLError:
            return None
        for app in _list(config.get("applications")):
            hosts = _mapping(_mapping(app).get("args")).get("allowed_hosts")
            if isinstance(hosts, list):
                return {str(h) for h in hosts}
        return None
    if obj.get("kind") != "RayCluster":
        return None
    head = next((p for p in pod_templates(obj) if p.is_head), None)
    for c in _list(head.spec.get("containers")) if head else []:
        value = _env(_mapping(c)).get("DLP_ALLOWED_HOSTS", {}).get("value")
        if isinstance(value, str):
            try:
                return {str(h) for h in json.loads(value)}
            except ValueError:
                return None
    return None


def deployment_problems(docs: list[dict[str, Any]]) -> list[str]:
    """Rules across the files of one deployment: a TLS Ingress for the gateway, and its hosts
    among the gateway's allowed hosts (the gateway refuses other Host headers)."""
    ingresses = [d for d in docs if d.get("kind") == "Ingress"]
    problems: list[str] = []
    gateways = [(d, gateway_allowed_hosts(d)) for d in docs]
    gateways = [(d, h) for d, h in gateways if h is not None]
    if gateways and not ingresses:
        problems.append(
            "no Ingress for the gateway: add ingress.yaml (TLS, the gateway's port only)"
        )
    for ingress in ingresses:
        hosts = {
            str(_mapping(r).get("host"))
            for r in _list(_mapping(ingress.get("spec")).get("rules"))
            if _mapping(r).get("host")
        }
        for obj, allowed in gateways:
            missing = sorted(hosts - allowed)
            if missing:
                problems.append(
                    f"{object_name(ingress)}: host {', '.join(missing)} is not among the allowed "
                    f"hosts of {object_name(obj)}'s gateway, which would refuse it "
                    "(dlp k8s render --gateway-host sets both)"
                )
    return problems
