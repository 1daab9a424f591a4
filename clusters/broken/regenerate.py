"""Regenerate clusters/broken/: copies of the real configs with one deliberate defect each.

Run `python clusters/broken/regenerate.py` after changing a file in clusters/ray-up or
clusters/kuberay; each edit must still apply exactly once. The first two lines of every copy say
what is wrong and which error the validators must raise (`# expect: ...`).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "broken"


def make(src, name, expect, why, *edits):
    text = (ROOT / src).read_text()
    for old, new in edits:
        n = text.count(old)
        assert n == 1, (name, old, n)
        text = text.replace(old, new)
    dest = OUT / src.split("/")[0] / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(f"# BROKEN on purpose: {why}\n# expect: {expect}\n" + text)


L, A, G = "ray-up/local.yaml", "ray-up/aws.yaml", "ray-up/gcp.yaml"
make(
    L,
    "local-missing-head-ip.yaml",
    "head_ip",
    "no head_ip (Ray's local provider needs it)",
    ("  head_ip: 10.0.0.10 # CHANGE ME: the head machine\n", ""),
)
make(
    L,
    "local-worker-ips-not-list.yaml",
    "is not of type 'array'",
    "worker_ips is a string",
    ("worker_ips: [10.0.0.11, 10.0.0.12]", 'worker_ips: "10.0.0.11"'),
)
make(
    L,
    "local-unknown-key.yaml",
    "Additional properties are not allowed",
    "typo in a top-level key",
    ("idle_timeout_minutes: 5\n", "idle_timeout_minute: 5\n"),
)
make(
    L,
    "local-undocumented-workers.yaml",
    "min_workers is not documented",
    "min_workers left out",
    ("min_workers: 2\n", ""),
)
make(
    A,
    "aws-head-type-unknown.yaml",
    "head_node_type",
    "head_node_type names no node type",
    ("head_node_type: head\n", "head_node_type: ray.head.default\n"),
)
make(
    A,
    "aws-min-workers-over-max.yaml",
    "smaller than the sum of `min_workers`",
    "min_workers of the node types exceed max_workers",
    (
        "    resources: {CPU: 16}\n    min_workers: 0\n",
        "    resources: {CPU: 16}\n    min_workers: 13\n",
    ),
    ("    max_workers: 8\n", "    max_workers: 13\n"),
)
make(
    A,
    "aws-missing-resources.yaml",
    "'resources' is a required property",
    "gpu_worker has no resources",
    ("    resources: {CPU: 4, GPU: 1}\n", ""),
)
make(
    A,
    "aws-provider-typo.yaml",
    "Ray rejects the cluster config",
    "provider type awz",
    ("  type: aws\n", "  type: awz\n"),
)
make(
    A,
    "aws-max-workers-not-int.yaml",
    "Ray rejects the cluster config",
    "max_workers is a string",
    ("max_workers: 12\n", "max_workers: twelve\n"),
)
make(
    A,
    "aws-node-type-unknown-key.yaml",
    "Additional properties are not allowed",
    "unknown key in a node type",
    ("    min_workers: 0\n    max_workers: 4\n", "    min_workers: 0\n    max_worker: 4\n"),
)
make(
    A,
    "aws-no-dlp-up.yaml",
    "must start the platform",
    "the head never starts the platform",
    ("    dlp up --address auto\n", "    echo platform not started\n"),
)
make(
    A,
    "aws-dlp-up-local.yaml",
    "dlp up --address auto",
    "`dlp up` would start a second Ray head",
    ("    dlp up --address auto\n", "    dlp up\n"),
)
make(
    A,
    "aws-local-artifact-root.yaml",
    "not shared object storage",
    "workers write artifacts to local disk",
    (
        "    DLP_ARTIFACT_ROOT=s3://dlplatform-artifacts/prod\n    ray start --address",
        "    DLP_ARTIFACT_ROOT=/home/ubuntu/artifacts\n    ray start --address",
    ),
)
make(
    G,
    "gcp-auth-disabled.yaml",
    "RAY_AUTH_MODE=token is missing",
    "workers start without token auth",
    (
        "    RAY_AUTH_MODE=token\n    DLP_ARTIFACT_ROOT=gs://dlplatform-artifacts/prod\n    ray start --address",
        "    DLP_ARTIFACT_ROOT=gs://dlplatform-artifacts/prod\n    ray start --address",
    ),
)
make(
    G,
    "gcp-token-file-mode.yaml",
    "must make the token file owner-only (`chmod 600 ~/.ray/auth_token`)",
    "the Ray token file keeps the mode rsync copied (often world-readable)",
    (
        "\nsetup_commands:\n  - chmod 600 ~/.ray/auth_token  # owner-only on every node, whatever mode rsync copied\n",
        "\nsetup_commands: []\n",
    ),
)
make(
    G,
    "gcp-group-min-over-max.yaml",
    "min_workers 5 > max_workers 4",
    "gpu_worker min above max",
    (
        "    resources: {CPU: 8, GPU: 1}\n    min_workers: 0\n",
        "    resources: {CPU: 8, GPU: 1}\n    min_workers: 5\n",
    ),
)
make(
    G,
    "gcp-image-latest.yaml",
    "must be tagged with the Ray version",
    "image tag is not the Ray version",
    ("  image: dlplatform:2.60.0 #", "  image: dlplatform:latest #"),
)
make(
    G,
    "gcp-roots-disagree.yaml",
    "disagree on the artifact root",
    "head and workers use different buckets",
    (
        "    DLP_ARTIFACT_ROOT=gs://dlplatform-artifacts/prod\n    ray start --address",
        "    DLP_ARTIFACT_ROOT=gs://other-bucket/prod\n    ray start --address",
    ),
)

RC, RS, RJ = "kuberay/raycluster.yaml", "kuberay/rayservice.yaml", "kuberay/rayjob.yaml"
LAB, PVC, K = "kuberay/lab.yaml", "kuberay/pvc.yaml", "kuberay/kustomization.yaml"
ING = "kuberay/ingress.yaml"
make(
    RC,
    "raycluster-unknown-field.yaml",
    "'enableInTreeAutoscalng' was unexpected",
    "typo in a spec field",
    ("  enableInTreeAutoscaling: true\n", "  enableInTreeAutoscalng: true\n"),
)
make(
    RC,
    "raycluster-container-typo.yaml",
    "'imagePulPolicy' was unexpected",
    "typo in the head container",
    (
        "            image: dlplatform:2.60.0\n            imagePullPolicy",
        "            image: dlplatform:2.60.0\n            imagePulPolicy",
    ),
)
make(
    RC,
    "raycluster-replicas-over-max.yaml",
    "<= maxReplicas (8)",
    "replicas above maxReplicas",
    ("      replicas: 1\n", "      replicas: 9\n"),
)
make(
    RC,
    "raycluster-name-too-long.yaml",
    "longer than 53 characters",
    "name of 54 characters",
    ("  name: dlplatform\n", "  name: dlplatform-" + "x" * 43 + "\n"),
)
make(
    RC,
    "raycluster-name-not-dns.yaml",
    "is not a DNS-1035 label",
    "upper case and underscore in the name",
    ("  name: dlplatform\n", "  name: DLPlatform_prod\n"),
)
make(
    RC,
    "raycluster-rayversion-mismatch.yaml",
    "does not match rayVersion",
    "rayVersion differs from the image tag",
    ('  rayVersion: "2.60.0"\n', '  rayVersion: "2.59.0"\n'),
)
make(
    RC,
    "raycluster-image-latest.yaml",
    "does not match rayVersion 2.60.0",
    "GPU workers on a :latest image",
    ("              image: dlplatform:2.60.0-gpu\n", "              image: dlplatform:latest\n"),
)
make(
    RC,
    "raycluster-no-autoscaling.yaml",
    "enableInTreeAutoscaling must be true",
    "autoscaler off",
    ("  enableInTreeAutoscaling: true\n", "  enableInTreeAutoscaling: false\n"),
)
make(
    RC,
    "raycluster-no-gpu-limit.yaml",
    "no worker group has an nvidia.com/gpu limit",
    "GPU limit removed",
    (
        '                  memory: 16Gi\n                  nvidia.com/gpu: 1\n                limits:\n                  cpu: "4"\n                  memory: 16Gi\n                  nvidia.com/gpu: 1\n',
        '                  memory: 16Gi\n                limits:\n                  cpu: "4"\n                  memory: 16Gi\n',
    ),
)
make(
    RC,
    "raycluster-home-not-on-pvc.yaml",
    "DLP_HOME must be a mounted PersistentVolumeClaim",
    "home on an emptyDir",
    (
        "            persistentVolumeClaim:\n              claimName: dlplatform-home\n",
        "            emptyDir: {}\n",
    ),
)
make(
    RC,
    "raycluster-local-artifact-root.yaml",
    "needs DLP_ARTIFACT_ROOT on object storage",
    "artifacts on local disk",
    (
        "              - name: DLP_ARTIFACT_ROOT\n                value: s3://dlplatform-artifacts/prod\n              - name: DLP_HOST",
        "              - name: DLP_ARTIFACT_ROOT\n                value: /home/ray/artifacts\n              - name: DLP_HOST",
    ),
)
make(
    RC,
    "raycluster-missing-group-name.yaml",
    "'groupName' is a required property",
    "worker group without a name",
    ("    - groupName: cpu\n      replicas: 1\n", "    - replicas: 1\n"),
)
make(
    RC,
    "raycluster-max-replicas-string.yaml",
    "is not of type 'integer'",
    "maxReplicas is a string",
    ("      maxReplicas: 8\n", '      maxReplicas: "8"\n'),
)
make(
    RS,
    "rayservice-bad-upgrade-strategy.yaml",
    "upgradeStrategy.type 'Recreate'",
    "unknown upgrade strategy",
    ("    type: None\n", "    type: Recreate\n"),
)
make(
    RS,
    "rayservice-import-path-missing.yaml",
    "does not resolve",
    "the builder does not exist",
    ("dlplatform.api.gateway:build_gateway", "dlplatform.api.gateway:no_such_builder"),
)
make(
    RS,
    "rayservice-bad-serve-config.yaml",
    "not a valid Serve config",
    "import path with two colons",
    ("dlplatform.api.gateway:build_gateway", "dlplatform.api:gateway:build_gateway"),
)
make(
    RS,
    "rayservice-serve-config-not-string.yaml",
    "serveConfigV2 must be a string",
    "serveConfigV2 as a mapping",
    ("  serveConfigV2: |\n", "  serveConfigV2:\n"),
)
make(
    RS,
    "rayservice-name-too-long.yaml",
    "longer than 47 characters",
    "name of 48 characters",
    ("  name: dlplatform\n", "  name: dlplatform-" + "x" * 37 + "\n"),
)
make(
    RJ,
    "rayjob-two-cluster-sources.yaml",
    "exactly one of rayClusterSpec or clusterSelector",
    "both a selector and a cluster spec",
    (
        "  rayClusterSpec:\n",
        "  clusterSelector:\n    ray.io/cluster: dlplatform\n  rayClusterSpec:\n",
    ),
)
make(
    RJ,
    "rayjob-no-cluster.yaml",
    "exactly one of rayClusterSpec or clusterSelector",
    "no cluster at all (rayClusterSpec misspelt)",
    ("  rayClusterSpec:\n", "  rayClusterSpc:\n"),
)
make(
    RJ,
    "rayjob-bad-submission-mode.yaml",
    "submissionMode 'K8sMode'",
    "unknown submission mode",
    ("  submissionMode: K8sJobMode\n", "  submissionMode: K8sMode\n"),
)
make(
    RJ,
    "rayjob-missing-module.yaml",
    "entrypoint module dlplatform.no_such_module does not exist",
    "a platform module that does not exist (found on disk, never imported)",
    ("python -m team_job.train", "python -m dlplatform.no_such_module"),
)
make(
    RJ,
    "rayjob-bad-module-path.yaml",
    "entrypoint module 'team_job/train.py' is not a Python module path",
    "a file path where a module path belongs",
    ("python -m team_job.train", "python -m team_job/train.py"),
)
make(
    RJ,
    "rayjob-runtime-env-not-mapping.yaml",
    "runtimeEnvYAML must hold a mapping",
    "runtime env is a list",
    (
        "  runtimeEnvYAML: |\n    working_dir: s3://dlp-team-default/jobs/team_job.zip\n",
        "  runtimeEnvYAML: |\n    - working_dir=s3://dlp-team-default/jobs/team_job.zip\n",
    ),
)
make(
    RJ,
    "rayjob-platform-ray-token.yaml",
    "authOptions.secretName 'dlplatform-ray-token': leave it out",
    "the job's cluster shares the platform cluster's Ray token",
    (
        "      mode: token  # no secretName: KubeRay makes a token for this cluster alone\n",
        "      mode: token\n      secretName: dlplatform-ray-token\n",
    ),
)
make(
    RJ,
    "rayjob-platform-object-store.yaml",
    "Secret 'dlplatform-object-store' as envFrom in 'ray-head'",
    "the job gets the platform's object-store keys",
    (
        "\n                    name: dlp-job-store-default\n",
        "\n                    name: dlplatform-object-store\n",
    ),
)
make(
    RJ,
    "rayjob-platform-ray-address.yaml",
    "env RAY_ADDRESS in 'ray-head' (a Ray address)",
    "the job is pointed at the platform's Ray cluster",
    (
        "              env:\n                - name: DLP_URL\n",
        "              env:\n                - name: RAY_ADDRESS\n"
        "                  value: ray://dlplatform-head-svc.dlplatform.svc.cluster.local:10001\n"
        "                - name: DLP_URL\n",
    ),
)
make(
    RJ,
    "rayjob-token-literal.yaml",
    "DLP_TOKEN must come from a Secret",
    "the team's platform token written into the manifest",
    (
        "              env:\n                - name: DLP_URL\n"
        "                  value: http://dlplatform-head-svc.dlplatform.svc.cluster.local:8000\n"
        "                - name: DLP_TOKEN\n                  valueFrom:\n"
        "                    secretKeyRef:\n                      name: dlp-job-token-default\n"
        "                      key: token\n",
        "              env:\n                - name: DLP_URL\n"
        "                  value: http://dlplatform-head-svc.dlplatform.svc.cluster.local:8000\n"
        "                - name: DLP_TOKEN\n                  value: dlp_0123456789abcdef\n",
    ),
)
make(
    RJ,
    "rayjob-worker-api-token.yaml",
    "worker group cpu: set automountServiceAccountToken: false",
    "the job's workers mount a Kubernetes API token",
    (
        "\n            automountServiceAccountToken: false\n",
        "\n            automountServiceAccountToken: true\n",
    ),
)
make(
    RJ,
    "rayjob-open-ray-ports.yaml",
    "admits every port from anywhere to RayJob/dlp-job-default head",
    "the job cluster's NetworkPolicy admits everyone",
    (
        "    - from:\n        - podSelector:\n            matchLabels:\n"
        "              dlplatform.io/ray-cluster: dlp-job-default\n",
        "    - {}\n",
    ),
)
make(
    LAB,
    "lab-container-typo.yaml",
    "'imagePulPolicy' was unexpected",
    "typo in the lab container",
    ("          imagePullPolicy: IfNotPresent\n", "          imagePulPolicy: IfNotPresent\n"),
)
make(
    LAB,
    "lab-no-selector.yaml",
    "'selector' is a required property",
    "Deployment without selector",
    (
        "  selector:\n    matchLabels:\n      app.kubernetes.io/name: dlplatform\n      app.kubernetes.io/component: lab\n      dlplatform.io/lab-user: default\n  template:",
        "  template:",
    ),
)
make(
    LAB,
    "lab-service-port-string.yaml",
    "is not of type 'integer'",
    "Service port is a string",
    ("      port: 8888\n", '      port: "8888"\n'),
)
make(
    LAB,
    "lab-ray-token.yaml",
    "env RAY_AUTH_TOKEN in 'lab' (Ray token auth)",
    "the lab gets the Ray cluster token: every notebook could do anything on the cluster",
    (
        "            - name: JUPYTER_TOKEN\n",
        "            - name: RAY_AUTH_TOKEN\n              valueFrom:\n                secretKeyRef:\n"
        "                  name: dlplatform-ray-token\n                  key: auth_token\n"
        "            - name: JUPYTER_TOKEN\n",
    ),
)
make(
    LAB,
    "lab-ray-address.yaml",
    "env RAY_ADDRESS in 'lab' (a Ray address)",
    "the lab gets the Ray Client address",
    (
        "            - name: DLP_TOKEN\n",
        "            - name: RAY_ADDRESS\n"
        "              value: ray://dlplatform-head-svc.dlplatform.svc.cluster.local:10001\n"
        "            - name: DLP_TOKEN\n",
    ),
)
make(
    LAB,
    "lab-object-store.yaml",
    "Secret 'dlplatform-object-store' as envFrom in 'lab'",
    "the lab gets the object-store credentials",
    (
        "          resources:\n",
        "          envFrom:\n            - secretRef:\n                name: dlplatform-object-store\n"
        "                optional: true\n          resources:\n",
    ),
)
make(
    LAB,
    "lab-token-literal.yaml",
    "DLP_TOKEN must come from a Secret",
    "a platform token written into the manifest",
    (
        "            - name: DLP_TOKEN\n              valueFrom:\n                secretKeyRef:\n"
        "                  name: dlp-lab-default\n                  key: token\n",
        "            - name: DLP_TOKEN\n              value: dlp_0123456789abcdef\n",
    ),
)
make(
    LAB,
    "lab-gateway-loopback.yaml",
    "is the pod's own loopback",
    "DLP_URL points at the lab pod itself",
    (
        "              value: http://dlplatform-head-svc.dlplatform.svc.cluster.local:8000\n",
        "              value: http://127.0.0.1:8000\n",
    ),
)
make(
    LAB,
    "lab-other-users-token.yaml",
    "Secret 'dlp-lab-bob' as env DLP_TOKEN in 'lab'",
    "the lab of default reads bob's platform token",
    (
        "                  name: dlp-lab-default\n                  key: token\n",
        "                  name: dlp-lab-bob\n                  key: token\n",
    ),
)
make(
    LAB,
    "lab-shared-jupyter-token.yaml",
    "JUPYTER_TOKEN must come from Secret dlp-lab-default, key jupyter_token",
    "every lab shares one Jupyter login",
    (
        "                  name: dlp-lab-default\n                  key: jupyter_token\n",
        "                  name: dlplatform-lab\n                  key: jupyter_token\n",
    ),
)
make(
    LAB,
    "lab-login-off.yaml",
    "the Jupyter login is set on the command line",
    "Jupyter's token login switched off",
    (
        "            - --no-browser\n",
        "            - --no-browser\n            - --IdentityProvider.token=\n",
    ),
)
make(
    LAB,
    "lab-platform-home.yaml",
    "the claim 'dlplatform-home' as volume 'work'",
    "the lab mounts the platform's home (metadata.duckdb, the admin token)",
    ("            claimName: dlp-lab-default\n", "            claimName: dlplatform-home\n"),
)
make(
    LAB,
    "lab-open-egress.yaml",
    "a lab reaches only the gateway",
    "the lab may connect anywhere on port 8000 and beyond",
    (
        "    - to:\n        - podSelector:\n            matchLabels:\n"
        "              dlplatform.io/ray-cluster: dlplatform\n              ray.io/node-type: head\n"
        "      ports:\n        - port: 8000\n          protocol: TCP\n",
        "    - {}\n",
    ),
)
make(
    LAB,
    "lab-reachable.yaml",
    "a lab is reached by kubectl port-forward only",
    "every pod may connect to the lab's Jupyter",
    ("  ingress: []\n", "  ingress:\n    - ports:\n        - port: 8888\n"),
)
make(
    LAB,
    "lab-root.yaml",
    "set securityContext.runAsNonRoot: true",
    "the lab may run as root",
    ("        runAsNonRoot: true\n        runAsUser: 1000\n", "        runAsUser: 0\n"),
)
make(
    RC,
    "raycluster-token-file-umask.yaml",
    "without `umask 077` first",
    "the Ray token file is written with the default umask (readable by others)",
    (
        '(umask 077 && printf %s "$RAY_AUTH_TOKEN" > "$HOME/.ray-auth-token");',
        'printf %s "$RAY_AUTH_TOKEN" > "$HOME/.ray-auth-token";',
    ),
)
make(
    RC,
    "raycluster-privilege-escalation.yaml",
    "container 'ray-head': set securityContext.allowPrivilegeEscalation: false",
    "the head container may gain privileges",
    (
        "\n              allowPrivilegeEscalation: false\n",
        "\n              allowPrivilegeEscalation: true\n",
    ),
)
make(
    RC,
    "raycluster-autoscaler-capabilities.yaml",
    "autoscalerOptions (the autoscaler sidecar): adds capabilities ['SYS_ADMIN']",
    "the autoscaler sidecar gets a capability",
    ("\n        drop: [ALL]\n", "\n        drop: [ALL]\n        add: [SYS_ADMIN]\n"),
)
make(
    RC,
    "raycluster-no-seccomp.yaml",
    "head: set securityContext.seccompProfile.type: RuntimeDefault",
    "the head runs without a seccomp profile",
    ("\n          seccompProfile:\n            type: RuntimeDefault\n", "\n"),
)
make(
    RC,
    "raycluster-worker-api-token.yaml",
    "worker group gpu: set automountServiceAccountToken: false",
    "GPU workers mount a Kubernetes API token they do not need",
    (
        "            app.kubernetes.io/component: ray-gpu-worker\n"
        "            dlplatform.io/ray-cluster: dlplatform\n        spec:\n"
        "          automountServiceAccountToken: false\n",
        "            app.kubernetes.io/component: ray-gpu-worker\n"
        "            dlplatform.io/ray-cluster: dlplatform\n        spec:\n"
        "          automountServiceAccountToken: true\n",
    ),
)
make(
    RC,
    "raycluster-open-ray-ports.yaml",
    "NetworkPolicy/dlplatform-ray admits every port from [{'namespaceSelector': {}}]",
    "Ray's ports open to every pod of the Kubernetes cluster",
    (
        "    - from:\n        - podSelector:\n            matchLabels:\n"
        "              dlplatform.io/ray-cluster: dlplatform\n",
        "    - from:\n        - namespaceSelector: {}\n",
    ),
)
make(
    RC,
    "raycluster-gateway-rule-gcs.yaml",
    "NetworkPolicy/dlplatform-gateway admits ports [6379] from anywhere",
    "the gateway's rule opens the GCS port instead",
    (
        "        - port: 8000\n          protocol: TCP\n",
        "        - port: 6379\n          protocol: TCP\n",
    ),
)
make(
    RC,
    "raycluster-no-cluster-label.yaml",
    "every pod of the Ray cluster needs the same label dlplatform.io/ray-cluster",
    "the GPU workers lack the label their NetworkPolicy admits",
    (
        "            app.kubernetes.io/component: ray-gpu-worker\n"
        "            dlplatform.io/ray-cluster: dlplatform\n",
        "            app.kubernetes.io/component: ray-gpu-worker\n",
    ),
)
make(
    ING,
    "ingress-no-tls.yaml",
    "no tls section",
    "the gateway served over plain HTTP",
    (
        "  tls:\n    - hosts:\n        - dlplatform.example.com\n"
        "      secretName: dlplatform-gateway-tls\n",
        "",
    ),
)
make(
    ING,
    "ingress-dashboard.yaml",
    "port 8265 is not the gateway",
    "the Ray dashboard (the Jobs API: run any code) exposed",
    ("                  number: 8000\n", "                  number: 8265\n"),
)
make(
    ING,
    "ingress-host-without-tls.yaml",
    "host dlp.example.org is not in a tls entry",
    "a second host without a certificate",
    (
        "  rules:\n    - host: dlplatform.example.com\n",
        "  rules:\n    - host: dlp.example.org\n      http:\n        paths:\n          - path: /\n"
        "            pathType: Prefix\n            backend:\n              service:\n"
        "                name: dlplatform-head-svc\n                port:\n"
        "                  number: 8000\n    - host: dlplatform.example.com\n",
    ),
)
make(
    PVC,
    "pvc-access-modes-string.yaml",
    "is not of type 'array'",
    "accessModes is not a list",
    ("metadata:\n  name: dlplatform-home\n", "metadata:\n  name: dlplatform-home\n"),
    (
        "    app.kubernetes.io/component: metadata\nspec:\n  accessModes:\n    - ReadWriteOnce\n",
        "    app.kubernetes.io/component: metadata\nspec:\n  accessModes: ReadWriteOnce\n",
    ),
)
make(
    PVC,
    "pvc-unknown-field.yaml",
    "'storageClass' was unexpected",
    "storageClass instead of storageClassName",
    (
        "    app.kubernetes.io/component: metadata\nspec:\n",
        "    app.kubernetes.io/component: metadata\nspec:\n  storageClass: fast\n",
    ),
)
make(
    K,
    "kustomization-missing-resource.yaml",
    "'missing.yaml' is not a file",
    "lists a file that does not exist",
    ("  - lab.yaml\n", "  - lab.yaml\n  - missing.yaml\n"),
)
make(
    K,
    "kustomization-no-ingress.yaml",
    "no Ingress for the gateway",
    "the gateway has no TLS Ingress",
    ("  - ingress.yaml\n", ""),
)
