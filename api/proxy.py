"""The SP-API proxy: a program calls SP-API as a connection's seller without ever holding the
seller's token, and only on the paths its key allows.

`connection_proxy` checks everything it can before any network call (path, the key's path
prefixes, the connection, its authorization, the scope the path needs), then sends the request
to the connection's regional SP-API host through `sellers.amazon.spapi_forward`. The host comes
from the settings only: no header, query or path segment can point the token elsewhere.

What goes to Amazon: method, path, raw query string, body and Content-Type, with the access
token (or a restricted data token, for `X-Spconnect-Data-Elements`). Nothing else of the
caller's request is passed on (not its Authorization, cookies, hop-by-hop or length headers).
What comes back: Amazon's status and body, its Content-Type, `x-amzn-RequestId`,
`x-amzn-RateLimit-Limit` and `Retry-After`; the length is set by us for the body as read.

GET is retried on 429 and 5xx (bounded, honouring Retry-After); anything else is sent once,
since a write Amazon may have applied must never be applied twice.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from urllib.parse import quote
from uuid import UUID

from django.http import HttpResponse
from django.utils import timezone

from sellers import amazon
from sellers.models import Grant, Seller
from sellers.services.spapi import PathNotMapped, ScopeNotGranted, spapi_gate, spapi_path_family
from sellers.services.tokens import (
    AppCredentialsRejected,
    RefreshOutcome,
    TokenUnavailable,
    grant_access_token,
    grant_refresh,
    reauthorization_required,
)
from sellers.services.tokens.restricted import (
    DATA_ELEMENTS,
    RestrictedResource,
    answers_only_rdt,
    seller_restricted_data_token,
    takes_data_elements,
)

from .auth import actor_for_key
from .connections import PROXY_PATH_GRANT_FIELDS, connection_for_token, grant_of
from .errors import ApiError
from .models import ApiKey, Permission

DATA_ELEMENTS_HEADER = "X-Spconnect-Data-Elements"
# Amazon's answer headers a caller needs; everything else (hop-by-hop, lengths, encodings, its
# cookies) stays behind. The body is handed on decoded, so no Content-Encoding either.
RESPONSE_HEADERS = ("Content-Type", "x-amzn-RequestId", "x-amzn-RateLimit-Limit", "Retry-After")
# Paths the proxy never forwards: the Tokens API hands out restricted data tokens, which have
# their own permission and endpoint (and X-Spconnect-Data-Elements).
BLOCKED_PREFIXES = ("/tokens/",)
# SP-API answers are JSON pages (reports and feeds travel through S3 URLs, not SP-API): one
# larger than this is refused rather than held in memory.
MAX_RESPONSE_BYTES = 20 * 1024 * 1024
MAX_GET_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 5.0  # one Retry-After longer than this is not waited for
MAX_TOTAL_WAIT_SECONDS = 10.0
# An SP-API path: absolute, no scheme or host, no dot segments, no empty segments, no spaces.
_PATH_RE = re.compile(r"^/[A-Za-z0-9_\-./~%:,;@!$&'()*+=]*$")
_SAFE_IN_PATH = "/:@!$&'()*+,;=-._~"


@dataclass(frozen=True)
class ProxyCall:
    """What the caller asked to send. `path` is decoded (as Django routed it)."""

    method: str
    path: str
    query: str
    body: bytes
    content_type: str
    data_elements: tuple[str, ...] = ()


def proxy_path(raw: str) -> str:
    """The SP-API path of a proxied request, or ApiError 400 `invalid_path`."""
    path = "/" + raw.lstrip("/") if raw else ""
    segments = path.split("/")[1:]
    if (
        not path
        or len(path) > 2000
        or not _PATH_RE.match(path)
        or "" in segments[:-1]
        or any(s in (".", "..") for s in segments)
    ):
        raise ApiError(
            400,
            "invalid_path",
            "The SP-API path must be absolute, without host, empty or dot segments, spaces or control characters.",
            field="path",
        )
    return path


def key_allows(key: ApiKey, path: str) -> bool:
    """The key's `paths` prefixes (none: any path). A prefix without a trailing slash stops at a
    segment boundary: `/orders/v0/orders` allows `/orders/v0/orders/1/address`, not `/orders/v0/ordersX`."""
    prefixes = key.paths or []
    if not prefixes:
        return True
    for prefix in prefixes:
        if prefix.endswith("/") and path.startswith(prefix):
            return True
        if path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def data_elements_of(header: str | None) -> tuple[str, ...]:
    """`buyerInfo,shippingAddress` → ("buyerInfo", "shippingAddress"), or ApiError 400."""
    if header is None:
        return ()
    elements = tuple(dict.fromkeys(part.strip() for part in header.split(",") if part.strip()))
    unknown = [e for e in elements if e not in DATA_ELEMENTS]
    if not elements or unknown:
        raise ApiError(
            400,
            "invalid_request",
            f"{DATA_ELEMENTS_HEADER}: a comma-separated list of {', '.join(DATA_ELEMENTS)}.",
            field=DATA_ELEMENTS_HEADER,
        )
    return elements


def connection_grant_usable(seller: Seller) -> Grant:
    """The seller's grant, or ReauthorizationRequired (with the link) when the seller never
    authorized, revoked, or is due for the yearly re-authorization."""
    grant = grant_of(seller)
    if grant is None:
        raise reauthorization_required(seller=seller, reason="the seller has not authorized the app yet.")
    if grant.status == Grant.Status.REVOKED:
        raise reauthorization_required(seller=seller, reason="access was revoked.")
    if grant.renewal_due_at <= timezone.now():
        raise reauthorization_required(seller=seller, reason="the yearly re-authorization is due.")
    return grant


def _checks_before_sending(key: ApiKey, connection_id: UUID, call: ProxyCall) -> tuple[Seller, Grant]:
    if any(call.path.startswith(prefix) for prefix in BLOCKED_PREFIXES):
        raise ApiError(
            403,
            "path_not_allowed",
            "The Tokens API is not proxied: use POST /api/v1/connections/{id}/restricted-data-token, "
            f"or send {DATA_ELEMENTS_HEADER} with the request that needs the restricted data token.",
        )
    if not key_allows(key, call.path):
        raise ApiError(403, "path_not_allowed", f"This key may only call SP-API paths under: {', '.join(key.paths)}.")
    if call.data_elements and Permission.RDT_CREATE not in key.permissions:
        raise ApiError(403, "permission_denied", f"{DATA_ELEMENTS_HEADER} needs the rdt:create permission too.")
    seller = connection_for_token(tenant_id=key.tenant_id, connection_id=connection_id, grant_fields=PROXY_PATH_GRANT_FIELDS)
    if seller is None:
        raise ApiError(404, "not_found", "No such connection.")
    grant = connection_grant_usable(seller)
    # The same gate as spapi_request: the scope the path needs, or the app's recorded roles
    # when Amazon did not name the granted scopes (that case reads the tenant: one more query).
    try:
        family = spapi_path_family(call.path)
        spapi_gate(seller=seller, grant=grant, family=family, path=call.path)
    except PathNotMapped as exc:
        raise ApiError(403, "path_not_allowed", str(exc)) from None
    except ScopeNotGranted as exc:
        raise ApiError(403, "scope_not_granted", str(exc)) from None
    return seller, grant


def _unauthorized(response: amazon.SpapiRawResponse) -> bool:
    """Amazon refused the token itself: 401, or 403 with the `Unauthorized` code. A 403 with
    other codes, or none, is about the request and is handed back as it is."""
    if response.status_code == 401:
        return True
    return response.status_code == 403 and "Unauthorized" in response.spapi_response().error_codes


def _wait_for(response: amazon.SpapiRawResponse, attempt: int) -> float:
    value = response.headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    return min(2.0, 0.25 * 2**attempt)


def _send(seller: Seller, call: ProxyCall, token: str) -> amazon.SpapiRawResponse:
    """One request, or (GET only) a few while Amazon answers 429 or 5xx."""
    waited = 0.0
    attempt = 0
    while True:
        try:
            response = amazon.spapi_forward(
                region=seller.region,
                method=call.method,
                path=quote(call.path, safe=_SAFE_IN_PATH),
                query=call.query,
                body=call.body,
                content_type=call.content_type,
                access_token=token,
                max_bytes=MAX_RESPONSE_BYTES,
            )
        except amazon.SpapiTransportError:
            sent = "" if call.method == "GET" else " It was sent once and may have been applied; check before repeating it."
            raise ApiError(502, "spapi_unreachable", f"SP-API did not answer.{sent}") from None
        except amazon.SpapiResponseTooLarge as exc:
            raise ApiError(502, "spapi_response_too_large", f"{exc} Ask for smaller pages.") from None
        retryable = response.status_code == 429 or response.status_code >= 500
        if call.method != "GET" or not retryable or attempt >= MAX_GET_RETRIES:
            return response
        delay = _wait_for(response, attempt)
        if delay > MAX_RETRY_WAIT_SECONDS or waited + delay > MAX_TOTAL_WAIT_SECONDS:
            return response  # the caller sees Amazon's 429 and its Retry-After
        time.sleep(delay)
        waited += delay
        attempt += 1


def _token_for(seller: Seller, grant: Grant, call: ProxyCall, access_token: str, key: ApiKey) -> str:
    if not call.data_elements:
        return access_token
    rdt = seller_restricted_data_token(
        seller=seller,
        grant=grant,
        resources=[
            RestrictedResource(call.method, call.path, call.data_elements if takes_data_elements(call.path) else ())
        ],
        actor=actor_for_key(key),
        api_key=key.display_prefix,
        purpose="proxy",
    )
    return rdt.token


def _answer(response: amazon.SpapiRawResponse) -> HttpResponse:
    answer = HttpResponse(response.content, status=response.status_code, content_type=None)
    del answer["Content-Type"]  # Amazon's, or none
    for name in RESPONSE_HEADERS:
        value = response.headers.get(name)
        if value is not None:
            answer[name] = value
    answer["Content-Length"] = str(len(response.content))
    answer["Cache-Control"] = "no-store"
    return answer


def connection_proxy(*, key: ApiKey, connection_id: UUID, call: ProxyCall) -> HttpResponse:
    """Send `call` to SP-API as the connection's seller and return Amazon's answer.

    Raises ApiError (400 invalid_path, 403 path_not_allowed / scope_not_granted /
    permission_denied, 404, 502), ReauthorizationRequired, AppCredentialsRejected,
    TokenUnavailable, RdtRefused — all before anything reaches Amazon except the last three.
    """
    seller, grant = _checks_before_sending(key, connection_id, call)
    access_token = grant_access_token(grant=grant)
    response = _send(seller, call, _token_for(seller, grant, call, access_token, key))
    if not _unauthorized(response) or (not call.data_elements and answers_only_rdt(call.path)):
        # (An operation that takes only a restricted data token refuses an access token whatever
        # its state: a refresh would reach LWA on every such call and change nothing.)
        return _answer(response)

    # Amazon refused the token: expired early or revoked. One refresh decides (spapi_request's rule).
    result = grant_refresh(grant=grant, actor=actor_for_key(key), stale_token=access_token)
    if result.outcome == RefreshOutcome.REVOKED:
        raise reauthorization_required(seller=seller, reason=result.detail)
    if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
        raise AppCredentialsRejected("Login with Amazon rejected the app's credentials; the tenant's owner must check the client secret.")
    fresh = result.grant
    if call.method != "GET":
        # A write is sent once. Amazon refused this one unapplied; the program may send it again
        # and it will carry the refreshed token.
        return _answer(response)
    if fresh is None or not fresh.access_token or fresh.access_token == access_token:
        raise TokenUnavailable(f"Amazon refused the access token and no new one could be obtained: {result.detail}")
    # Amazon's second refusal is handed back as it is, and the grant is left unchanged: a 403
    # "Unauthorized" with a fresh token may mean a missing scope, but also a role the app lacks
    # for this one operation or a marketplace of another region. A key limited to a few paths
    # must not be able to narrow the seller's grant for every program of the agency.
    return _answer(_send(seller, call, _token_for(seller, fresh, call, fresh.access_token, key)))
