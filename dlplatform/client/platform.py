"""``connect()`` and the ``Platform`` it returns: one user's HTTP connection to the gateway.

Each namespace (``p.datasets``, ``p.training``, ...) is a thin typed client of one part of
``/api/v1``, imported on first use (a CLI command loads only its own); answers come back as the platform's records and errors as its typed exceptions.
Nothing here imports Ray or torch (``to_ray()`` alone loads Ray, on the cluster).
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from typing import TYPE_CHECKING

from dlplatform.access import Principal
from dlplatform.client import profiles
from dlplatform.client._http import HttpClient
from dlplatform.errors import Unauthenticated

if TYPE_CHECKING:
    from dlplatform.client.admin import AlertsClient, AuditClient, LineageClient, UsersClient
    from dlplatform.client.datasets import DatasetsClient
    from dlplatform.client.runs import RunsClient
    from dlplatform.client.serving import ServingClient
    from dlplatform.client.training import ModelsClient, TrainingClient, TuningClient
    from dlplatform.client.usage import UsageClient
    from dlplatform.client.workflows import WorkflowsClient


class Platform:
    """A connection to dlplatform as one user (``with dlp.connect() as p: ...`` closes it)."""

    def __init__(self, http: HttpClient, target: profiles.Target | None = None) -> None:
        self.http = http
        self.target = target

    @property
    def url(self) -> str:
        return self.http.url

    def whoami(self) -> Principal:
        """Who the token belongs to (name, role, groups)."""
        return self.http.get("whoami", Principal)

    def health(self) -> dict[str, str]:
        """``/healthz`` (no token needed): the gateway and its metadata store answer."""
        return self.http.get("healthz", dict[str, str])

    @cached_property
    def datasets(self) -> DatasetsClient:
        from dlplatform.client.datasets import DatasetsClient  # lazy: loaded on first use

        return DatasetsClient(self.http)

    @cached_property
    def training(self) -> TrainingClient:
        from dlplatform.client.training import TrainingClient  # lazy: loaded on first use

        return TrainingClient(self.http)

    @cached_property
    def runs(self) -> RunsClient:
        """Track runs from your own code (``p.runs.start``) and search runs of every kind."""
        from dlplatform.client.runs import RunsClient  # lazy: loaded on first use

        return RunsClient(self.http)

    @cached_property
    def tuning(self) -> TuningClient:
        from dlplatform.client.training import TuningClient  # lazy: loaded on first use

        return TuningClient(self.http)

    @cached_property
    def models(self) -> ModelsClient:
        from dlplatform.client.training import ModelsClient  # lazy: loaded on first use

        return ModelsClient(self.http)

    @cached_property
    def serving(self) -> ServingClient:
        from dlplatform.client.serving import ServingClient  # lazy: loaded on first use

        return ServingClient(self.http)

    @cached_property
    def workflows(self) -> WorkflowsClient:
        from dlplatform.client.workflows import WorkflowsClient  # lazy: loaded on first use

        return WorkflowsClient(self.http)

    @cached_property
    def lineage(self) -> LineageClient:
        from dlplatform.client.admin import LineageClient  # lazy: loaded on first use

        return LineageClient(self.http)

    @cached_property
    def users(self) -> UsersClient:
        from dlplatform.client.admin import UsersClient  # lazy: loaded on first use

        return UsersClient(self.http)

    @cached_property
    def audit(self) -> AuditClient:
        from dlplatform.client.admin import AuditClient  # lazy: loaded on first use

        return AuditClient(self.http)

    @cached_property
    def alerts(self) -> AlertsClient:
        from dlplatform.client.admin import AlertsClient  # lazy: loaded on first use

        return AlertsClient(self.http)

    @cached_property
    def usage(self) -> UsageClient:
        """``p.usage(by="user", since="7d")``: resources held, as a DataFrame; and quotas."""
        from dlplatform.client.usage import UsageClient  # lazy: loaded on first use

        return UsageClient(self.http)

    def close(self) -> None:
        """End the runs still open through this client (``p.runs.start``), then close it."""
        runs = sys.modules.get("dlplatform.client.runs")  # loaded once a run was started
        if runs is not None:
            runs.end_open_runs(self.http)
        self.http.close()

    def __enter__(self) -> Platform:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Platform {self.url}>"


def connect(
    url: str | None = None,
    token: str | None = None,
    profile: str | None = None,
    *,
    home: str | None = None,
    timeout_s: float = 30.0,
    retries: int = 3,
) -> Platform:
    """Connect to the platform's gateway over HTTP.

    The URL comes from ``url``, else ``DLP_URL``, else the profile (``profile``, ``DLP_PROFILE``
    or the active one, see ``dlp login``), else the platform running under the local home
    (``home``, else ``DLP_HOME``); the token from ``token``, ``DLP_TOKEN``, the profile, or the
    local admin token file. Nothing is contacted until the first call.

    Raises:
        Unauthenticated: no platform or no token was found.
        InvalidInput: a malformed URL or an unknown profile.
    """
    env = dict(os.environ)
    if home is not None:
        env["DLP_HOME"] = home
    target = profiles.resolve(url, token, profile, env)
    if not target.token:
        raise Unauthenticated(f"no token for {target.url}: set DLP_TOKEN or run `dlp login "
                              f"{target.url}` (in Python, token= works too)")  # fmt: skip
    if "IPython" in sys.modules:  # HTML views and short platform errors in notebooks
        from dlplatform.lab._html import install  # lazy: only under IPython

        install()
    http = HttpClient(target.url, target.token, timeout_s=timeout_s, retries=retries)
    return Platform(http, target)
