"""The training scheduler's quota gate: what each user holds now, the GPU-hours they used in the
last ``usage.QUOTA_WINDOW``, and why a run must wait (quotas are set and recorded in
``dlplatform.usage``; this is the admission rule the scheduler applies on each pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from dlplatform.metadata.records import Quota
from dlplatform.usage import QUOTA_WINDOW, UsageWindow, summarize

if TYPE_CHECKING:
    from dlplatform.metadata import MetadataStore


class QuotaGate:
    """One scheduler pass's view of the quotas: what each user holds, and why a run must wait.

    Args:
        quotas: every quota.
        groups_of: a user's groups.
        running: (owner, CPUs, GPUs) of each run holding resources now.
        gpu_seconds: GPU-seconds each user used in the last ``QUOTA_WINDOW``.
    """

    def __init__(
        self,
        quotas: list[Quota],
        groups_of: Callable[[str], tuple[str, ...]],
        running: Iterable[tuple[str, float, float]],
        gpu_seconds: dict[str, float],
    ) -> None:
        self._users = {q.name: q for q in quotas if q.scope == "user"}
        self._groups = {q.name: q for q in quotas if q.scope == "group"}
        self._groups_of = groups_of
        self._gpu_s = gpu_seconds
        self._held: dict[str, list[float]] = {}
        for owner, cpus, gpus in running:
            self.admit(owner, cpus, gpus)

    def admit(self, owner: str, cpus: float, gpus: float) -> None:
        """Count a run just admitted as held by ``owner``."""
        held = self._held.setdefault(owner, [0.0, 0.0])
        held[0] += cpus
        held[1] += gpus

    def _limits(self, owner: str) -> list[tuple[str, Quota, list[str]]]:
        out = []
        if owner in self._users:
            out.append((f"user {owner}", self._users[owner], [owner]))
        for group in self._groups_of(owner) if self._groups else ():
            if group in self._groups:
                known = {owner, *self._held, *self._gpu_s}
                members = sorted(u for u in known if group in self._groups_of(u))
                out.append((f"group {group}", self._groups[group], members))
        return out

    def reason(self, owner: str, cpus: float, gpus: float) -> str | None:
        """Why a run of ``owner`` needing ``cpus``/``gpus`` must wait, or None."""
        for who, quota, members in self._limits(owner):
            held_cpu = sum(self._held.get(m, [0.0, 0.0])[0] for m in members)
            held_gpu = sum(self._held.get(m, [0.0, 0.0])[1] for m in members)
            for unit, need, held, limit in (("CPUs", cpus, held_cpu, quota.max_cpus),
                                            ("GPUs", gpus, held_gpu, quota.max_gpus)):  # fmt: skip
                if limit is None or need <= 0 or held + need <= limit + 1e-9:
                    continue
                if need > limit + 1e-9:
                    return (f"cannot start under quota: it needs {need:g} {unit} and {who} may "
                            f"hold at most {limit:g}")  # fmt: skip
                return (f"waiting for quota: {who} holds {held:g} of {limit:g} {unit} (this run "
                        f"needs {need:g})")  # fmt: skip
            day = quota.gpu_hours_per_day
            used_h = sum(self._gpu_s.get(m, 0.0) for m in (members if day is not None else ()))
            used_h /= 3600
            if day is not None and gpus > 0 and used_h >= day - 1e-9:
                return (f"waiting for quota: {who} used {used_h:.2f} of {day:g} GPU-hours in "
                        "the last 24 hours")  # fmt: skip
        return None

    @staticmethod
    def needs_gpu_usage(quotas: list[Quota]) -> bool:
        return any(q.gpu_hours_per_day is not None for q in quotas)


def gpu_seconds_by_user(store: MetadataStore, now: datetime) -> dict[str, float]:
    """GPU-seconds of each user's runs over the last ``QUOTA_WINDOW``."""
    window = UsageWindow(now - QUOTA_WINDOW, now, QUOTA_WINDOW.total_seconds())
    report = summarize(store.list_usage(window.since, now, kind="run"), "user", window, now)
    return {t.key: t.gpu_seconds for t in report.totals}
