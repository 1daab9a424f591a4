"""``p.serving`` over HTTP: deploy, inspect, split traffic, predict, feedback, batch inference.

```python
p.serving.deploy("digits-mlp", max_replicas=2)          # POST /models/digits-mlp
p.serving.predict("digits-mlp", [[0.0] * 64])
p.serving.traffic("digits-mlp", {3: 90, 4: 10})
p.serving.rollout("digits-mlp", 5, steps=[10, 50, 100])  # judged steps, then promoted
p.serving.rollout_status("digits-mlp").status           # RUNNING, PROMOTED, ROLLED_BACK
p.serving.abort_rollout("digits-mlp")                    # all traffic back, ABORTED
```
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from dlplatform.client._http import HttpClient
from dlplatform.metadata import Deployment, Feedback
from dlplatform.serve.spec import (
    BatchPredictResult,
    DeploymentInfo,
    PredictionResult,
    RolloutRequest,
    RolloutStatus,
    deploy_request,
    rollout_spec,
)

_DEPLOYMENTS_PAGE = 100  # the gateway's largest page (serve.service.MAX_DEPLOYMENTS_PAGE)


def _seg(value: object) -> str:
    return quote(str(value), safe="")


class ServingClient:
    """Deploy, inspect and call model deployments as one user."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

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
        return self._http.call("POST", "deployments", DeploymentInfo, json_body=request,
                               timeout_s=300.0)  # fmt: skip

    def undeploy(self, name: str) -> Deployment:
        return self._http.delete(f"deployments/{_seg(name)}", Deployment)

    def list(self) -> list[DeploymentInfo]:
        """Every deployment, by name (fetched a page at a time)."""
        return self._http.get_all("deployments", DeploymentInfo, page_size=_DEPLOYMENTS_PAGE)

    def get(self, name: str) -> DeploymentInfo:
        return self._http.get(f"deployments/{_seg(name)}", DeploymentInfo)

    def traffic(self, name: str, split: dict[Any, int]) -> DeploymentInfo:
        """Split requests between versions, e.g. ``{3: 90, 4: 10}``."""
        body = {"traffic": {str(k): int(v) for k, v in split.items()}}
        return self._http.call("POST", f"deployments/{_seg(name)}/traffic", DeploymentInfo,
                               json_body=body, timeout_s=300.0)  # fmt: skip

    def rollout(self, name: str, version: int, **spec: Any) -> RolloutStatus:
        """Move ``name``'s traffic to ``version`` in judged steps (``RolloutSpec`` fields in
        ``spec``: ``steps``, ``min_dwell_s``, ``min_requests``, ``alpha``, ...); returns at once."""
        request = RolloutRequest(version=version, spec=rollout_spec(**spec))
        return self._http.call("POST", f"deployments/{_seg(name)}/rollouts", RolloutStatus,
                               json_body=request)  # fmt: skip

    def rollout_status(self, name: str) -> RolloutStatus:
        """The newest rollout of ``name`` with each step and decision."""
        return self._http.get(f"deployments/{_seg(name)}/rollout", RolloutStatus)

    def abort_rollout(self, name: str) -> RolloutStatus:
        """Stop the running rollout of ``name``: all traffic back on its starting version."""
        return self._http.call("POST", f"deployments/{_seg(name)}/rollout/abort", RolloutStatus,
                               timeout_s=300.0)  # fmt: skip

    def predict(self, name: str, inputs: Any) -> PredictionResult:
        """``POST /models/<name>`` on the model application (same host as the gateway).

        Retried like a read when a replica dies under it (connection lost, or its proxy answers
        for it): a prediction changes nothing but the prediction log, where a retried request whose
        first answer was lost on the way may be recorded twice (each with its own request id).
        """
        return self._http.call(
            "POST", f"/models/{_seg(name)}", PredictionResult, json_body={"inputs": inputs},
            idempotent=True,
        )  # fmt: skip

    def feedback(self, request_id: str, label: Any) -> Feedback:
        return self._http.post("feedback", Feedback, {"request_id": request_id, "label": label})

    def batch_predict(
        self, model: str, dataset: str, output: str, *, workers: int = 1
    ) -> BatchPredictResult:
        """Score a dataset version into a new commit of ``output`` (blocks until it exists)."""
        body = {"model": model, "dataset": dataset, "output": output, "workers": workers}
        return self._http.call("POST", "batch-predictions", BatchPredictResult, json_body=body,
                               timeout_s=3600.0)  # fmt: skip
