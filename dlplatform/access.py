"""Who may do what: roles, the permission table, principals, tokens and the audit hook.

Checks happen here, in the service layer, so the SDK, the CLI and the HTTP gateway obey the same
rules. Every check that fails is written to the audit log before ``PermissionDenied`` is raised.

Permission table (also in the README):

=================  =====  =============  ==============  ==========  ===  ======
permission         admin  data-engineer  data-scientist  researcher  app  viewer
=================  =====  =============  ==============  ==========  ===  ======
dataset.view         x          x              x             x              x
dataset.read         x          x              x             x
dataset.write        x          x
dataset.export       x          x              x
train.view           x          x              x             x              x
train.submit         x                         x             x
model.view           x          x              x             x        x     x
model.promote        x                         x
deploy.manage        x                         x
predict              x                         x             x        x
feedback.write       x          x              x                      x
workflow.view        x          x              x             x              x
workflow.run         x          x              x
lineage.view         x          x              x             x              x
users.manage         x
audit.view           x
=================  =====  =============  ==============  ==========  ===  ======
"""

from __future__ import annotations

import hashlib
import secrets
from enum import Enum

from pydantic import BaseModel

from dlplatform.errors import NotFound, PermissionDenied, Unauthenticated
from dlplatform.metadata import MetadataStore, Role, TokenInfo, User
from dlplatform.metadata.records import utcnow


class Permission(str, Enum):
    DATASET_VIEW = "dataset.view"
    DATASET_READ = "dataset.read"
    DATASET_WRITE = "dataset.write"
    DATASET_EXPORT = "dataset.export"
    TRAIN_VIEW = "train.view"
    TRAIN_SUBMIT = "train.submit"
    MODEL_VIEW = "model.view"
    MODEL_PROMOTE = "model.promote"
    DEPLOY_MANAGE = "deploy.manage"
    PREDICT = "predict"
    FEEDBACK_WRITE = "feedback.write"
    WORKFLOW_VIEW = "workflow.view"
    WORKFLOW_RUN = "workflow.run"
    LINEAGE_VIEW = "lineage.view"
    USERS_MANAGE = "users.manage"
    AUDIT_VIEW = "audit.view"


P = Permission
_VIEW = {P.DATASET_VIEW, P.TRAIN_VIEW, P.MODEL_VIEW, P.WORKFLOW_VIEW, P.LINEAGE_VIEW}

PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.DATA_ENGINEER: frozenset(
        _VIEW | {P.DATASET_READ, P.DATASET_WRITE, P.DATASET_EXPORT, P.FEEDBACK_WRITE, P.WORKFLOW_RUN}
    ),
    Role.DATA_SCIENTIST: frozenset(
        _VIEW
        | {P.DATASET_READ, P.DATASET_EXPORT, P.TRAIN_SUBMIT, P.MODEL_PROMOTE, P.DEPLOY_MANAGE,
           P.PREDICT, P.FEEDBACK_WRITE, P.WORKFLOW_RUN}  # fmt: skip
    ),
    Role.RESEARCHER: frozenset(_VIEW | {P.DATASET_READ, P.TRAIN_SUBMIT, P.PREDICT}),
    Role.APP: frozenset({P.MODEL_VIEW, P.PREDICT, P.FEEDBACK_WRITE}),
    Role.VIEWER: frozenset(_VIEW),
}

TOKEN_PREFIX = "dlp_"


class Principal(BaseModel, frozen=True, extra="forbid"):
    """The authenticated caller of a service function."""

    name: str
    role: Role
    groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, user: User) -> Principal:
        return cls(name=user.name, role=user.role, groups=user.groups)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can(self, permission: Permission) -> bool:
        return permission in PERMISSIONS[self.role]


SYSTEM = Principal(name="system", role=Role.ADMIN)
"""The platform itself (schedulers, workflow steps acting on a user's behalf record the user)."""


def hash_token(token: str) -> str:
    """Tokens are 256-bit random secrets, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(store: MetadataStore, user: str) -> tuple[str, TokenInfo]:
    """Create a token for ``user``; the secret is returned once and stored only as a hash."""
    token_id = secrets.token_hex(6)
    secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    info = store.add_token(token_id, user, hash_token(secret), secret[:12])
    return secret, info


def authenticate(store: MetadataStore, token: str | None) -> Principal:
    """The principal owning ``token``.

    Raises:
        Unauthenticated: no token, an unknown or revoked token, or a disabled user.
    """
    if not token:
        raise Unauthenticated("missing bearer token")
    try:
        user, info = store.user_for_token_hash(hash_token(token))
    except NotFound:
        raise Unauthenticated("invalid or revoked token") from None
    if user.disabled:
        raise Unauthenticated("user is disabled")
    return Principal.of(user)


def authorize(
    store: MetadataStore,
    principal: Principal,
    permission: Permission,
    target: str,
    *,
    groups: tuple[str, ...] = (),
) -> None:
    """Allow or deny ``principal`` the ``permission`` on ``target``; denials are audited.

    ``groups`` are the target's access groups (restricted datasets): when set, a non-admin must
    belong to at least one of them.

    Raises:
        PermissionDenied: the role lacks the permission, or the caller is in none of the groups.
    """
    reason = None
    if not principal.can(permission):
        reason = f"role {principal.role.value} lacks permission {permission.value}"
    elif groups and not principal.is_admin and not set(groups) & set(principal.groups):
        reason = f"{target} is restricted to groups {', '.join(groups)}"
    if reason is not None:
        store.append_audit(principal.name, permission.value, target, "denied", reason)
        raise PermissionDenied(f"{principal.name} may not {permission.value} on {target}: {reason}")


def audit(
    store: MetadataStore, principal: Principal, action: str, target: str, detail: str = ""
) -> None:
    """Record a successful mutating call or data read."""
    store.append_audit(principal.name, action, target, "ok", detail)


def bootstrap_admin(store: MetadataStore, name: str = "admin") -> str | None:
    """Create the admin user and return its first token, or None when it already exists."""
    try:
        store.get_user(name)
        return None
    except NotFound:
        store.create_user(User(name=name, role=Role.ADMIN, created_at=utcnow()))
    secret, _ = issue_token(store, name)
    store.append_audit("system", "users.create", f"user:{name}", "ok", "bootstrap admin")
    return secret
