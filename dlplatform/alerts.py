"""Alerts for every entry point: list open (or all) alerts, resolve one.

Alerts are raised by the platform itself (drift and error-rate monitors, failed workflow steps)
through ``store.create_alert``; people look at them and resolve them here. Viewing needs
``model.view`` (every role that sees models sees what went wrong with them); resolving needs
``deploy.manage``. Both calls are audited.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dlplatform.access import Permission, Principal, audit, authorize
from dlplatform.errors import InvalidInput
from dlplatform.metadata import Alert

if TYPE_CHECKING:
    from dlplatform.context import Backend

MAX_ALERTS_PAGE = 500
_MAX_SCANNED = 100_000


def list_alerts(
    backend: Backend,
    principal: Principal,
    *,
    include_resolved: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Alert], int]:
    """One page of alerts, newest first, and the total number matching.

    Raises:
        InvalidInput: ``limit`` outside 1..MAX_ALERTS_PAGE or a negative ``offset``.
        PermissionDenied: the caller lacks ``model.view``.
    """
    if not 1 <= limit <= MAX_ALERTS_PAGE:
        raise InvalidInput(f"limit must be between 1 and {MAX_ALERTS_PAGE}, got {limit}")
    if offset < 0:
        raise InvalidInput(f"offset must not be negative, got {offset}")
    store = backend.store
    authorize(store, principal, Permission.MODEL_VIEW, "alerts")
    every = store.list_alerts(include_resolved=include_resolved, limit=_MAX_SCANNED)
    page = every[offset : offset + limit]
    audit(store, principal, "alerts.view", "alerts", f"returned {len(page)} of {len(every)}")
    return page, len(every)


def resolve_alert(backend: Backend, principal: Principal, alert_id: int) -> Alert:
    """Mark an alert resolved. Resolving a resolved alert is harmless (it keeps its first time).

    Raises:
        InvalidInput: a non-positive id.
        PermissionDenied: the caller lacks ``deploy.manage``.
        NotFound: no such alert.
    """
    if not isinstance(alert_id, int) or alert_id < 1:
        raise InvalidInput(f"alert id must be a positive integer, got {str(alert_id)[:20]!r}")
    store = backend.store
    target = f"alert:{alert_id}"
    authorize(store, principal, Permission.DEPLOY_MANAGE, target)
    alert = store.get_alert(alert_id)
    if alert.resolved_at is None:
        alert = store.resolve_alert(alert_id)
    audit(store, principal, "alerts.resolve", target, f"kind={alert.kind}")
    return alert
