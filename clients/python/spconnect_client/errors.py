"""Exceptions: one class per error `code` of the API, all under `SpconnectError`.

Every error answer of the API is `{"error": {"code": "...", "message": "...", ...}}`; the class is
chosen by `code` (stable), falling back to the HTTP status when the code is one this client does
not know yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any


class SpconnectError(Exception):
    """Base of every error this client raises."""

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        field: str | None = None,
        reauthorization_url: str | None = None,
        retry_after: float | None = None,
        body: Mapping[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.status = status
        self.field = field
        self.reauthorization_url = reauthorization_url
        self.retry_after = retry_after
        self.body = dict(body or {})

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status!r}, message={self.message!r})"


class TransportError(SpconnectError):
    """spconnect could not be reached, or answered something that is not the API's JSON."""

    code = "transport_error"


class ApiError(SpconnectError):
    """An error answer of the API; subclasses name each known `code`."""


class InvalidRequest(ApiError):
    """400: a parameter or body field is wrong; `field` names it."""

    code = "invalid_request"


class Unauthorized(ApiError):
    """401: the API key is missing, unknown, revoked or expired."""

    code = "unauthorized"


class PermissionDenied(ApiError):
    """403: the API key lacks the permission this call needs."""

    code = "permission_denied"


class NotFound(ApiError):
    """404: no such connection for this key's tenant."""

    code = "not_found"


class ReauthorizationRequired(ApiError):
    """409: the seller must authorize again (pending, revoked, expired); send them
    `reauthorization_url`."""

    code = "reauthorization_required"


class IdempotencyConflict(ApiError):
    """409: this Idempotency-Key was used with another request body within 24 hours."""

    code = "idempotency_conflict"


class RateLimited(ApiError):
    """429: too many requests for this key; retry after `retry_after` seconds."""

    code = "rate_limited"


class AppCredentialsRejected(ApiError):
    """502: Amazon rejected the agency app's own credentials (its LWA client secret), not the
    seller's authorization: the agency must fix the app registration."""

    code = "app_credentials_rejected"


class TokenUnavailable(ApiError):
    """503: Amazon's token service is failing for now; retry after `retry_after` seconds."""

    code = "token_unavailable"


class PathNotAllowed(PermissionDenied):
    """403 (proxy, restricted data tokens): the key's proxy paths do not include this SP-API
    path, or the path is one spconnect never proxies. Nothing was sent to Amazon."""

    code = "path_not_allowed"


class ScopeNotGranted(PermissionDenied):
    """403 (proxy): the seller did not grant the scope this path needs (or Amazon refused it with
    a fresh token). Send the seller a re-authorization link to add it."""

    code = "scope_not_granted"


class RdtRefused(ApiError):
    """400/403/502: Amazon's Tokens API refused the restricted data token (`message` says why)."""

    code = "rdt_refused"


class GrantlessRefused(ApiError):
    """502: Login with Amazon refused the app's grantless token for that scope."""

    code = "grantless_refused"


class SpapiUnreachable(ApiError):
    """502 (proxy): SP-API did not answer. A write may have been applied: check before repeating it."""

    code = "spapi_unreachable"


class GrantlessNotAvailable(SpconnectError, NotImplementedError):
    """Kept for programs written against client 0.1.0, whose `get_grantless_auth` raised it;
    grantless tokens now come from `POST /api/v1/grantless-token` and nothing raises it."""

    code = "grantless_not_available"


ERRORS_BY_CODE: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (InvalidRequest, Unauthorized, PermissionDenied, NotFound, ReauthorizationRequired, IdempotencyConflict,
                RateLimited, AppCredentialsRejected, TokenUnavailable, PathNotAllowed, ScopeNotGranted, RdtRefused,
                GrantlessRefused, SpapiUnreachable)
}
# For codes this client does not know yet: statuses that mean one thing whatever the code (409
# does not: a seller to re-authorize, or a reused Idempotency-Key).
ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    400: InvalidRequest, 401: Unauthorized, 403: PermissionDenied, 404: NotFound, 429: RateLimited,
}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def error_from_response(status: int, body: Any, headers: Mapping[str, str]) -> ApiError:
    """The exception for an error answer (status ≥ 400) of the API."""
    error = body.get("error") if isinstance(body, dict) else None
    retry_after = parse_retry_after(headers.get("Retry-After"))
    if not isinstance(error, dict):
        # Not the API's error object: a proxy in front of spconnect, or a base_url that points
        # somewhere else. Its status alone does not say which of the API's errors it would be.
        return ApiError(f"spconnect answered HTTP {status} without an error object (is base_url right?)",
                        code=f"http_{status}", status=status, retry_after=retry_after)
    code = _text(error, "code")
    message = _text(error, "message")
    # An unknown code keeps its status's class, so `except NotFound` still catches a newer 404.
    cls = ERRORS_BY_CODE.get(code or "") or ERRORS_BY_STATUS.get(status) or ApiError
    if retry_after is None and isinstance(error.get("retry_after"), (int, float)):
        retry_after = float(error["retry_after"])
    return cls(
        message or f"spconnect answered HTTP {status}",
        code=code or (cls.code if cls is not ApiError else f"http_{status}"),
        status=status,
        field=_text(error, "field"),
        reauthorization_url=_text(error, "reauthorization_url"),
        retry_after=retry_after,
        body=body if isinstance(body, dict) else None,
    )


def _text(error: Mapping[str, Any], name: str) -> str | None:
    value = error.get(name)
    return value if isinstance(value, str) else None
