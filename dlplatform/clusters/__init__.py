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
- Every object goes through the security rules of ``clusters.security``: restricted pods, API tokens
  only where needed, token files under ``umask 077``, NetworkPolicies that keep Ray's ports to the
  cluster's own pods, a TLS Ingress for the gateway only, one lab per user that holds only its
  user's Secret, and teams' RayJobs on clusters of their own that hold nothing of the platform's.

Every validator raises ``InvalidInput`` whose message names the file/object and the problem.
Modules: ``templates`` (where the templates are, what they hold), ``ray_up``, ``kuberay``,
``validate`` (core objects, kustomizations, ``validate_file``), ``rendering`` (KubeRay manifests for
a deployment) and ``security`` (the security rules). May import: ``errors``,
``_ray_internals``, ``train.spec`` (a RayJob's spec is checked); Ray only inside the function
that checks a ``serveConfigV2``. Used by ``dlp k8s`` only.
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.clusters.kuberay import (
        platform_manifest_problems,
        platform_module_file,
        validate_kuberay_object,
    )
    from dlplatform.clusters.ray_up import (
        validate_ray_up_config,
    )
    from dlplatform.clusters.rendering import (
        job_token_secret,
        lab_secret,
        render,
    )
    from dlplatform.clusters.templates import (
        CPU_GROUP,
        CPU_ONLY_ANNOTATION,
        GPU_GROUP,
        GPU_NODE_LABEL,
        JOB_TEAM_TEMPLATE,
        KUBERAY_VERSION,
        KUBERNETES_VERSION,
        LAB_USER_TEMPLATE,
        RENDERED_FILES,
        TEMPLATE_GATEWAY_HOST,
        TEMPLATE_GPU_IMAGE,
        TEMPLATE_GPU_TYPE,
        TEMPLATE_IMAGE,
        TEMPLATE_NAMESPACE,
        TEMPLATE_OPERATOR_NAMESPACE,
        cluster_files,
        clusters_dir,
        load_documents,
    )
    from dlplatform.clusters.validate import (
        validate_core_object,
        validate_file,
        validate_kustomization,
        validate_manifest,
    )

# Loaded on first use (see dlplatform._lazy): yaml, jsonschema and kubernetes-validate load
# only for the `dlp k8s` commands.
_EXPORTS = {
    "CPU_GROUP": "dlplatform.clusters.templates",
    "CPU_ONLY_ANNOTATION": "dlplatform.clusters.templates",
    "GPU_GROUP": "dlplatform.clusters.templates",
    "GPU_NODE_LABEL": "dlplatform.clusters.templates",
    "JOB_TEAM_TEMPLATE": "dlplatform.clusters.templates",
    "KUBERAY_VERSION": "dlplatform.clusters.templates",
    "KUBERNETES_VERSION": "dlplatform.clusters.templates",
    "LAB_USER_TEMPLATE": "dlplatform.clusters.templates",
    "RENDERED_FILES": "dlplatform.clusters.templates",
    "TEMPLATE_GATEWAY_HOST": "dlplatform.clusters.templates",
    "TEMPLATE_GPU_IMAGE": "dlplatform.clusters.templates",
    "TEMPLATE_GPU_TYPE": "dlplatform.clusters.templates",
    "TEMPLATE_IMAGE": "dlplatform.clusters.templates",
    "TEMPLATE_NAMESPACE": "dlplatform.clusters.templates",
    "TEMPLATE_OPERATOR_NAMESPACE": "dlplatform.clusters.templates",
    "cluster_files": "dlplatform.clusters.templates",
    "clusters_dir": "dlplatform.clusters.templates",
    "job_token_secret": "dlplatform.clusters.rendering",
    "lab_secret": "dlplatform.clusters.rendering",
    "load_documents": "dlplatform.clusters.templates",
    "platform_manifest_problems": "dlplatform.clusters.kuberay",
    "platform_module_file": "dlplatform.clusters.kuberay",
    "render": "dlplatform.clusters.rendering",
    "validate_core_object": "dlplatform.clusters.validate",
    "validate_file": "dlplatform.clusters.validate",
    "validate_kuberay_object": "dlplatform.clusters.kuberay",
    "validate_kustomization": "dlplatform.clusters.validate",
    "validate_manifest": "dlplatform.clusters.validate",
    "validate_ray_up_config": "dlplatform.clusters.ray_up",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CPU_GROUP",
    "CPU_ONLY_ANNOTATION",
    "GPU_GROUP",
    "GPU_NODE_LABEL",
    "JOB_TEAM_TEMPLATE",
    "KUBERAY_VERSION",
    "KUBERNETES_VERSION",
    "LAB_USER_TEMPLATE",
    "RENDERED_FILES",
    "TEMPLATE_GATEWAY_HOST",
    "TEMPLATE_GPU_IMAGE",
    "TEMPLATE_GPU_TYPE",
    "TEMPLATE_IMAGE",
    "TEMPLATE_NAMESPACE",
    "TEMPLATE_OPERATOR_NAMESPACE",
    "cluster_files",
    "clusters_dir",
    "job_token_secret",
    "lab_secret",
    "load_documents",
    "platform_manifest_problems",
    "platform_module_file",
    "render",
    "validate_core_object",
    "validate_file",
    "validate_kuberay_object",
    "validate_kustomization",
    "validate_manifest",
    "validate_ray_up_config",
]
