"""Authentication and authorization primitives: roles' permissions, ``Principal``, token
hashing, issuing and checking tokens (``authenticate``, ``AuthCache``), ``authorize`` and the
audit hook. Every service function, the gateway and the model replicas' ``TokenCache`` call
these; none has a copy. The permission table is drawn in ``dlplatform.access``'s docstring.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from dlplatform.access.failures import AuthFailures, FailureReport
from dlplatform.errors import Conflict, InvalidInput, NotFound, PermissionDenied, Unauthenticated
from dlplatform.metadata import Role, TokenInfo, User
from dlplatform.metadata.records import Run, WorkflowRun, utcnow

if TYPE_CHECKING:
    from dlplatform.metadata import MetadataStore  # loads DuckDB; Principal's users need none


class Permission(str, Enum):
    DATASET_VIEW = "dataset.view"
    DATASET_READ = "dataset.read"
    DATASET_WRITE = "dataset.write"
    DATASET_EXPORT = "dataset.export"
    TRAIN_VIEW = "train.view"
    TRAIN_SUBMIT = "train.submit"
    CODE_RUN = "code.run"  # run your own code in a job; the holders are Settings.code_run_roles
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
        _VIEW
        | {P.DATASET_READ, P.DATASET_WRITE, P.DATASET_EXPORT, P.FEEDBACK_WRITE, P.WORKFLOW_RUN}
    ),
    Role.DATA_SCIENTIST: frozenset(
        _VIEW
        | {P.DATASET_READ, P.DATASET_EXPORT, P.TRAIN_SUBMIT, P.CODE_RUN, P.MODEL_PROMOTE}
        | {P.DEPLOY_MANAGE, P.PREDICT, P.FEEDBACK_WRITE, P.WORKFLOW_RUN}
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

RESERVED_USER_NAMES = frozenset({SYSTEM.name, "anonymous"})
"""Names of the platform's own principals, which no user may take: ``system`` (the platform:
runs it owns act as admin) and ``anonymous`` (the audit actor of an unusable token and of an
unauthenticated prediction)."""


def run_owner(store: MetadataStore, name: str) -> Principal:
    """The principal a run owned by ``name`` acts as (a job's driver, a workflow step): ``SYSTEM``
    for the platform's own runs, else that user, never anyone in its stead.

    Raises:
        PermissionDenied: the owner no longer exists or is disabled (the run must fail).
    """
    if name == SYSTEM.name:
        return SYSTEM
    try:
        user = store.get_user(name)
    except NotFound:
        raise PermissionDenied(
            f"the run's owner {name!r} no longer exists: the run does not act as anyone else"
        ) from None
    if user.disabled:
        raise PermissionDenied(f"the run's owner {name!r} is disabled: the run may not act")
    return Principal.of(user)


def hash_token(token: str) -> str:
    """Tokens are 256-bit random secrets, so a plain SHA-256 is a safe stored form."""
    return hashlib.sha256(token.encode()).hexdigest()


def _new_secret() -> tuple[str, str]:
    token_id = secrets.token_hex(6)
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def issue_token(
    store: MetadataStore, user: str, *, expires_at: datetime | None = None
) -> tuple[str, TokenInfo]:
    """Create a token for ``user`` (refused from ``expires_at`` on, when given); the secret is
    returned once and stored only as a hash."""
    token_id, secret = _new_secret()
    info = store.add_token(token_id, user, hash_token(secret), secret[:12], expires_at=expires_at)
    return secret, info


def issue_run_token(
    store: MetadataStore, user: str, run_id: str, ttl_s: float
) -> tuple[str, TokenInfo]:
    """Create the token that the code of run ``run_id`` acts with (its job's ``DLP_TOKEN``).

    It is ``user``'s, the run's owner, with that user's role: never an admin's or the platform's.
    ``authenticate`` refuses it once the run is final or ``ttl_s`` seconds from now, whichever
    comes first. The secret is returned once; the issue is audited.

    Raises:
        NotFound: the run or the user does not exist.
        InvalidInput: ``user`` does not own the run, or ``ttl_s`` is not positive.
        Conflict: the run has already ended.
    """
    if not ttl_s > 0:
        raise InvalidInput(f"a run token's ttl_s must be positive, got {ttl_s}")
    run = store.get_token_run(run_id)
    if run.owner != user:
        raise InvalidInput(f"run {run_id} belongs to {run.owner}, not {user}: no token for it")
    if run.status.is_final:
        raise Conflict(f"run {run_id} already ended ({run.status.value}); no token for it")
    token_id, secret = _new_secret()
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    info = store.add_token(
        token_id, user, hash_token(secret), secret[:12], run_id=run_id, expires_at=expires_at
    )
    detail = f"token={info.id} run={run_id} expires_at={expires_at.isoformat(timespec='seconds')}"
    audit(store, SYSTEM, "tokens.create", f"user:{user}", detail)
    return secret, info


def revoke_run_tokens(
    store: MetadataStore, run_id: str, reason: str, *, by: Principal = SYSTEM
) -> list[TokenInfo]:
    """Revoke the tokens issued for ``run_id`` (its job ended or was cancelled); each revocation
    is audited as ``by``'s with ``reason``. Harmless when there are none or they are revoked."""
    revoked = store.revoke_run_tokens(run_id)
    for info in revoked:
        detail = f"user={info.user} run={run_id}: {reason}"
        audit(store, by, "tokens.revoke", f"token:{info.id}", detail)
    return revoked


def token_refusal(info: TokenInfo, run: Run | WorkflowRun | None, now: datetime) -> str | None:
    """Why the unrevoked token ``info`` may not be used at ``now``, or None when it may.

    ``run`` is the run a run token was issued for (None: none, or it no longer exists). The one
    rule for expiring and run tokens, applied by ``authenticate`` and the model endpoints.
    """
    if info.expires_at is not None and now >= info.expires_at:
        return "token expired"
    if info.run_id is None:
        return None
    if run is None or run.id != info.run_id:
        return f"token expired: its run {info.run_id} does not exist"
    if run.status.is_final:
        return f"token expired: its run ended ({run.status.value})"
    if run.owner != info.user:  # cannot be issued so; refuse rather than trust a bad row
        return f"token of {info.user} does not belong to run {run.id}"
    return None


TOKEN_TOUCH_INTERVAL_S = 60.0
"""A token's ``last_used_at`` is written at most this often: one write a minute, not one a
request (the gateway looks a token up at most every ``auth_cache_ttl_s`` anyway)."""


def authenticate(store: MetadataStore, token: str | None) -> Principal:
    """The principal owning ``token``. A presented but unusable token is audited as a denial
    (with the token's id when it has our shape, never the secret). The token's ``last_used_at``
    is kept, written at most every ``TOKEN_TOUCH_INTERVAL_S``.

    Raises:
        Unauthenticated: no token, an unknown, revoked or expired token, a run token whose run
            has ended, or a disabled user.
    """
    return authenticate_token(store, token)[0]


def authenticate_token(store: MetadataStore, token: str | None) -> tuple[Principal, TokenInfo]:
    """``authenticate``, returning the token's record too: for a process that remembers accepted
    tokens (a model replica), which must not remember one past its ``expires_at``.

    Raises:
        Unauthenticated: as ``authenticate``.
    """
    try:
        return _authenticate(store, token)
    except Unauthenticated as exc:
        if token:
            _audit_bad_token(store, token, exc.message)
        raise


def _authenticate(store: MetadataStore, token: str | None) -> tuple[Principal, TokenInfo]:
    """``authenticate`` without auditing a refusal: the caller decides how to record it."""
    if not token:
        raise Unauthenticated("missing bearer token")
    try:
        user, info = store.user_for_token_hash(hash_token(token))
    except NotFound:
        raise Unauthenticated("invalid or revoked token") from None
    now = utcnow()
    if info.run_id is not None or info.expires_at is not None:
        refusal = token_refusal(info, _run_or_none(store, info.run_id), now)
        if refusal is not None:
            raise Unauthenticated(refusal)
    if user.disabled:
        raise Unauthenticated("user is disabled")
    if info.last_used_at is None or (now - info.last_used_at).total_seconds() >= (
        TOKEN_TOUCH_INTERVAL_S
    ):
        store.touch_token(info.id)
    return Principal.of(user), info


class AuthCache:
    """``authenticate`` for a process that serves many requests (the gateway), remembering the
    principal of a recently accepted token for ``ttl_s`` seconds, and limiting failures.

    Why: each gateway request otherwise begins with a metadata-actor call for the token (about
    a millisecond, a third of a simple GET). Plain and expiring tokens are remembered (an
    expiring one never past its ``expires_at``); a run token's validity depends on its run's
    state and is checked on every request; refusals are never remembered. A token revoked, or a
    user disabled or given another role, elsewhere is seen here at most ``ttl_s`` later;
    ``clear()`` (the routes that do so call it) makes the change through this process take
    effect at once.

    Failed authentications are tracked per source (``AuthFailures``): the first of a window is
    audited, later ones go into one aggregated row, and a source that fails too often is
    answered 429 for a while, before its token is looked up (a remembered token still passes).
    """

    def __init__(
        self, ttl_s: float, max_entries: int = 10_000, *, failures: AuthFailures | None = None
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}
        self.failures = failures if failures is not None else AuthFailures()

    def authenticate(
        self, store: MetadataStore, token: str | None, source: str | None = None
    ) -> Principal:
        """Like ``authenticate``, for a request from ``source`` (the client's address; None:
        not tracked, every refusal is audited on its own).

        Raises:
            Unauthenticated: as ``authenticate``.
            TooManyRequests: ``source`` failed to authenticate too often lately.
        """
        if not token:
            raise Unauthenticated("missing bearer token")
        key = hash_token(token)
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        self._write_reports(store)
        if source is not None:
            self.failures.check(source)
        try:
            principal, info = _authenticate(store, token)
        except Unauthenticated as exc:
            if source is None or self.failures.failed(source, exc.message):
                _audit_bad_token(store, token, exc.message, source)
            self._write_reports(store)
            raise
        keep_s = self._ttl_s
        if info.expires_at is not None:
            keep_s = min(keep_s, (info.expires_at - utcnow()).total_seconds())
        if info.run_id is None and keep_s > 0:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[key] = (now + keep_s, principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()

    def _write_reports(self, store: MetadataStore) -> None:
        for report in self.failures.take_reports():
            _audit_failure_report(store, report)


def _run_or_none(store: MetadataStore, run_id: str | None) -> Run | WorkflowRun | None:
    if run_id is None:
        return None
    try:
        return store.get_token_run(run_id)
    except NotFound:
        return None


_TOKEN_SHAPE = re.compile(r"^dlp_([0-9a-f]{12})_")


def _audit_bad_token(
    store: MetadataStore, token: str, reason: str, source: str | None = None
) -> None:
    match = _TOKEN_SHAPE.match(token)
    target = f"token:{match.group(1)}" if match else "token:malformed"
    detail = reason if source is None else f"{reason} (from {source})"
    store.append_audit("anonymous", "authenticate", target, "denied", detail)


def _audit_failure_report(store: MetadataStore, report: FailureReport) -> None:
    target = f"source:{report.source}"
    store.append_audit("anonymous", "authenticate", target, "denied", report.detail)


def authorize(
    store: MetadataStore,
    principal: Principal,
    permission: Permission,
    target: str,
    *,
    groups: tuple[str, ...] = (),
    holders: tuple[Role, ...] | None = None,
) -> None:
    """Allow or deny ``principal`` the ``permission`` on ``target``; denials are audited.

    ``holders`` are the roles holding a configurable permission (``code.run``:
    ``Settings.code_run_roles``), in place of the table's; admins hold every permission.

    ``groups`` are the target's access groups (restricted datasets): when set, a non-admin must
    belong to at least one of them, else the target is hidden: the answer is the one for a
    target that does not exist (``NotFound``, "dataset 'x' does not exist" for
    ``target="dataset:x"``), whatever the permission, so neither the status, nor the message,
    nor a role check answered first tells that it exists or names its groups.

    Raises:
        NotFound: the caller is in none of the groups.
        PermissionDenied: the role lacks the permission.
    """
    if groups and not is_member(principal, groups):
        reason = f"{target} is restricted to groups {', '.join(groups)}"
        store.append_audit(principal.name, permission.value, target, "denied", reason)
        kind, _, ident = target.partition(":")
        raise NotFound(f"{kind} {ident!r} does not exist")
    if holders is None:
        held = principal.can(permission)
    else:
        held = principal.is_admin or principal.role in holders
    if not held:
        reason = f"role {principal.role.value} lacks permission {permission.value}"
        store.append_audit(principal.name, permission.value, target, "denied", reason)
        raise PermissionDenied(f"{principal.name} may not {permission.value} on {target}: {reason}")


def is_member(principal: Principal, groups: tuple[str, ...] | list[str]) -> bool:
    """Whether ``principal`` may see a target restricted to ``groups`` (none: unrestricted;
    admins see everything). The one rule for hiding datasets, used by ``authorize``, dataset
    listings and lineage."""
    return not groups or principal.is_admin or bool(set(groups) & set(principal.groups))


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
