"""Progressive delivery: move a deployment's traffic to a new version in steps, judging each step
on live numbers, and promote the version or roll all traffic back.

``start_rollout(backend, principal, name, version, spec)`` records a RUNNING ``Rollout`` in the
metadata store and wakes the rollout driver (``_rollout_driver``, started by ``ensure_driver``:
one detached, named actor per platform, restarted by Ray, started again by ``dlp up``). The driver
calls ``advance`` for every RUNNING rollout about twice a second; everything ``advance`` needs is in the store, so a rollout
survives a restart of the gateway, of the driver, or of the whole platform.

One step (``RolloutSpec.steps``, e.g. 5 → 25 → 50 → 100 %):

1. the split {current: 100 - p, new: p} is applied (``service.set_traffic``) and the step's start
   time recorded. The first step loads the new version into the replicas (a rolling replace, no
   request fails); every later move, the rollback included, is a change of weights in place that
   every replica follows within milliseconds (both versions stay loaded);
2. the step waits for ``min_dwell_s``, ``min_requests`` requests and ``min_labels`` labelled rows
   of the new version (rolled back past ``max_step_s``);
3. it is judged (``serve._stats``) on the prediction log: the new version's requests since the
   step started against the current version's since ``baseline_window_s`` before the rollout:
   error rate and accuracy by a one-sided two-proportion test at ``alpha``, p99 latency within a
   tolerance. A failing check rolls all traffic back to the current version at once, raises an
   alert and ends the rollout ROLLED_BACK; a passing last step points ``promote_alias``
   (``production``) at the new version and ends it PROMOTED.

Each traffic move and decision is a ``RolloutEvent`` with its numbers (the deployment's rollout
history), an audit entry and, for promotion and rollback, a lineage edge. A deployment whose
traffic someone else changes, or that is undeployed, mid-rollout ends the rollout ABORTED.
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from dlplatform.access import SYSTEM, Permission, Principal, audit, authorize
from dlplatform.config import Settings
from dlplatform.context import Backend
from dlplatform.errors import Conflict, DLPlatformError, InvalidInput, NotFound
from dlplatform.metadata import Deployment, LineageEdge
from dlplatform.metadata.records import Rollout, RolloutEvent, VersionWindow, utcnow
from dlplatform.serve import _stats
from dlplatform.serve.service import (
    account_replicas,
    set_traffic,
    traffic_of,
    verify_deployable,
)
from dlplatform.serve.spec import RolloutEventInfo, RolloutSpec, RolloutStatus

log = logging.getLogger(__name__)


def _spec(rollout: Rollout) -> RolloutSpec:
    return RolloutSpec.model_validate_json(rollout.spec_json)


def _split(rollout: Rollout, percent: int) -> dict[int, int]:
    split = {rollout.from_version: 100 - percent, rollout.to_version: percent}
    return {v: w for v, w in split.items() if w > 0}


def _event(
    backend: Backend,
    rollout: Rollout,
    kind: str,
    percent: int,
    message: str,
    *,
    decision: str = "",
    numbers: dict[str, Any] | None = None,
) -> RolloutEvent:
    return RolloutEvent(
        rollout_id=rollout.id,
        seq=backend.store.next_rollout_seq(rollout.id),
        at=utcnow(),
        kind=kind,
        percent=percent,
        decision=decision,
        numbers_json=json.dumps(numbers or {}),
        message=message,
    )


def status_of(backend: Backend, rollout: Rollout) -> RolloutStatus:
    spec = _spec(rollout)
    events = [
        RolloutEventInfo(
            seq=e.seq,
            at=e.at.isoformat(),
            kind=e.kind,
            percent=e.percent,
            decision=e.decision,
            numbers=json.loads(e.numbers_json or "{}"),
            message=e.message,
        )
        for e in backend.store.list_rollout_events(rollout.id)
    ]
    return RolloutStatus(
        id=rollout.id,
        deployment=rollout.deployment,
        model=rollout.model,
        from_version=rollout.from_version,
        to_version=rollout.to_version,
        status=rollout.status,
        step=rollout.step,
        percent=spec.steps[min(rollout.step, len(spec.steps) - 1)],
        reason=rollout.reason,
        spec=spec,
        created_by=rollout.created_by,
        created_at=rollout.created_at.isoformat(),
        updated_at=rollout.updated_at.isoformat(),
        finished_at=rollout.finished_at.isoformat() if rollout.finished_at else None,
        events=events,
    )


def _signature(backend: Backend, model: str, version: int) -> Any:
    return json.loads(backend.store.get_model_version(model, version).signature_json or "{}")


def start_rollout(
    backend: Backend,
    principal: Principal,
    name: str,
    version: int,
    spec: RolloutSpec | None = None,
) -> RolloutStatus:
    """Start moving ``name``'s traffic to ``version`` in steps (see the module docstring).
    Returns at once; the rollout driver applies the steps.

    Raises:
        PermissionDenied: the caller lacks ``deploy.manage``.
        NotFound: no such deployment or version.
        InvalidInput: the version serves already, or its signature differs (not a drop-in).
        Conflict: the deployment has a rollout in progress, or splits its traffic.
        IntegrityError: the version's artifact fails its integrity check.
    """
    authorize(backend.store, principal, Permission.DEPLOY_MANAGE, f"deployment:{name}")
    spec = spec or RolloutSpec()
    record = backend.store.get_deployment(name)
    traffic = traffic_of(record)
    if len(traffic) != 1:
        shown = " ".join(f"v{v}={w}%" for v, w in traffic.items())
        raise Conflict(
            f"deployment {name} splits its traffic ({shown}); a rollout starts from one serving "
            "version: set its traffic to one version first"
        )
    current = next(iter(traffic))
    if version == current:
        raise InvalidInput(f"version {version} of {record.model} is already serving {name}")
    backend.store.get_model_version(record.model, version)
    new_sig = _signature(backend, record.model, version)
    cur_sig = _signature(backend, record.model, current)
    if new_sig != cur_sig:
        differs = sorted(k for k in set(new_sig) | set(cur_sig) if new_sig.get(k) != cur_sig.get(k))
        raise InvalidInput(
            f"version {version} of {record.model} has another signature than the serving version "
            f"{current} (differs in: {', '.join(differs)}); a rollout must be a drop-in"
        )
    verify_deployable(backend, record.model, version)
    now = utcnow()
    rollout = Rollout(
        id=f"ro-{uuid.uuid4().hex[:12]}",
        deployment=name,
        model=record.model,
        from_version=current,
        to_version=version,
        spec_json=spec.model_dump_json(),
        created_by=principal.name,
        created_at=now,
        updated_at=now,
    )
    steps = " -> ".join(f"{s}%" for s in spec.steps)
    first = RolloutEvent(
        rollout_id=rollout.id, seq=1, at=now, kind="start", percent=0,
        numbers_json=spec.model_dump_json(),
        message=f"rollout of {record.model}@{version} over @{current}: {steps}",
    )  # fmt: skip
    backend.store.create_rollout(rollout, first)
    audit(backend.store, principal, "rollout.start", f"deployment:{name}",
          f"{rollout.id} v{current}->v{version} steps={spec.steps}")  # fmt: skip
    if backend.on_cluster:
        wake_driver(backend.settings)
    return status_of(backend, rollout)


def rollout_status(backend: Backend, principal: Principal, name: str) -> RolloutStatus:
    """The newest rollout of deployment ``name`` with every step and decision (and the
    rollout driver started, should a RUNNING rollout have none).

    Raises:
        NotFound: the deployment never had a rollout.
    """
    authorize(backend.store, principal, Permission.MODEL_VIEW, f"deployment:{name}")
    rollout = backend.store.latest_rollout(name)
    if rollout.status == "RUNNING" and backend.on_cluster:
        ensure_driver(backend.settings)  # a driver that is gone for good is started again
    return status_of(backend, rollout)


def abort_rollout(backend: Backend, principal: Principal, name: str) -> RolloutStatus:
    """Stop the running rollout of deployment ``name`` by hand: it ends ABORTED (recorded
    first, so the driver moves no more traffic), then all traffic goes back to the version it
    started from at once.

    Raises:
        PermissionDenied: the caller lacks ``deploy.manage``.
        NotFound: the deployment never had a rollout.
        Conflict: its newest rollout has ended already.
    """
    authorize(backend.store, principal, Permission.DEPLOY_MANAGE, f"deployment:{name}")
    rollout = backend.store.latest_rollout(name)
    if rollout.status != "RUNNING":
        raise Conflict(f"the newest rollout of {name} ({rollout.id}) has ended: {rollout.status}")
    percent = _spec(rollout).steps[rollout.step]
    message = f"aborted by {principal.name}; all traffic back on v{rollout.from_version}"
    done = _finish(backend, rollout, "ABORTED", message,
                   _event(backend, rollout, "abort", percent, message))  # fmt: skip
    with contextlib.suppress(NotFound):  # undeployed meanwhile: nothing to move back
        if traffic_of(backend.store.get_deployment(name)) != {rollout.from_version: 100}:
            set_traffic(backend, SYSTEM, name, {rollout.from_version: 100})
    audit(backend.store, principal, "rollout.abort", f"deployment:{name}",
          f"{rollout.id}: {message}")  # fmt: skip
    return status_of(backend, done)


def _finish(
    backend: Backend, rollout: Rollout, status: str, reason: str, event: RolloutEvent
) -> Rollout:
    now = utcnow()
    done = rollout.model_copy(
        update={"status": status, "reason": reason, "updated_at": now, "finished_at": now}
    )
    return backend.store.update_rollout(done, event)


def _windows(
    backend: Backend, rollout: Rollout, spec: RolloutSpec
) -> tuple[VersionWindow, VersionWindow]:
    assert rollout.step_started_at is not None
    store = backend.store
    new = store.version_window(rollout.deployment, rollout.to_version, rollout.step_started_at)
    since = rollout.created_at - timedelta(seconds=spec.baseline_window_s)
    cur = store.version_window(rollout.deployment, rollout.from_version, since)
    return new, cur


def judge(
    spec: RolloutSpec, elapsed_s: float, new: VersionWindow, cur: VersionWindow
) -> tuple[str, dict[str, Any]]:
    """Decide a step: ``("wait", numbers)`` until its minimum numbers are in, then ``("pass",
    numbers)`` or ``("fail", numbers)``; ``numbers`` holds each check with its figures."""
    new_labelled, new_correct = _stats.count_correct(new.labelled)
    cur_labelled, cur_correct = _stats.count_correct(cur.labelled)
    numbers: dict[str, Any] = {
        "elapsed_s": round(elapsed_s, 3),
        "new": {"version": new.version, "requests": new.requests, "errors": new.errors,
                "p99_ms": new.p99_ms, "labelled": new_labelled, "correct": new_correct},
        "current": {"version": cur.version, "requests": cur.requests, "errors": cur.errors,
                    "p99_ms": cur.p99_ms, "labelled": cur_labelled, "correct": cur_correct},
    }  # fmt: skip
    waiting = []
    if elapsed_s < spec.min_dwell_s:
        waiting.append(f"dwell {elapsed_s:.1f}/{spec.min_dwell_s:g} s")
    if new.requests < spec.min_requests:
        waiting.append(f"requests {new.requests}/{spec.min_requests}")
    if new_labelled < spec.min_labels:
        waiting.append(f"labelled rows {new_labelled}/{spec.min_labels}")
    if waiting:
        numbers["waiting_for"] = waiting
        return "wait", numbers
    checks = [
        _stats.worse_rate_test("error_rate", new.errors, new.requests, cur.errors, cur.requests,
                               spec.alpha, spec.min_samples),
        _stats.latency_check(new.p99_ms, new.requests - new.errors, cur.p99_ms,
                             cur.requests - cur.errors, spec.latency_tolerance,
                             spec.latency_slack_ms, spec.min_samples),
        _stats.worse_rate_test("wrong_rate",
                               new_labelled - new_correct, new_labelled,
                               cur_labelled - cur_correct, cur_labelled, spec.alpha,
                               spec.min_samples),
    ]  # fmt: skip
    numbers["checks"] = [c.as_dict() for c in checks]
    failed = [c for c in checks if c.verdict == _stats.FAIL]
    return ("fail" if failed else "pass"), numbers


def _reason(numbers: dict[str, Any]) -> str:
    failed = [c for c in numbers.get("checks", []) if c["verdict"] == _stats.FAIL]
    return "; ".join(f"{c['name']}: {c['detail']}" for c in failed)


def advance(backend: Backend, rollout: Rollout, now: datetime | None = None) -> Rollout:
    """Take ``rollout`` one move further, from what the store says (the driver's tick): apply
    the step's traffic, or judge the step and go on, promote or roll back. Safe to repeat."""
    if rollout.status != "RUNNING":
        return rollout
    now = now or utcnow()
    spec = _spec(rollout)
    percent = spec.steps[rollout.step]
    try:
        record = backend.store.get_deployment(rollout.deployment)
    except NotFound:
        message = f"deployment {rollout.deployment} was undeployed during the rollout"
        return _finish(backend, rollout, "ABORTED", message,
                       _event(backend, rollout, "abort", percent, message))  # fmt: skip
    if rollout.step_started_at is None:
        return _apply_step(backend, rollout, percent)
    if traffic_of(record) != _split(rollout, percent):
        message = (f"the traffic of {rollout.deployment} was changed outside the rollout "
                   f"({_shown(traffic_of(record))}); stopped without touching it")  # fmt: skip
        return _finish(backend, rollout, "ABORTED", message,
                       _event(backend, rollout, "abort", percent, message))  # fmt: skip
    elapsed_s = (now - rollout.step_started_at).total_seconds()
    if elapsed_s < spec.min_dwell_s:  # no query of the log before the step can be judged
        return rollout
    new, cur = _windows(backend, rollout, spec)
    decision, numbers = judge(spec, elapsed_s, new, cur)
    if decision == "wait":
        if elapsed_s <= spec.max_step_s:
            return rollout
        reason = (f"step {percent}% still short of its minimum numbers after "
                  f"{spec.max_step_s:g} s ({', '.join(numbers['waiting_for'])})")  # fmt: skip
        return _roll_back(backend, rollout, record, percent, reason, numbers)
    if decision == "fail":
        return _roll_back(backend, rollout, record, percent, _reason(numbers), numbers)
    if rollout.step + 1 < len(spec.steps):
        nxt = rollout.model_copy(
            update={"step": rollout.step + 1, "step_started_at": None, "updated_at": utcnow()}
        )
        event = _event(backend, rollout, "step", percent, f"step {percent}% passed",
                       decision="pass", numbers=numbers)  # fmt: skip
        saved = backend.store.update_rollout(nxt, event)
        return _apply_step(backend, saved, spec.steps[saved.step])
    return _promote(backend, rollout, spec, percent, numbers)


def _apply_step(backend: Backend, rollout: Rollout, percent: int) -> Rollout:
    split = _split(rollout, percent)
    try:
        set_traffic(backend, SYSTEM, rollout.deployment, split)
    except DLPlatformError as exc:
        reason = f"moving {percent}% of traffic to v{rollout.to_version} failed: {exc.message}"
        record = backend.store.get_deployment(rollout.deployment)
        return _roll_back(backend, rollout, record, percent, reason, {})
    started = rollout.model_copy(update={"step_started_at": utcnow(), "updated_at": utcnow()})
    shown = _shown(split)
    event = _event(backend, rollout, "traffic", percent, f"step {percent}%: traffic {shown}")
    try:
        saved = backend.store.update_rollout(started, event)
    except Conflict:  # aborted while the step moved traffic: the abort's split wins
        set_traffic(backend, SYSTEM, rollout.deployment, {rollout.from_version: 100})
        raise
    audit(backend.store, SYSTEM, "rollout.step", f"deployment:{rollout.deployment}",
          f"{rollout.id} {shown}")  # fmt: skip
    return saved


def _shown(split: dict[int, int]) -> str:
    return " ".join(f"v{v}={w}%" for v, w in split.items())


def _roll_back(
    backend: Backend,
    rollout: Rollout,
    record: Deployment,
    percent: int,
    reason: str,
    numbers: dict[str, Any],
) -> Rollout:
    """All traffic back to the current version at once, then the record, alert and audit."""
    name = rollout.deployment
    if traffic_of(record) != {rollout.from_version: 100}:
        set_traffic(backend, SYSTEM, name, {rollout.from_version: 100})
    message = f"step {percent}% failed, all traffic back on v{rollout.from_version}: {reason}"
    event = _event(backend, rollout, "rollback", percent, message, decision="fail",
                   numbers=numbers)  # fmt: skip
    done = _finish(backend, rollout, "ROLLED_BACK", reason, event)
    backend.store.create_alert(
        "rollout", f"deployment:{name}",
        f"rollout {rollout.id} of {rollout.model}@{rollout.to_version} rolled back: {message}",
        "critical",
    )  # fmt: skip
    backend.store.add_edges([LineageEdge(src=f"model_version:{rollout.model}@{rollout.to_version}",
                                         dst=f"deployment:{name}", relation="rolled_back")])  # fmt: skip
    audit(backend.store, SYSTEM, "rollout.rollback", f"deployment:{name}",
          f"{rollout.id} by={rollout.created_by}: {message}"[:2000])  # fmt: skip
    log.warning("rollout %s rolled back: %s", rollout.id, message)
    return done


def _promote(
    backend: Backend, rollout: Rollout, spec: RolloutSpec, percent: int, numbers: dict[str, Any]
) -> Rollout:
    name = rollout.deployment
    backend.store.set_alias(rollout.model, spec.promote_alias, rollout.to_version,
                            by=f"rollout:{rollout.id}")  # fmt: skip
    message = (f"every step passed: {rollout.model}@{rollout.to_version} promoted "
               f"({spec.promote_alias})")  # fmt: skip
    event = _event(backend, rollout, "promote", percent, message, decision="pass",
                   numbers=numbers)  # fmt: skip
    done = _finish(backend, rollout, "PROMOTED", message, event)
    backend.store.add_edges([LineageEdge(src=f"model_version:{rollout.model}@{rollout.to_version}",
                                         dst=f"deployment:{name}", relation="promoted")])  # fmt: skip
    audit(backend.store, SYSTEM, "rollout.promote", f"deployment:{name}",
          f"{rollout.id} by={rollout.created_by}: {message}")  # fmt: skip
    return done


def ensure_driver(settings: Settings) -> Any:
    """The handle of the platform's rollout driver (``_rollout_driver``), started if missing:
    it calls ``advance_all`` twice a second and ``service.account_replicas`` every 15 s."""
    from dlplatform.serve import _rollout_driver  # imports Ray: only on a running platform

    return _rollout_driver.ensure_driver(settings, advance_all, account_replicas)


def wake_driver(settings: Settings) -> None:
    """Start the driver if needed and have it look at the rollouts now (fire and forget)."""
    ensure_driver(settings).wake.remote()


def advance_all(backend: Backend) -> int:
    """``advance`` every RUNNING rollout once; returns how many there were. One that fails is
    logged and tried again on the next tick; one that another caller ended is skipped."""
    running = backend.store.list_rollouts(running=True)
    for rollout in running:
        try:
            advance(backend, rollout)
        except Conflict:
            continue  # ended meanwhile (an abort, or another driver)
        except Exception:
            log.exception("advancing rollout %s failed", rollout.id)
    return len(running)
