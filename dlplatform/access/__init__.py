"""Who may do what: roles, the permission table, principals, tokens, users and the audit log.

Checks happen here, in the service layer, so the SDK, the CLI and the HTTP gateway obey the same
rules. Every check that fails is written to the audit log before ``PermissionDenied`` is raised.

Modules: ``auth`` (the primitives: ``Permission``, ``Principal``, ``hash_token``,
``authenticate``, ``AuthCache``, ``authorize``, ``audit``, issuing tokens), ``failures`` (failed
authentications per source: what to audit, when to refuse), ``users`` (service functions for
users and their tokens) and ``audit_log`` (reading the audit log, exporting the metadata).
May import: ``errors``, ``metadata``; never a component.

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
code.run             x                         x
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

from typing import TYPE_CHECKING

from dlplatform._lazy import lazy_exports

if TYPE_CHECKING:
    from dlplatform.access.audit_log import (
        MAX_AUDIT_PAGE,
        METADATA_ARCHIVE,
        export_metadata,
        export_metadata_archive,
        read_audit,
    )
    from dlplatform.access.auth import (
        PERMISSIONS,
        RESERVED_USER_NAMES,
        SYSTEM,
        TOKEN_PREFIX,
        TOKEN_TOUCH_INTERVAL_S,
        AuthCache,
        Permission,
        Principal,
        audit,
        authenticate,
        authenticate_token,
        authorize,
        bootstrap_admin,
        hash_token,
        is_member,
        issue_run_token,
        issue_token,
        revoke_run_tokens,
        run_owner,
        token_refusal,
    )
    from dlplatform.access.failures import AuthFailures
    from dlplatform.access.users import (
        MAX_TOKEN_DAYS,
        CreatedUser,
        GroupName,
        IssuedToken,
        RoleChange,
        TokenRequest,
        UserSpec,
        create_token,
        create_user,
        disable_user,
        enable_user,
        list_tokens,
        list_users,
        revoke_token,
        set_user_role,
    )

# Loaded on first use (see dlplatform._lazy), like every package's names.
_EXPORTS = {
    "AuthCache": "dlplatform.access.auth",
    "AuthFailures": "dlplatform.access.failures",
    "CreatedUser": "dlplatform.access.users",
    "GroupName": "dlplatform.access.users",
    "IssuedToken": "dlplatform.access.users",
    "MAX_AUDIT_PAGE": "dlplatform.access.audit_log",
    "MAX_TOKEN_DAYS": "dlplatform.access.users",
    "METADATA_ARCHIVE": "dlplatform.access.audit_log",
    "PERMISSIONS": "dlplatform.access.auth",
    "Permission": "dlplatform.access.auth",
    "Principal": "dlplatform.access.auth",
    "RESERVED_USER_NAMES": "dlplatform.access.auth",
    "RoleChange": "dlplatform.access.users",
    "SYSTEM": "dlplatform.access.auth",
    "TOKEN_PREFIX": "dlplatform.access.auth",
    "TOKEN_TOUCH_INTERVAL_S": "dlplatform.access.auth",
    "TokenRequest": "dlplatform.access.users",
    "UserSpec": "dlplatform.access.users",
    "audit": "dlplatform.access.auth",
    "authenticate": "dlplatform.access.auth",
    "authenticate_token": "dlplatform.access.auth",
    "authorize": "dlplatform.access.auth",
    "bootstrap_admin": "dlplatform.access.auth",
    "create_token": "dlplatform.access.users",
    "create_user": "dlplatform.access.users",
    "disable_user": "dlplatform.access.users",
    "enable_user": "dlplatform.access.users",
    "export_metadata": "dlplatform.access.audit_log",
    "export_metadata_archive": "dlplatform.access.audit_log",
    "hash_token": "dlplatform.access.auth",
    "is_member": "dlplatform.access.auth",
    "issue_run_token": "dlplatform.access.auth",
    "issue_token": "dlplatform.access.auth",
    "list_tokens": "dlplatform.access.users",
    "list_users": "dlplatform.access.users",
    "read_audit": "dlplatform.access.audit_log",
    "revoke_run_tokens": "dlplatform.access.auth",
    "revoke_token": "dlplatform.access.users",
    "run_owner": "dlplatform.access.auth",
    "set_user_role": "dlplatform.access.users",
    "token_refusal": "dlplatform.access.auth",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "MAX_AUDIT_PAGE",
    "MAX_TOKEN_DAYS",
    "METADATA_ARCHIVE",
    "PERMISSIONS",
    "RESERVED_USER_NAMES",
    "SYSTEM",
    "TOKEN_PREFIX",
    "TOKEN_TOUCH_INTERVAL_S",
    "AuthCache",
    "AuthFailures",
    "CreatedUser",
    "GroupName",
    "IssuedToken",
    "Permission",
    "Principal",
    "RoleChange",
    "TokenRequest",
    "UserSpec",
    "audit",
    "authenticate",
    "authenticate_token",
    "authorize",
    "bootstrap_admin",
    "create_token",
    "create_user",
    "disable_user",
    "enable_user",
    "export_metadata",
    "export_metadata_archive",
    "hash_token",
    "is_member",
    "issue_run_token",
    "issue_token",
    "list_tokens",
    "list_users",
    "read_audit",
    "revoke_run_tokens",
    "revoke_token",
    "run_owner",
    "set_user_role",
    "token_refusal",
]
