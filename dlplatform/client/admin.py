"""``p.users``, ``p.audit``, ``p.alerts`` and ``p.lineage`` over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

from dlplatform.access import CreatedUser, IssuedToken
from dlplatform.client._http import HttpClient
from dlplatform.errors import InvalidInput
from dlplatform.metadata import (
    Alert,
    AuditEntry,
    LineageNode,
    ModelVersion,
    Role,
    TokenInfo,
    User,
)

_LINEAGE_PAGE = 1000  # the gateway's largest lineage page (dlplatform.lineage.MAX_LINEAGE_PAGE)


def _seg(value: object) -> str:
    return quote(str(value), safe="")


class UsersClient:
    """``p.users``: people and their tokens (creating users needs an admin)."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def create(self, name: str, role: Role | str, groups: Sequence[str] = ()) -> CreatedUser:
        """A new user and its first token (the secret is in the answer, once)."""
        body = {"name": name, "role": Role(role).value, "groups": list(groups)}
        return self._http.post("users", CreatedUser, body)

    def list(self) -> list[User]:
        return self._http.get("users", list[User])

    def disable(self, name: str) -> User:
        """Disable a user (admin): their tokens stop working and their triggers stop firing."""
        return self._http.post(f"users/{_seg(name)}/disable", User)

    def enable(self, name: str) -> User:
        """Enable a disabled user again (admin)."""
        return self._http.post(f"users/{_seg(name)}/enable", User)

    def set_role(self, name: str, role: Role | str) -> User:
        """Give a user another role (admin)."""
        try:
            value = Role(role).value
        except ValueError:
            roles = ", ".join(r.value for r in Role)
            raise InvalidInput(
                f"unknown role {str(role)[:40]!r}: expected one of {roles}"
            ) from None
        return self._http.post(f"users/{_seg(name)}/role", User, {"role": value})

    def tokens(self, user: str) -> list[TokenInfo]:
        return self._http.get(f"users/{_seg(user)}/tokens", list[TokenInfo])

    def create_token(self, user: str, *, expires_in_days: int | None = None) -> IssuedToken:
        """Another token for ``user`` (the secret is in the answer, once); with
        ``expires_in_days`` it stops working that many days from now."""
        body = None if expires_in_days is None else {"expires_in_days": expires_in_days}
        return self._http.post(f"users/{_seg(user)}/tokens", IssuedToken, body)

    def revoke_token(self, token_id: str) -> TokenInfo:
        return self._http.post(f"tokens/{_seg(token_id)}/revoke", TokenInfo)


class AuditClient:
    """``p.audit``: the audit log (admins see everyone's entries)."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def list(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        outcome: Literal["ok", "denied", "error"] | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        return self._http.get("audit", list[AuditEntry], actor=actor, action=action,
                              outcome=outcome, limit=limit, offset=offset)  # fmt: skip


class AlertsClient:
    """``p.alerts``: monitor alerts (drift, accuracy) and resolving them."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def list(
        self, *, include_resolved: bool = False, limit: int = 50, offset: int = 0
    ) -> list[Alert]:
        return self._http.get("alerts", list[Alert], include_resolved=include_resolved,
                              limit=limit, offset=offset)  # fmt: skip

    def resolve(self, alert_id: int) -> Alert:
        return self._http.post(f"alerts/{int(alert_id)}/resolve", Alert)


def entity_ref(entity: Any) -> str:
    """``KIND:ID`` of an entity: a string as it is (``"m@3"`` alone means a model version), a
    handle's ``entity_ref``, or a ``ModelVersion``."""
    if isinstance(entity, str):
        return entity if ":" in entity or "@" not in entity else f"model_version:{entity}"
    if isinstance(entity, ModelVersion):
        return f"model_version:{entity.model}@{entity.version}"
    ref = getattr(entity, "entity_ref", None)
    if isinstance(ref, str):
        return ref
    raise InvalidInput(f"cannot find the lineage of a {type(entity).__name__}; pass KIND:ID")


class LineageClient:
    """Upstream/downstream queries from any entity (``"commit:<id>"``, ``"model_version:m@3"``)."""

    def __init__(self, http: HttpClient) -> None:
        self._http = http

    def query(
        self, entity: Any, direction: Literal["up", "down"] = "up", depth: int | None = None
    ) -> list[LineageNode]:
        ref = entity_ref(entity)
        kind, sep, ident = ref.partition(":")
        if not sep or not kind or not ident:
            raise InvalidInput(f"entity {ref[:100]!r}: expected KIND:ID, e.g. model_version:m@3")
        return self._http.get_all(f"lineage/{_seg(kind)}/{_seg(ident)}", LineageNode,
                                  page_size=_LINEAGE_PAGE, direction=direction,
                                  depth=depth)  # fmt: skip

    def upstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self.query(entity, "up", depth)

    def downstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self.query(entity, "down", depth)
