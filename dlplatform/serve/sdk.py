"""Notebook client ``p.serving`` (``ServingClient``): the serving service functions as methods.

::

    p.serving.deploy("digits-mlp", max_replicas=2)          # POST /models/digits-mlp
    p.serving.predict("digits-mlp", [[0.0] * 64])
    p.serving.traffic("digits-mlp", {3: 90, 4: 10})
    p.serving.batch_predict("digits-mlp@3", "digits", output="digits-preds")
"""

from __future__ import annotations

from typing import Any

from dlplatform.access import Principal
from dlplatform.context import Backend
from dlplatform.metadata import Deployment, Feedback
from dlplatform.serve import batch, service
from dlplatform.serve.spec import (
    BatchPredictResult,
    DeploymentInfo,
    FeedbackRequest,
    PredictionResult,
    deploy_request,
)


class ServingClient:
    """Deploy, inspect and call model deployments as one user."""

    def __init__(self, backend: Backend, principal: Principal) -> None:
        self._backend = backend
        self._principal = principal

    def deploy(
        self,
        name_or_ref: Any,
        *,
        min_replicas: int | None = None,
        max_replicas: int | None = None,
        max_batch_size: int | None = None,
        shared: bool = False,
        **options: Any,
    ) -> DeploymentInfo:
        """Serve ``NAME[@VERSION|@ALIAS]`` (or a ``ModelVersion``); other ``DeploymentSpec``
        fields (``allow_anonymous``, ``max_rows``, ``log_sample_rate``, ...) go in ``options``."""
        request = deploy_request(name_or_ref, min_replicas=min_replicas,
                                 max_replicas=max_replicas, max_batch_size=max_batch_size,
                                 shared=shared, **options)  # fmt: skip
        return service.deploy(self._backend, self._principal, request.model, request.config)

    def undeploy(self, name: str) -> Deployment:
        return service.undeploy(self._backend, self._principal, name)

    def list(self) -> list[DeploymentInfo]:
        return service.list_deployments(self._backend, self._principal)

    def get(self, name: str) -> DeploymentInfo:
        return service.get_deployment(self._backend, self._principal, name)

    def traffic(self, name: str, split: dict[Any, int]) -> DeploymentInfo:
        """Split requests between versions, e.g. ``{3: 90, 4: 10}``."""
        return service.set_traffic(self._backend, self._principal, name, split)

    def predict(self, name: str, inputs: Any) -> PredictionResult:
        return service.predict(self._backend, self._principal, name, inputs)

    def feedback(self, request_id: str, label: Any) -> Feedback:
        return service.feedback(
            self._backend, self._principal, FeedbackRequest(request_id=request_id, label=label)
        )

    def batch_predict(
        self, model: str, dataset: str, output: str, *, workers: int = 1
    ) -> BatchPredictResult:
        return batch.batch_predict(
            self._backend, self._principal, model, dataset, output, workers=workers
        )
