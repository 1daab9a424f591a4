"""``p.usage``: resource accounting and quotas over HTTP."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from dlplatform.client._http import HttpClient
from dlplatform.metadata.records import Quota
from dlplatform.usage import QuotaSpec, UsageReport

if TYPE_CHECKING:
    import pandas as pd

By = Literal["user", "run", "deployment", "dataset"]


class UsageClient:
    """``p.usage(by="user", since="7d")``: what each user, run, deployment or dataset held
    (CPU-seconds, GPU-seconds, wall seconds, peak memory) as a DataFrame; ``report`` gives the
    totals and the time series as records. Admins see everyone's usage, others their own."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def report(
        self, by: By = "user", since: str = "7d", until: str | None = None,
        bucket: str | None = None,
    ) -> UsageReport:  # fmt: skip
        """Totals and a series per ``bucket`` over ``[since, until)`` (``7d``, ``12h``, ISO)."""
        return self._http.get("usage", UsageReport, by=by, since=since, until=until,
                              bucket=bucket)  # fmt: skip

    def __call__(
        self, by: By = "user", since: str = "7d", until: str | None = None
    ) -> pd.DataFrame:
        """The totals as a DataFrame, one row per key, largest CPU-seconds first."""
        import pandas as pd  # only where a DataFrame is asked for

        totals = self.report(by, since, until).totals
        columns = list(type(totals[0]).model_fields) if totals else [
            "key", "cpu_seconds", "gpu_seconds", "wall_seconds", "peak_mem_bytes", "subjects"]  # fmt: skip
        return pd.DataFrame([t.model_dump() for t in totals], columns=columns)

    def series(
        self, by: By = "user", since: str = "7d", until: str | None = None,
        bucket: str | None = None,
    ) -> pd.DataFrame:  # fmt: skip
        """The time series as a DataFrame: ``key``, ``start``, ``cpu_seconds``, ``gpu_seconds``."""
        import pandas as pd  # only where a DataFrame is asked for

        points = self.report(by, since, until, bucket).series
        columns = ["key", "start", "cpu_seconds", "gpu_seconds"]
        return pd.DataFrame([p.model_dump() for p in points], columns=columns)

    def quotas(self) -> list[Quota]:
        return self._http.get("quotas", list[Quota])

    def set_quota(
        self, scope: Literal["user", "group"], name: str, *, max_cpus: float | None = None,
        max_gpus: float | None = None, gpu_hours_per_day: float | None = None,
    ) -> Quota:  # fmt: skip
        """Limit a user or group (admin); None lifts a limit."""
        spec = QuotaSpec(max_cpus=max_cpus, max_gpus=max_gpus,
                         gpu_hours_per_day=gpu_hours_per_day)  # fmt: skip
        path = f"quotas/{quote(scope, safe='')}/{quote(name, safe='')}"
        return self._http.call("PUT", path, Quota, json_body=spec.model_dump())  # type: ignore[no-any-return]

    def delete_quota(self, scope: Literal["user", "group"], name: str) -> Quota:
        """Lift every limit of a user or group (admin)."""
        return self._http.delete(f"quotas/{quote(scope, safe='')}/{quote(name, safe='')}", Quota)  # type: ignore[no-any-return]
