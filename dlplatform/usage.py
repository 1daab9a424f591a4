"""Resource accounting and quotas: what each run, deployment, user and dataset held, and limits.

What is recorded (one ``UsageInterval`` per holding, in the ``usage_intervals`` table):

- a training or tuning run: from the moment the training scheduler admits it until it ends, the
  CPUs and GPUs the scheduler reserved for it (``scheduler.needs``: workers x resources per
  worker; a tuning run: all its concurrent trials). This is *allocated*, not measured: Ray
  reserves these logical resources for the run's workers whether they are busy or not. Its peak
  memory is *measured*: the scheduler samples the resident set size of the run's processes on
  the head node (the warm pool's members, or the Ray Job's driver and workers) every few
  seconds and keeps the largest sum (None where nothing could be sampled, e.g. on other nodes).
- a deployment: from each deploy, traffic change or restore until the next one or the
  undeploy, its replicas (as Serve reported them running, at least ``min_replicas``) x
  ``num_cpus`` per replica; autoscaling between two changes is not followed. A deployment on
  the shared multiplexed app holds no replicas of its own and is counted with 0 CPUs.

Usage over a window is the sum of the intervals clipped to it: CPU-seconds (CPUs x seconds
held), GPU-seconds, wall seconds held and the peak memory, in total and per time bucket.

Quotas (optional, per user and per group; admins set them): the most CPUs and GPUs a user's
(or a group's members') runs may hold at once, and the GPU-hours they may use in any 24 hours.
The training scheduler (its gate: ``train.quota.QuotaGate``) keeps a run that would exceed one
QUEUED with the reason (``waiting for quota: user alice holds 2 of 2 CPUs``) and admits it once
the user's other runs end.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import InvalidInput, NotFound
from dlplatform.metadata.records import Quota, UsageInterval, check_name, utcnow

if TYPE_CHECKING:
    from dlplatform.context import Backend
    from dlplatform.metadata import Deployment, MetadataStore, Run

UsageBy = Literal["user", "run", "deployment", "dataset"]
USAGE_BY: tuple[str, ...] = ("user", "run", "deployment", "dataset")
MAX_WINDOW = timedelta(days=400)
"""The longest window one usage query covers (a longer one is an unbounded query)."""
MAX_BUCKETS = 2000
"""The most time buckets one usage series has."""
QUOTA_WINDOW = timedelta(hours=24)
"""GPU-hours per day are counted over the last 24 hours, whenever a run asks."""
_AUTO_BUCKETS_S = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


# --- time windows ----------------------------------------------------------------------------


def parse_duration_s(value: str, what: str = "duration") -> float:
    """``90s``, ``15m``, ``1h``, ``7d``, ``2w`` in seconds.

    Raises:
        InvalidInput: anything else, or zero.
    """
    match = _RELATIVE.match(value or "")
    if not match:
        raise InvalidInput(
            f"{what} {str(value)[:40]!r}: expected a number and a unit, e.g. 30m, 1h or 7d"
        )
    seconds = float(match.group(1)) * _UNIT_S[match.group(2).lower()]
    if seconds <= 0:
        raise InvalidInput(f"{what} {value!r} must be longer than zero")
    return seconds


def parse_time(value: str, now: datetime, what: str) -> datetime:
    """A point in time: ``now``, a span before now (``7d``, ``12h``) or an ISO 8601 timestamp
    (UTC when it names no zone).

    Raises:
        InvalidInput: none of these.
    """
    text = (value or "").strip()
    if text.lower() == "now":
        return now
    if _RELATIVE.match(text):
        try:
            return now - timedelta(seconds=parse_duration_s(text, what))
        except OverflowError:
            raise InvalidInput(f"{what} {text[:40]!r} reaches before the year 1") from None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{what} {text[:40]!r}: expected a span before now (7d, 12h, 30m), 'now' or an ISO "
            "8601 time such as 2026-01-31T12:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class UsageWindow:
    """A checked query window: ``since < until``, at most ``MAX_WINDOW`` long."""

    since: datetime
    until: datetime
    bucket_s: float


def resolve_window(
    since: str | None, until: str | None = None, bucket: str | None = None,
    now: datetime | None = None,
) -> UsageWindow:  # fmt: skip
    """The window ``[since, until)`` with its bucket size (by default about 100 buckets).

    Raises:
        InvalidInput: no ``since`` (an unbounded range), ``since`` not before ``until`` (an
            inverted range), a window longer than ``MAX_WINDOW`` or with more than
            ``MAX_BUCKETS`` buckets, or a value that does not parse.
    """
    now = now or utcnow()
    if not since:
        raise InvalidInput(
            "since is required: usage is reported over a bounded window, e.g. since=7d"
        )
    start = parse_time(since, now, "since")
    end = parse_time(until, now, "until") if until else now
    if start >= end:
        raise InvalidInput(
            f"inverted time range: since ({start.isoformat()}) must be before until "
            f"({end.isoformat()})"
        )
    span_s = (end - start).total_seconds()
    if end - start > MAX_WINDOW:
        raise InvalidInput(
            f"the window is {span_s / 86400:.0f} days long; usage queries cover at most "
            f"{MAX_WINDOW.days} days"
        )
    if bucket:
        bucket_s = parse_duration_s(bucket, "bucket")
    else:
        bucket_s = next((b for b in _AUTO_BUCKETS_S if span_s / b <= 100), _AUTO_BUCKETS_S[-1])
    if span_s / bucket_s > MAX_BUCKETS:
        raise InvalidInput(
            f"bucket {bucket} makes {math.ceil(span_s / bucket_s)} buckets over this window; at "
            f"most {MAX_BUCKETS}: choose a larger bucket"
        )
    return UsageWindow(start, end, bucket_s)


# --- reports ---------------------------------------------------------------------------------


class UsageTotal(BaseModel, frozen=True, extra="forbid"):
    """What one user, run, deployment or dataset held in the window."""

    key: str = Field(description="The user, run id, deployment name or dataset.")
    cpu_seconds: float = Field(description="CPUs allocated x seconds held.")
    gpu_seconds: float = Field(description="GPUs allocated x seconds held.")
    wall_seconds: float = Field(description="Seconds held (summed over its runs/deployments).")
    peak_mem_bytes: int | None = Field(description="Largest sampled resident memory (None: none).")
    subjects: int = Field(description="How many runs and deployments held resources.")


class UsagePoint(BaseModel, frozen=True, extra="forbid"):
    """What one key held in one time bucket."""

    key: str
    start: datetime = Field(description="Start of the bucket.")
    cpu_seconds: float
    gpu_seconds: float


class UsageReport(BaseModel, frozen=True, extra="forbid"):
    """Totals per key (largest CPU-seconds first) and a time series per key."""

    by: UsageBy
    since: datetime
    until: datetime
    bucket_s: float
    totals: list[UsageTotal]
    series: list[UsagePoint]


def _key(interval: UsageInterval, by: str) -> str | None:
    if by == "user":
        return interval.owner
    if by == "dataset":
        return interval.dataset
    if by == interval.kind:
        return interval.subject
    return None


@dataclass
class _Sums:
    cpu: float = 0.0
    gpu: float = 0.0
    wall: float = 0.0
    peak: int | None = None
    subjects: set[tuple[str, str]] = field(default_factory=set)


def summarize(
    intervals: Iterable[UsageInterval], by: str, window: UsageWindow, now: datetime
) -> UsageReport:
    """Totals and series of ``intervals`` clipped to ``window`` (an open one ends ``now``)."""
    if by not in USAGE_BY:
        raise InvalidInput(f"by must be one of {', '.join(USAGE_BY)}, got {str(by)[:30]!r}")
    sums: dict[str, _Sums] = {}
    buckets: dict[tuple[str, int], list[float]] = {}
    step = window.bucket_s
    for iv in intervals:
        key = _key(iv, by)
        if key is None:
            continue
        a = max(iv.start_at, window.since)
        b = min(iv.end_at or now, window.until, max(now, window.since))
        if b <= a:
            continue
        total = sums.setdefault(key, _Sums())
        held = (b - a).total_seconds()
        total.cpu += held * iv.cpus
        total.gpu += held * iv.gpus
        total.wall += held
        total.subjects.add((iv.kind, iv.subject))
        if iv.peak_mem_bytes is not None:
            total.peak = max(total.peak or 0, iv.peak_mem_bytes)
        lo = (a - window.since).total_seconds()
        hi = (b - window.since).total_seconds()
        for index in range(int(lo // step), math.ceil(hi / step)):
            part = min(hi, (index + 1) * step) - max(lo, index * step)
            if part > 0:
                cell = buckets.setdefault((key, index), [0.0, 0.0])
                cell[0] += part * iv.cpus
                cell[1] += part * iv.gpus
    totals = [
        UsageTotal(key=k, cpu_seconds=s.cpu, gpu_seconds=s.gpu, wall_seconds=s.wall,
                   peak_mem_bytes=s.peak, subjects=len(s.subjects))
        for k, s in sums.items()
    ]  # fmt: skip
    totals.sort(key=lambda t: (-t.cpu_seconds, -t.gpu_seconds, t.key))
    series = [
        UsagePoint(key=k, start=window.since + timedelta(seconds=i * step), cpu_seconds=c,
                   gpu_seconds=g)
        for (k, i), (c, g) in sorted(buckets.items())
    ]  # fmt: skip
    return UsageReport(
        by=by, since=window.since, until=window.until, bucket_s=step, totals=totals,  # type: ignore[arg-type]
        series=series,
    )  # fmt: skip


def usage_report(
    backend: Backend,
    principal: Principal,
    *,
    by: str = "user",
    since: str | None = None,
    until: str | None = None,
    bucket: str | None = None,
) -> UsageReport:
    """CPU/GPU-seconds, wall time and peak memory by user, run, deployment or dataset over
    ``[since, until)`` (see ``resolve_window``), with a series per ``bucket``. An admin sees
    everyone's usage; anyone else their own.

    Raises:
        InvalidInput: a bad ``by`` or window (inverted, unbounded, unparsable).
        PermissionDenied: the caller may not view training.
    """
    if by not in USAGE_BY:
        raise InvalidInput(f"by must be one of {', '.join(USAGE_BY)}, got {str(by)[:30]!r}")
    now = utcnow()
    window = resolve_window(since, until, bucket, now)
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "usage")
    kind = "deployment" if by == "deployment" else "run" if by in ("run", "dataset") else None
    owner = None if principal.is_admin else principal.name
    intervals = backend.store.list_usage(window.since, window.until, kind=kind, owner=owner)
    return summarize(intervals, by, window, now)


def held_by(
    store: MetadataStore, kind: Literal["run", "deployment"], subject: str, since: datetime
) -> UsageTotal | None:
    """What one run or deployment held from ``since`` until now (None: nothing yet)."""
    now = utcnow()
    until = max(now, since + timedelta(seconds=1))
    window = UsageWindow(since, until, (until - since).total_seconds())
    totals = summarize(store.usage_of(kind, subject), kind, window, now).totals
    return totals[0] if totals else None


# --- recording -------------------------------------------------------------------------------


def record_run_start(store: MetadataStore, run: Run, cpus: float, gpus: float) -> None:
    """Open the interval of a run the training scheduler just admitted."""
    dataset = None
    if run.dataset_commit:
        try:
            dataset = store.get_commit(run.dataset_commit).dataset
        except NotFound:
            dataset = None
    store.open_usage(
        UsageInterval(kind="run", subject=run.id, owner=run.owner, dataset=dataset,
                      start_at=run.started_at or utcnow(), cpus=cpus, gpus=gpus)
    )  # fmt: skip


def record_deployment(store: MetadataStore, record: Deployment, cpus: float) -> None:
    """Open the interval of a deployment as it runs now (its previous one ends here)."""
    store.open_usage(
        UsageInterval(kind="deployment", subject=record.name, owner=record.created_by,
                      start_at=utcnow(), cpus=cpus, gpus=0.0)
    )  # fmt: skip


def record_undeploy(store: MetadataStore, name: str) -> None:
    """End the interval of a deployment that stopped."""
    store.close_usage("deployment", name, utcnow())


# --- quotas ----------------------------------------------------------------------------------


class QuotaSpec(BaseModel, frozen=True, extra="forbid"):
    """Limits for a user or group; None lifts a limit."""

    max_cpus: float | None = Field(default=None, ge=0, le=1e6,
                                   description="Most CPUs its runs hold at once.")  # fmt: skip
    max_gpus: float | None = Field(default=None, ge=0, le=1e6,
                                   description="Most GPUs its runs hold at once.")  # fmt: skip
    gpu_hours_per_day: float | None = Field(
        default=None, ge=0, le=1e6, description="GPU-hours its runs may use in any 24 hours."
    )


def _check_scope(scope: str, name: str) -> None:
    if scope not in ("user", "group"):
        raise InvalidInput(f"scope must be user or group, got {str(scope)[:20]!r}")
    try:
        check_name(name)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def set_quota(
    backend: Backend, principal: Principal, scope: str, name: str, spec: QuotaSpec
) -> Quota:
    """Set the quota of a user or group (admin; audited). The scheduler applies it at once.

    Raises:
        InvalidInput: a bad scope or name.
        PermissionDenied: the caller is not an admin.
        NotFound: ``scope`` is ``user`` and no such user exists.
    """
    _check_scope(scope, name)
    authorize(backend.store, principal, Permission.USERS_MANAGE, f"quota:{scope}:{name}")
    if scope == "user":
        backend.store.get_user(name)
    quota = Quota(scope=scope, name=name, **spec.model_dump(), updated_by=principal.name,  # type: ignore[arg-type]
                  updated_at=utcnow())  # fmt: skip
    backend.store.put_quota(quota)
    audit(backend.store, principal, "quota.set", f"quota:{scope}:{name}", spec.model_dump_json())
    return quota


def list_quotas(backend: Backend, principal: Principal) -> list[Quota]:
    """Every quota (anyone who may view training sees them: they explain waiting runs)."""
    authorize(backend.store, principal, Permission.TRAIN_VIEW, "quotas")
    return backend.store.list_quotas()


def delete_quota(backend: Backend, principal: Principal, scope: str, name: str) -> Quota:
    """Lift every limit of a user or group (admin; audited).

    Raises:
        NotFound: it has no quota.
    """
    _check_scope(scope, name)
    authorize(backend.store, principal, Permission.USERS_MANAGE, f"quota:{scope}:{name}")
    removed = backend.store.delete_quota(scope, name)
    audit(backend.store, principal, "quota.delete", f"quota:{scope}:{name}")
    return removed


def resident_bytes(pids: Iterable[int]) -> int | None:
    """The summed resident memory of the live processes ``pids`` of this machine (from
    ``/proc``: Linux only), or None when none of them could be read."""
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    total, seen = 0, False
    for pid in set(pids):
        try:
            with open(f"/proc/{int(pid)}/statm") as f:
                total += int(f.read().split()[1]) * page
            seen = True
        except (OSError, ValueError, IndexError):
            continue
    return total if seen else None
