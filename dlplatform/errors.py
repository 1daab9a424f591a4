"""The platform's exception tree. Every layer raises these; the gateway maps them to HTTP once.

    DLPlatformError                 500 internal
    ├── InvalidInput                422 invalid_input     (bad name, bad spec, bad file)
    │   └── SchemaMismatch          422 schema_mismatch   (a push whose columns/types differ)
    ├── BadRequest                  400 bad_request       (well-formed but not acceptable, e.g. foreign Host)
    ├── Unauthenticated             401 unauthenticated   (no, wrong or revoked token)
    ├── PermissionDenied            403 permission_denied (the role lacks the permission)
    ├── NotFound                    404 not_found         (also a dataset hidden from the caller by its groups)
    ├── AlreadyExists               409 already_exists
    ├── Conflict                    409 conflict          (stale parent, wrong state, e.g. cancel of a finished job)
    ├── TooLarge                    413 too_large
    ├── TooManyRequests             429 too_many_requests (a source that failed to authenticate too often)
    ├── IntegrityError              500 integrity_error   (a stored artifact's hash does not match)
    └── BackendUnavailable          503 unavailable       (Ray, the metadata actor or Serve cannot be reached)

The SDK maps ``code`` back to the same class (``error_for_code``); the CLI prints the message and
exits 1.
"""

from __future__ import annotations

from typing import ClassVar


class DLPlatformError(Exception):
    """Base of every error the platform raises on purpose."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[DLPlatformError], tuple[str]]:
        # Keep the class across Ray and process boundaries.
        return (type(self), (self.message,))


class InvalidInput(DLPlatformError):
    http_status, code = 422, "invalid_input"


class SchemaMismatch(InvalidInput):
    http_status, code = 422, "schema_mismatch"


class BadRequest(DLPlatformError):
    http_status, code = 400, "bad_request"


class Unauthenticated(DLPlatformError):
    http_status, code = 401, "unauthenticated"


class PermissionDenied(DLPlatformError):
    http_status, code = 403, "permission_denied"


class NotFound(DLPlatformError):
    http_status, code = 404, "not_found"


class AlreadyExists(DLPlatformError):
    http_status, code = 409, "already_exists"


class Conflict(DLPlatformError):
    http_status, code = 409, "conflict"


class TooLarge(DLPlatformError):
    http_status, code = 413, "too_large"


class TooManyRequests(DLPlatformError):
    """Refused before any work: the client must wait ``retry_after_s`` seconds."""

    http_status, code = 429, "too_many_requests"

    def __init__(self, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IntegrityError(DLPlatformError):
    http_status, code = 500, "integrity_error"


class BackendUnavailable(DLPlatformError):
    http_status, code = 503, "unavailable"


def _all_subclasses(cls: type[DLPlatformError]) -> list[type[DLPlatformError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


def error_for_code(code: str, message: str) -> DLPlatformError:
    """Rebuild the typed error from a gateway response's ``error`` code."""
    for cls in _all_subclasses(DLPlatformError):
        if cls.code == code:
            return cls(message)
    return DLPlatformError(message)
