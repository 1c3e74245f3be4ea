"""The one seam to Amazon: Login with Amazon's token endpoint and SP-API requests.

Every service that talks to Amazon goes through this module; it speaks Amazon's protocols
(token requests, error codes, SP-API responses) and sends through `sellers.http.send`, the
process's one outbound function (tests patch it there).

Nothing in this module logs or raises with a request body, header value or token in it.
"""

from __future__ import annotations

import json as _json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from . import http
from .redaction import redact
from .scopes import parse_scope_string

# --- Login with Amazon ---------------------------------------------------------------------


class LwaError(Exception):
    """LWA refused or failed a token request. `error` is LWA's code (or ours for transport)."""

    transient = False

    def __init__(self, error: str, description: str = "", status_code: int | None = None, retry_after: float | None = None):
        self.error = redact(error)[:64]
        self.description = redact(description)[:300]
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(f"{error}: {self.description}" if self.description else error)


class LwaInvalidGrant(LwaError):
    """The code is expired or used, or the refresh token was revoked by the seller."""


class LwaInvalidClient(LwaError):
    """The app's client id or secret is wrong or expired: the tenant's problem, not a seller's."""


class LwaRejected(LwaError):
    """Any other 4xx answer (invalid_request, invalid_scope, access_denied, …)."""


class LwaTransient(LwaError):
    """429, 5xx, timeouts, connection errors, unreadable answers: try again later."""

    transient = True


@dataclass(frozen=True)
class TokenResponse:
    access_token: str = field(repr=False)
    expires_in: int
    refresh_token: str | None = field(default=None, repr=False)
    token_type: str = "bearer"
    # None when the answer has no `scope` field (real Amazon); a list when it has one (seed).
    scopes: list[str] | None = None


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _parse_token_response(response: requests.Response) -> TokenResponse:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = None

    if 200 <= status < 300:
        if body is None or not isinstance(body.get("access_token"), str) or not body["access_token"]:
            raise LwaTransient("malformed_response", "LWA answered without a readable access token.", status)
        try:
            expires_in = int(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            raise LwaTransient("malformed_response", "LWA answered with an unreadable expires_in.", status) from None
        refresh = body.get("refresh_token")
        scope = body.get("scope")
        return TokenResponse(
            access_token=body["access_token"],
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            expires_in=max(0, expires_in),
            token_type=str(body.get("token_type", "bearer")),
            scopes=parse_scope_string(scope) if isinstance(scope, str) else None,
        )

    error = str((body or {}).get("error") or "")[:64] or f"http_{status}"
    description = str((body or {}).get("error_description") or "")
    if status == 429 or status >= 500 or error in ("server_error", "temporarily_unavailable"):
        raise LwaTransient(error, description, status, _retry_after(response))
    if error == "invalid_grant":
        raise LwaInvalidGrant(error, description, status)
    if error in ("invalid_client", "unauthorized_client") or status == 401:
        raise LwaInvalidClient(error or "invalid_client", description, status)
    raise LwaRejected(error, description, status)


_SECRET_FIELDS = ("client_secret", "code", "refresh_token")


@sensitive_variables("data")
def _token_request(data: Mapping[str, str]) -> TokenResponse:
    try:
        response = http.send(
            "POST",
            settings.SPAPI_LWA_TOKEN_URL,
            data=data,
            headers={"Accept": "application/json"},
        )
    except http.NETWORK_ERRORS as exc:
        # Never chain the original: its text may quote the request.
        raise LwaTransient(type(exc).__name__.lower(), "No answer from LWA.") from None
    try:
        return _parse_token_response(response)
    except LwaError as exc:
        # An OAuth server may echo what it was sent; error descriptions end up in history,
        # admin pages and emails, so the values we sent are cut out of them here.
        for name in _SECRET_FIELDS:
            value = data.get(name)
            if value and len(value) >= 4:
                exc.description = exc.description.replace(value, "[redacted]")
        exc.args = (f"{exc.error}: {exc.description}" if exc.description else exc.error,)
        raise


@sensitive_variables("client_secret", "code")
def lwa_exchange_code(*, client_id: str, client_secret: str, code: str, redirect_uri: str) -> TokenResponse:
    """Trade an authorization code (valid 5 minutes, single use) for tokens. Never retried."""
    return _token_request(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client_id,
            "client_secret": client_secret,
        }
    )


@sensitive_variables("client_secret", "refresh_token")
def lwa_refresh(*, client_id: str, client_secret: str, refresh_token: str) -> TokenResponse:
    """Get a new access token for a refresh token."""
    return _token_request(
        {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
            "client_secret": client_secret,
        }
    )


# --- SP-API --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpapiResponse:
    status_code: int
    body: Any
    headers: Mapping[str, str]

    @property
    def error_codes(self) -> list[str]:
        if isinstance(self.body, dict) and isinstance(self.body.get("errors"), list):
            return [str(e.get("code", "")) for e in self.body["errors"] if isinstance(e, dict)]
        return []

    @property
    def retry_after(self) -> float | None:
        value = self.headers.get("Retry-After")
        if value is None:
            rate = self.headers.get("x-amzn-RateLimit-Limit")
            try:
                return 1.0 / float(rate) if rate else None
            except (ValueError, ZeroDivisionError):
                return None
        try:
            return max(0.0, float(value))
        except ValueError:
            return None


class SpapiTransportError(Exception):
    """No answer from SP-API (timeout, connection refused)."""


@sensitive_variables("access_token")
def spapi_send(
    *,
    region: str,
    method: str,
    path: str,
    access_token: str,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
) -> SpapiResponse:
    """One SP-API request to the seller's regional host. Callers handle status codes."""
    url = settings.SPAPI_API_HOSTS[region].rstrip("/") + path
    try:
        response = http.send(
            method.upper(),
            url,
            params=params,
            json=json,
            headers={"x-amz-access-token": access_token, "Accept": "application/json"},
        )
    except http.NETWORK_ERRORS as exc:
        raise SpapiTransportError(f"No answer from SP-API ({type(exc).__name__}).") from None
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:2000]}
    return SpapiResponse(response.status_code, body, dict(response.headers))


@sensitive_variables("client_secret")
def lwa_client_credentials(*, client_id: str, client_secret: str, scope: str) -> TokenResponse:
    """A grantless (app-level, no seller) access token for one scope: LWA's `client_credentials`."""
    return _token_request(
        {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_id": client_id,
            "client_secret": client_secret,
        }
    )


# --- Restricted data tokens ------------------------------------------------------------------

RDT_PATH = "/tokens/2021-03-01/restrictedDataToken"


@dataclass(frozen=True)
class RestrictedDataToken:
    token: str = field(repr=False)
    expires_in: int


class RdtRefused(Exception):
    """The Tokens API answered something other than a restricted data token. `response` is its
    answer (Amazon's error body names the problem; it never echoes a token)."""

    def __init__(self, response: SpapiResponse):
        self.response = response
        codes = ", ".join(c for c in response.error_codes if c) or f"HTTP {response.status_code}"
        super().__init__(f"The Tokens API refused the restricted data token ({codes}).")


@sensitive_variables("access_token")
def rdt_create(
    *, region: str, access_token: str, restricted_resources: list[dict[str, Any]], target_application: str | None = None
) -> RestrictedDataToken:
    """`POST /tokens/2021-03-01/restrictedDataToken` with the seller's access token.

    `restricted_resources`: `[{"method", "path", "dataElements"?}]` as Amazon spells them.
    Raises RdtRefused (any answer without a token, 403 Unauthorized included: the caller
    decides whether to refresh) and SpapiTransportError.
    """
    body: dict[str, Any] = {"restrictedResources": restricted_resources}
    if target_application:
        body["targetApplication"] = target_application
    response = spapi_send(region=region, method="POST", path=RDT_PATH, access_token=access_token, json=body)
    answer = response.body if isinstance(response.body, dict) else {}
    token = answer.get("restrictedDataToken")
    if response.status_code != 200 or not isinstance(token, str) or not token:
        raise RdtRefused(response)
    try:
        expires_in = max(0, int(answer.get("expiresIn", 3600)))
    except (TypeError, ValueError):
        expires_in = 3600
    return RestrictedDataToken(token=token, expires_in=expires_in)


# --- Forwarding (the agency API's proxy) -----------------------------------------------------


class SpapiResponseTooLarge(Exception):
    """SP-API's answer was longer than the caller's limit; it was not read further."""


@dataclass(frozen=True)
class SpapiRawResponse:
    """An SP-API answer as bytes: the proxy hands it on without parsing it."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]

    def spapi_response(self) -> SpapiResponse:
        """The parsed view (error codes, Retry-After) of this answer."""
        try:
            body: Any = _json.loads(self.content) if self.content else {}
        except ValueError:
            body = {}
        return SpapiResponse(self.status_code, body, self.headers)


def _read_bounded(response: requests.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        response.close()
        raise SpapiResponseTooLarge(f"SP-API's answer is {declared} bytes; the limit is {limit}.")
    if response.raw is None:  # already in memory (a response built without a socket)
        content = response.content
        if len(content) > limit:
            raise SpapiResponseTooLarge(f"SP-API's answer is over {limit} bytes.")
        return content
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > limit:
                raise SpapiResponseTooLarge(f"SP-API's answer is over {limit} bytes.")
            chunks.append(chunk)
    finally:
        response.close()
    return b"".join(chunks)


@sensitive_variables("access_token")
def spapi_forward(
    *,
    region: str,
    method: str,
    path: str,
    query: str,
    body: bytes,
    content_type: str,
    access_token: str,
    max_bytes: int,
) -> SpapiRawResponse:
    """Send one request, as given, to the region's SP-API host and read at most `max_bytes` of
    the answer (decompressed). `path` is already percent-encoded; `query` is the raw query string.

    The host is always the configured one for `region`: nothing in the request can change where
    the token goes. Raises SpapiTransportError, SpapiResponseTooLarge.
    """
    url = settings.SPAPI_API_HOSTS[region].rstrip("/") + path + (f"?{query}" if query else "")
    headers = {"x-amz-access-token": access_token, "Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    try:
        response = http.send(method.upper(), url, data=body or None, headers=headers, stream=True)
        content = _read_bounded(response, max_bytes)
    except http.NETWORK_ERRORS as exc:
        raise SpapiTransportError(f"No answer from SP-API ({type(exc).__name__}).") from None
    return SpapiRawResponse(response.status_code, content, response.headers)
