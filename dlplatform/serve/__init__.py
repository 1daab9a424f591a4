"""Box D, model serving on Ray Serve: online inference, batching, autoscaling, shared
(multiplexed) models, rollout and traffic splits, prediction log and feedback, batch inference.

``deploy(backend, principal, "name@3")`` serves a registered model version at
``POST /models/<name>`` (``{"inputs": [...]}`` → ``{"outputs", "model", "version",
"request_id"}``, bearer token with ``predict`` permission). Also reachable as ``dlp serve ...``,
``dlp predict``, ``dlp batch-predict``, ``/api/v1/deployments`` and ``p.serving`` in the SDK.

``SERVE_HEAD_ENV`` is the environment the Ray head must be started with for Serve's fast
ingress (see its docstring; ``dlp up`` uses it, kept on loopback and per home by
``serve._ingress``); ``restore_deployments(backend)`` redeploys what the metadata records after a
restart. ``start_rollout`` moves traffic to a new version in judged steps (``serve.rollout``).

It may import ``access``, ``context``, ``data`` (batch inference reads datasets), ``metadata``,
``models``, ``usage``, ``hosts`` and the shared helpers (``_actors``, ``_ray_internals``); never
``train`` (``tests/unit/test_import_graph.py``).
"""

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.serve.batch import batch_predict
    from dlplatform.serve.rollout import abort_rollout, rollout_status, start_rollout
    from dlplatform.serve.service import (
        deploy,
        feedback,
        get_deployment,
        list_deployments,
        list_deployments_page,
        predict,
        restore_deployments,
        set_traffic,
        undeploy,
    )
    from dlplatform.serve.spec import (
        SERVE_HEAD_ENV,
        BatchPredictRequest,
        BatchPredictResult,
        DeploymentInfo,
        DeploymentSpec,
        DeployRequest,
        FeedbackRequest,
        PredictionResult,
        RolloutRequest,
        RolloutSpec,
        RolloutStatus,
        TrafficSpec,
    )

# Loaded on first use (see dlplatform._lazy): importing a spec must not load Ray or torch.
_EXPORTS = {
    "BatchPredictRequest": "dlplatform.serve.spec",
    "BatchPredictResult": "dlplatform.serve.spec",
    "DeployRequest": "dlplatform.serve.spec",
    "DeploymentInfo": "dlplatform.serve.spec",
    "DeploymentSpec": "dlplatform.serve.spec",
    "FeedbackRequest": "dlplatform.serve.spec",
    "PredictionResult": "dlplatform.serve.spec",
    "RolloutRequest": "dlplatform.serve.spec",
    "RolloutSpec": "dlplatform.serve.spec",
    "RolloutStatus": "dlplatform.serve.spec",
    "SERVE_HEAD_ENV": "dlplatform.serve.spec",
    "TrafficSpec": "dlplatform.serve.spec",
    "batch_predict": "dlplatform.serve.batch",
    "deploy": "dlplatform.serve.service",
    "feedback": "dlplatform.serve.service",
    "get_deployment": "dlplatform.serve.service",
    "list_deployments": "dlplatform.serve.service",
    "list_deployments_page": "dlplatform.serve.service",
    "predict": "dlplatform.serve.service",
    "restore_deployments": "dlplatform.serve.service",
    "abort_rollout": "dlplatform.serve.rollout",
    "rollout_status": "dlplatform.serve.rollout",
    "set_traffic": "dlplatform.serve.service",
    "start_rollout": "dlplatform.serve.rollout",
    "undeploy": "dlplatform.serve.service",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "SERVE_HEAD_ENV",
    "BatchPredictRequest",
    "BatchPredictResult",
    "DeployRequest",
    "DeploymentInfo",
    "DeploymentSpec",
    "FeedbackRequest",
    "PredictionResult",
    "RolloutRequest",
    "RolloutSpec",
    "RolloutStatus",
    "TrafficSpec",
    "abort_rollout",
    "batch_predict",
    "deploy",
    "feedback",
    "get_deployment",
    "list_deployments",
    "list_deployments_page",
    "predict",
    "restore_deployments",
    "rollout_status",
    "set_traffic",
    "start_rollout",
    "undeploy",
]
