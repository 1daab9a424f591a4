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

    def tokens(self, user: str) -> list[TokenInfo]:
        return self._http.get(f"users/{_seg(user)}/tokens", list[TokenInfo])

    def create_token(self, user: str) -> IssuedToken:
        return self._http.post(f"users/{_seg(user)}/tokens", IssuedToken)

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
        return self._http.get(f"lineage/{_seg(kind)}/{_seg(ident)}", list[LineageNode],
                              direction=direction, depth=depth)  # fmt: skip

    def upstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self.query(entity, "up", depth)

    def downstream(self, entity: Any, depth: int | None = None) -> list[LineageNode]:
        return self.query(entity, "down", depth)
