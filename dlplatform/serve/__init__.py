"""Box D, model serving on Ray Serve: online inference, batching, autoscaling, shared
(multiplexed) models, rollout and traffic splits, prediction log and feedback, batch inference.

``deploy(backend, principal, "name@3")`` serves a registered model version at
``POST /models/<name>`` (``{"inputs": [...]}`` → ``{"outputs", "model", "version",
"request_id"}``, bearer token with ``predict`` permission). Also reachable as ``dlp serve ...``,
``dlp predict``, ``dlp batch-predict``, ``/api/v1/deployments`` and ``p.serving`` in the SDK.

``SERVE_HEAD_ENV`` is the environment the Ray head must be started with for Serve's fast
ingress (see its docstring; ``dlp up`` uses it, kept on loopback and per home by
``serve._ingress``); ``restore_deployments(backend)`` redeploys what the metadata records after a
restart.
"""

from dlplatform.serve.batch import batch_predict
from dlplatform.serve.service import (
    deploy,
    feedback,
    get_deployment,
    list_deployments,
    predict,
    restore_deployments,
    set_traffic,
    undeploy,
)
from dlplatform.serve.spec import (
    SERVE_HEAD_ENV,
    BatchPredictResult,
    DeploymentInfo,
    DeploymentSpec,
    DeployRequest,
    FeedbackRequest,
    PredictionResult,
    TrafficSpec,
)

__all__ = [
    "SERVE_HEAD_ENV",
    "BatchPredictResult",
    "DeployRequest",
    "DeploymentInfo",
    "DeploymentSpec",
    "FeedbackRequest",
    "PredictionResult",
    "TrafficSpec",
    "batch_predict",
    "deploy",
    "feedback",
    "get_deployment",
    "list_deployments",
    "predict",
    "restore_deployments",
    "set_traffic",
    "undeploy",
]
