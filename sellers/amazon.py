"""The one seam for every outbound HTTP call: Login with Amazon, SP-API and webhooks.

Everything that leaves the process goes through `send()`, which owns the shared
`requests.Session` (webhooks pinned to a checked address get a short-lived one of their own)
and always passes a timeout (`requests` has none by default). Tests and the
local sandbox switch behaviour here and nowhere else.

Nothing in this module logs or raises with a request body, header value or token in it.
"""

from __future__ import annotations

import json as jsonlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter

from .scopes import parse_scope_string

logger = logging.getLogger(__name__)

_session = requests.Session()
_session.headers["User-Agent"] = "spconnect/0.1 (Language=Python)"

# Exceptions that mean "we never got a usable answer" (timeouts, refused connections, broken
# chunked bodies, bad headers, …); always transient.
NETWORK_ERRORS = (requests.RequestException,)


def session() -> requests.Session:
    return _session


class _PinnedAddressAdapter(HTTPAdapter):
    """Connects to one address chosen (and checked) beforehand instead of resolving the URL's
    host again; the Host header, TLS server name and certificate check keep the host name."""

    def __init__(self, address: str):
        self.address = address
        super().__init__(max_retries=0)

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = host_params["host"]
        host_params["host"] = self.address
        if host_params["scheme"] == "https":
            pool_kwargs["server_hostname"] = name
            pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs

    def send(self, request, *args, **kwargs):
        request.headers["Host"] = urlsplit(request.url).netloc.rsplit("@", 1)[-1]
        return super().send(request, *args, **kwargs)


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the request did not reach the server at all (safe to try another address)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def send(method: str, url: str, *, pin_addresses: Sequence[str] | None = None, **kwargs: Any) -> requests.Response:
    """Send one request through the shared session, with the configured timeout.

    `pin_addresses`: connect to these addresses, in order, not to whatever the URL's host
    resolves to now (webhooks, whose addresses were checked a moment ago); the next one is tried
    only when a connection could not be made. When a proxy is configured for the URL
    (`HTTPS_PROXY`, …) the request goes through it unpinned: the proxy resolves the name, and is
    the deployment's egress control.
    """
    kwargs.setdefault("timeout", settings.SPAPI_HTTP_TIMEOUT)
    kwargs.setdefault("allow_redirects", False)
    if not pin_addresses or requests.utils.get_environ_proxies(url):
        return _session.request(method, url, **kwargs)
    # The pinned session ignores the environment (it must not pick up a proxy); keep its CA bundle.
    kwargs.setdefault("verify", os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True)
    failure: requests.ConnectionError | None = None
    for address in pin_addresses:
        with requests.Session() as pinned:
            pinned.trust_env = False
            pinned.headers.update(_session.headers)
            adapter = _PinnedAddressAdapter(address)
            pinned.mount("http://", adapter)
            pinned.mount("https://", adapter)
            try:
                return pinned.request(method, url, **kwargs)
            except requests.ConnectionError as exc:
                if not _never_connected(exc):
                    raise
                failure = exc
    assert failure is not None
    raise failure


# --- Login with Amazon ---------------------------------------------------------------------


class LwaError(Exception):
    """LWA refused or failed a token request. `error` is LWA's code (or ours for transport)."""

    transient = False

    def __init__(self, error: str, description: str = "", status_code: int | None = None, retry_after: float | None = None):
        from spconnect.logging import redact

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
        response = send(
            "POST",
            settings.SPAPI_LWA_TOKEN_URL,
            data=data,
            headers={"Accept": "application/json"},
        )
    except NETWORK_ERRORS as exc:
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
        response = send(
            method.upper(),
            url,
            params=params,
            json=json,
            headers={"x-amz-access-token": access_token, "Accept": "application/json"},
        )
    except NETWORK_ERRORS as exc:
        raise SpapiTransportError(f"No answer from SP-API ({type(exc).__name__}).") from None
    try:
        body = response.json()
    except ValueError:
        body = {"raw": response.text[:2000]}
    return SpapiResponse(response.status_code, body, dict(response.headers))


# --- Webhooks (not Amazon, but outbound all the same) -----------------------------------------


def webhook_post(*, url: str, body: bytes, headers: Mapping[str, str], addresses: Sequence[str] | None = None) -> int:
    """POST a signed JSON body (to one of `addresses`, when given); returns the status code,
    raises on network errors."""
    response = send("POST", url, data=body, headers={"Content-Type": "application/json", **headers}, pin_addresses=addresses)
    return response.status_code


def dumps(value: Any) -> bytes:
    return jsonlib.dumps(value, separators=(",", ":"), sort_keys=True).encode()
