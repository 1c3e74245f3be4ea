"""Scope-gated SP-API calls on a seller's behalf.

`spapi_request` refuses, before any network call, a path outside spconnect's map of SP-API
(`sellers.scopes.PATH_FAMILIES`: which permission it needs is unknown, so it fails closed), a
grantless one, and a path whose scope the seller's grant does not hold; when Amazon did not echo
scopes and the tenant recorded its app's roles, a path none of those roles opens. It sends the
access token to the seller's regional host; on 401/403
`Unauthorized` refreshes once (single flight) and retries; turns `invalid_grant` into
`ReauthorizationRequired` with a link; and when Amazon still refuses after a fresh token, records
that this scope is refused for this seller. 429s are retried a bounded number of times.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from django.db import transaction

from sellers import amazon
from sellers.amazon import SpapiResponse
from sellers.models import Event, Grant, Seller
from sellers.roles import role_labels
from sellers.scopes import ANY_AUTHORIZED_SELLER, CATALOG, PathFamily, path_family

from .status import seller_status_transition
from .tokens import (
    AppCredentialsRejected,
    ReauthorizationRequired,
    RefreshOutcome,
    TokenError,
    TokenUnavailable,
    grant_access_token,
    grant_refresh,
    reauthorization_required,
)

__all__ = [
    "AppCredentialsRejected",
    "PathNotMapped",
    "ReauthorizationRequired",
    "RoleNotRegistered",
    "ScopeNotGranted",
    "SpapiError",
    "TokenUnavailable",
    "grant_scope_refused",
    "spapi_request",
]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# An SP-API path: absolute, no scheme/host, no dot segments, no query (use params), no spaces.
_PATH_RE = re.compile(r"^/[A-Za-z0-9_\-./~%:,;@!$&'()*+=]*$")
MAX_THROTTLE_RETRIES = 3
MAX_THROTTLE_WAIT_SECONDS = 10.0
# Columns a call needs; the encrypted tokens stay unread when the in-process cache has the token.
_GRANT_FIELDS = (
    "id", "seller_id", "status", "version", "access_token_expires_at", "granted_scopes", "refused_scopes",
    "scopes_confirmed",
)


class SpapiError(Exception):
    """SP-API refused or failed the call. Never carries a token."""

    def __init__(self, message: str, *, status_code: int | None = None, response: SpapiResponse | None = None):
        self.status_code = status_code
        self.response = response
        super().__init__(message)


class ScopeNotGranted(SpapiError):
    """The seller's grant lacks the scope this path needs (or Amazon refused it at call time)."""

    def __init__(self, *, seller: Seller, scope: str, path: str, refused_by_amazon: bool = False):
        self.seller, self.scope, self.path, self.refused_by_amazon = seller, scope, path, refused_by_amazon
        label = CATALOG[scope].label if scope in CATALOG else scope
        if refused_by_amazon:
            message = (
                f"Amazon refused {scope} ({label}) for {seller.name} although the grant lists it; "
                f"recorded as refused. {path} needs it: ask the seller to re-authorize with that permission."
            )
        else:
            message = f"{seller.name} has not granted {scope} ({label}), which {path} needs. No request was sent."
        super().__init__(message, status_code=403 if refused_by_amazon else None)


class PathNotMapped(SpapiError):
    """The path is in no family of `sellers.scopes.PATH_FAMILIES` (or is grantless): refused unsent."""


class RoleNotRegistered(ScopeNotGranted):
    """Amazon did not echo scopes, and none of the app's recorded roles opens this path."""

    def __init__(self, *, seller: Seller, family: PathFamily, path: str):
        self.seller, self.path, self.refused_by_amazon = seller, path, False
        self.scope = family.scope if family.scope in CATALOG else ""
        self.roles = sorted(family.roles)
        SpapiError.__init__(
            self,
            f"{path} needs one of the SP-API roles {', '.join(role_labels(family.roles))}; {seller.tenant.name}'s app "
            "is registered for none of them (Admin → Tenants → App roles). No request was sent.",
        )


def spapi_path_family(path: str) -> PathFamily:
    """The mapped family of an SP-API path; unmapped and grantless paths are refused (fail closed)."""
    family = path_family(path)
    if family is None:
        raise PathNotMapped(
            f"{path[:100]} is not in spconnect's map of SP-API paths, so the permission it needs is unknown: "
            "refused rather than assumed open to any grant. Add its family to sellers/scopes.py."
        )
    if path.startswith("/tokens/"):
        raise PathNotMapped(
            "The Tokens API answers with restricted data tokens: spconnect obtains them itself when an "
            "operation needs one (sellers/services/tokens/restricted.py) and never hands them out here."
        )
    if family.grantless:
        raise PathNotMapped(
            f"{path[:100]} is a grantless operation ({family.api}): it takes the app's own token, never a seller's grant."
        )
    return family


def spapi_gate(*, seller: Seller, grant: Grant, family: PathFamily, path: str) -> None:
    """Refuse, before any call, what the grant does not give. Amazon's 403s narrow it later."""
    if grant.status != Grant.Status.ACTIVE:
        return  # the refresh below decides: reauthorization_required names the reason
    needed = None if family.scope == ANY_AUTHORIZED_SELLER else family.scope
    app_roles = set(seller.tenant.app_roles or []) if not grant.scopes_confirmed else set()
    if app_roles:
        # Real Amazon: the app's roles decide path by path (finer than the document's scopes).
        if not family.roles & app_roles:
            raise RoleNotRegistered(seller=seller, family=family, path=path)
        if needed is not None and needed in set(grant.refused_scopes or []):
            raise ScopeNotGranted(seller=seller, scope=needed, path=path)
        return
    if needed is not None and needed not in grant.effective_scopes:
        raise ScopeNotGranted(seller=seller, scope=needed, path=path)


def _validate(method: str, path: str) -> str:
    method = (method or "").upper()
    if method not in METHODS:
        raise SpapiError(f"Unsupported HTTP method {method or '(empty)'!r}; use one of {', '.join(METHODS)}.")
    # Checked decoded too: the HTTP client turns %2e back into "." before it sends the path.
    decoded = unquote(path or "") + "/"
    if not path or not _PATH_RE.match(path) or "//" in decoded or "/../" in decoded or "/./" in decoded:
        raise SpapiError(f"Invalid SP-API path {path[:100]!r}: it must start with / and carry no host, query or dot segments.")
    return method


def _is_unauthorized(response: SpapiResponse) -> bool:
    return response.status_code in (401, 403) and (
        response.status_code == 401 or "Unauthorized" in response.error_codes or not response.error_codes
    )


def _send_throttled(*, region: str, method: str, path: str, token: str, params, json) -> SpapiResponse:
    waited = 0.0
    for attempt in range(MAX_THROTTLE_RETRIES + 1):
        try:
            response = amazon.spapi_send(region=region, method=method, path=path, access_token=token, params=params, json=json)
        except amazon.SpapiTransportError as exc:
            raise SpapiError(str(exc)) from None
        if response.status_code != 429 or attempt == MAX_THROTTLE_RETRIES:
            return response
        delay = response.retry_after
        delay = min(2.0, 0.5 * 2**attempt) if delay is None else delay
        if waited + delay > MAX_THROTTLE_WAIT_SECONDS:
            return response
        time.sleep(delay)
        waited += delay
    return response  # pragma: no cover - the loop always returns


def grant_scope_refused(*, grant: Grant, scope: str, detail: str = "") -> bool:
    """Record that Amazon refused `scope` for this grant at call time. True when newly recorded."""
    seller = grant.seller
    with transaction.atomic():
        locked = (
            Grant.objects.select_for_update()
            .only("id", "refused_scopes", "granted_scopes", "status", "authorized_at", "failing_since")
            .get(pk=grant.pk)
        )
        refused = list(locked.refused_scopes or [])
        if scope in refused:
            return False
        refused.append(scope)
        Grant.objects.filter(pk=grant.pk).update(refused_scopes=refused)
        grant.refused_scopes = refused
        locked.refused_scopes = refused
        seller_status_transition(
            seller=seller,
            grant=locked,
            kind=Event.Kind.SCOPE_REFUSED,
            detail=f"Amazon refused {scope} with a fresh token" + (f": {detail}" if detail else "."),
            data={"scope": scope},
            actor="amazon",
            notice=lambda status: (
                f"Amazon refused {CATALOG[scope].label if scope in CATALOG else scope} for {seller.name}",
                f"Calls needing {scope} are refused by Amazon for {seller.name} although the seller's grant lists it. "
                f"It no longer counts as granted (status: {status}). Ask the seller to re-authorize with this permission.",
            ),
        )
    return True


def spapi_request(
    *, seller: Seller, method: str, path: str, params: Mapping[str, Any] | None = None, json: Any = None
) -> SpapiResponse:
    """Call SP-API for the seller. Returns the response for any status but 401/403/429-exhausted.

    Raises PathNotMapped and RoleNotRegistered (before any network call), ScopeNotGranted (before
    any network call, or after Amazon refused a fresh token), ReauthorizationRequired (`.link`),
    AppCredentialsRejected, TokenUnavailable, SpapiError.
    """
    method = _validate(method, path)
    family = spapi_path_family(path)
    needed = None if family.scope == ANY_AUTHORIZED_SELLER else family.scope
    grant = Grant.objects.filter(seller=seller).only(*_GRANT_FIELDS).first()
    if grant is None:
        raise reauthorization_required(seller=seller, reason="the seller has not authorized the app yet.")
    grant.seller = seller
    spapi_gate(seller=seller, grant=grant, family=family, path=path)

    token = grant_access_token(grant=grant)
    response = _send_throttled(region=seller.region, method=method, path=path, token=token, params=params, json=json)
    if not _is_unauthorized(response):
        return response

    # The token was refused: it may have expired early or been revoked. One refresh decides.
    result = grant_refresh(grant=grant, actor="system", stale_token=token)
    if result.outcome == RefreshOutcome.REVOKED:
        raise reauthorization_required(seller=seller, reason=result.detail)
    if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
        raise AppCredentialsRejected(f"LWA rejected the app credentials of {seller.tenant.name} ({result.detail}).")
    fresh = result.grant
    if fresh is None or not fresh.access_token or fresh.access_token == token:
        raise TokenUnavailable(f"Amazon refused the access token and no new one could be obtained: {result.detail}")
    response = _send_throttled(
        region=seller.region, method=method, path=path, token=fresh.access_token, params=params, json=json
    )
    if not _is_unauthorized(response):
        return response
    if needed is not None:
        details = ""
        if isinstance(response.body, dict) and isinstance(response.body.get("errors"), list) and response.body["errors"]:
            first = response.body["errors"][0]
            details = str(first.get("details") or first.get("message") or "")[:200] if isinstance(first, dict) else ""
        grant_scope_refused(grant=fresh, scope=needed, detail=details)
        raise ScopeNotGranted(seller=seller, scope=needed, path=path, refused_by_amazon=True)
    raise SpapiError(
        f"Amazon refused {method} {path} for {seller.name} with a fresh token.",
        status_code=response.status_code,
        response=response,
    )


# Callers catch one family for "could not call SP-API for this seller".
SPAPI_CALL_ERRORS = (SpapiError, TokenError)
