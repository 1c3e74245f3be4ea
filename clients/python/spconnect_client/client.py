"""`Client`: spconnect's agency API over HTTP (requests), one method per endpoint."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests
from requests.adapters import HTTPAdapter

from . import __version__
from .errors import SpconnectError, TransportError, error_from_response
from .models import (
    AccessToken,
    Connection,
    ConnectionPage,
    GrantlessToken,
    Invitation,
    ProxyResponse,
    ReauthorizationLink,
    RestrictedDataToken,
)

Timeout = float | tuple[float, float]


class Client:
    """spconnect's agency API for one API key.

    `base_url` is the site's address (`https://spconnect.example.com`) or the API's own
    (`…/api/v1`). One `Client` may be shared by threads. Every call raises a subclass of
    `SpconnectError` on failure; calls that failed to reach spconnect (connection refused, reset,
    timed out) are retried `max_retries` times (each is safe to repeat: invitations carry an
    idempotency key).
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: Timeout = (5.0, 30.0),
        max_retries: int = 2,
        session: requests.Session | None = None,
    ):
        if not base_url:
            raise ValueError("base_url is required (e.g. https://spconnect.example.com)")
        if not api_key:
            raise ValueError("api_key is required")
        base = base_url.rstrip("/")
        if not base.endswith("/api/v1"):
            base += "/api/v1"
        self.base_url = base
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self._api_key = api_key
        if session is None:
            session = requests.Session()
            # Threads share the client: keep more than requests' default 10 connections, so that
            # busy threads do not open and drop connections past the pool's size.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=64)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self._session = session
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "User-Agent": f"spconnect-client/{__version__} python-requests/{requests.__version__}",
        }

    def __repr__(self) -> str:  # never the key
        return f"<spconnect_client.Client {self.base_url}>"

    def close(self) -> None:
        self._session.close()

    # --- Connections ---------------------------------------------------------------------------

    def list_connections(
        self,
        *,
        status: str | None = None,
        region: str | None = None,
        selling_partner_id: str | None = None,
        q: str | None = None,
        limit: int | None = None,
    ) -> Iterator[Connection]:
        """Every connection matching the filters, page after page (`limit` is the page size)."""
        cursor: str | None = None
        while True:
            page = self.list_connections_page(status=status, region=region, selling_partner_id=selling_partner_id,
                                              q=q, limit=limit, cursor=cursor)
            yield from page.data
            if not page.next_cursor or page.next_cursor == cursor:
                return
            cursor = page.next_cursor

    def list_connections_page(
        self,
        *,
        status: str | None = None,
        region: str | None = None,
        selling_partner_id: str | None = None,
        q: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ConnectionPage:
        """One page of connections; pass its `next_cursor` as `cursor` for the next."""
        params = {"status": status, "region": region, "selling_partner_id": selling_partner_id, "q": q,
                  "limit": limit, "cursor": cursor}
        body = self._request("GET", "/connections", params={k: v for k, v in params.items() if v is not None})
        return ConnectionPage(data=[Connection.from_json(item) for item in body.get("data") or []],
                              next_cursor=body.get("next_cursor") or None)

    def get_connection(self, connection_id: str) -> Connection:
        return Connection.from_json(self._request("GET", f"/connections/{_segment(connection_id)}"))

    # --- Tokens ----------------------------------------------------------------------------------

    def get_access_token(
        self, connection_id: str, *, min_ttl_seconds: int | None = None, force_refresh: bool = False
    ) -> AccessToken:
        """The connection's SP-API access token, valid for more than `min_ttl_seconds` (the
        server's default when None); `force_refresh` asks Amazon for a new one regardless.

        Raises `ReauthorizationRequired` (with `reauthorization_url`) when the seller must
        authorize again, `TokenUnavailable` (with `retry_after`) while Amazon's token service
        fails, `AppCredentialsRejected` when Amazon refuses the agency app's client secret.
        """
        payload: dict[str, Any] = {}
        if min_ttl_seconds is not None:
            payload["min_ttl_seconds"] = int(min_ttl_seconds)
        if force_refresh:
            payload["force_refresh"] = True
        body = self._request("POST", f"/connections/{_segment(connection_id)}/access-token", json=payload)
        return AccessToken.from_json(body)

    def get_restricted_data_token(
        self,
        connection_id: str,
        restricted_resources: list[Mapping[str, Any]],
        *,
        target_application: str | None = None,
    ) -> RestrictedDataToken:
        """A restricted data token for buyers' personal data: `restricted_resources` is a list of
        `{"method": "GET", "path": "/orders/v0/orders/…/address", "data_elements": [...]}`.
        Needs the `rdt:create` permission. Send the token as `x-amz-access-token` to those
        requests only (or let `proxy(..., data_elements=...)` do it all)."""
        payload: dict[str, Any] = {"restricted_resources": [dict(r) for r in restricted_resources]}
        if target_application is not None:
            payload["target_application"] = target_application
        body = self._request("POST", f"/connections/{_segment(connection_id)}/restricted-data-token", json=payload)
        return RestrictedDataToken.from_json(body)

    def get_grantless_token(self, scope: str = "sellingpartnerapi::notifications") -> GrantlessToken:
        """The agency app's own token for a grantless scope (`sellingpartnerapi::notifications`,
        `sellingpartnerapi::client_credential:rotation`). Needs the `grantless` permission."""
        return GrantlessToken.from_json(self._request("POST", "/grantless-token", json={"scope": scope}))

    # --- The SP-API proxy --------------------------------------------------------------------------

    def proxy(
        self,
        connection_id: str,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        data: bytes | str | None = None,
        content_type: str | None = None,
        data_elements: list[str] | tuple[str, ...] | None = None,
    ) -> ProxyResponse:
        """Call SP-API as the connection's seller through spconnect (permission `proxy`):
        `client.proxy(id, "GET", "/orders/v0/orders", params={"MarketplaceIds": "ATVPDKIKX0DER"})`.

        Returns Amazon's answer whatever its status (`ProxyResponse`); raises the usual
        exceptions for spconnect's own refusals (`PermissionDenied` with code
        `path_not_allowed` or `scope_not_granted`, `ReauthorizationRequired`, …).
        `data_elements` (`["buyerInfo", "shippingAddress"]`, permission `rdt:create` too) makes
        spconnect send a restricted data token for this request. Only failures to reach
        spconnect at all are retried here, and only for GET: spconnect retries Amazon's 429s
        and 5xx for GET itself and never repeats a write.
        """
        method = method.upper()
        if not path.startswith("/"):
            raise ValueError("path is an SP-API path such as /orders/v0/orders")
        headers: dict[str, str] = {}
        if data_elements:
            headers["X-Spconnect-Data-Elements"] = ",".join(data_elements)
        if content_type:
            headers["Content-Type"] = content_type
        url = f"{self.base_url}/connections/{_segment(connection_id)}/proxy{quote(path, safe='/:@!$&()*+,;=-._~')}"
        response = self._send(method, url, params=params, json=json, data=data, headers=headers,
                              retries=self.max_retries if method == "GET" else 0)
        content = response.content
        if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and isinstance(body.get("error"), dict):
                raise error_from_response(response.status_code, body, response.headers)  # spconnect's, not Amazon's
        return ProxyResponse(status=response.status_code, headers=dict(response.headers), content=content)

    # --- Invitations -----------------------------------------------------------------------------

    def create_invitation(
        self,
        *,
        name: str,
        email: str | None = None,
        region: str | None = None,
        days: int | None = None,
        idempotency_key: str | None = None,
    ) -> Invitation:
        """A new pending connection and its invitation link.

        Repeating a call with the same `idempotency_key` within 24 hours returns the first answer
        and creates nothing. Without one, a fresh key is made for this call (so the client's own
        retries never create two sellers); pass your own to make retries across processes safe.
        """
        payload: dict[str, Any] = {"name": name}
        if email is not None:
            payload["email"] = email
        if region is not None:
            payload["region"] = region
        if days is not None:
            payload["days"] = int(days)
        key = idempotency_key or str(uuid.uuid4())
        body = self._request("POST", "/invitations", json=payload, headers={"Idempotency-Key": key})
        return Invitation.from_json(body)

    def create_reauthorization_link(self, connection_id: str) -> ReauthorizationLink:
        """A link the seller opens to authorize the app again (renewal, revocation, missing scopes)."""
        body = self._request("POST", f"/connections/{_segment(connection_id)}/reauthorization-link", json={})
        return ReauthorizationLink.from_json(body)

    # --- HTTP ------------------------------------------------------------------------------------

    def _send(self, method: str, url: str, *, params: Any = None, json: Any = None, data: Any = None,
              headers: Mapping[str, str] | None = None, retries: int) -> requests.Response:
        all_headers = {**self._headers, **(headers or {})}
        attempt = 0
        while True:
            try:
                return self._session.request(method, url, params=params, json=json, data=data, headers=all_headers,
                                             timeout=self.timeout, allow_redirects=False)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if attempt >= retries:
                    raise TransportError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
                time.sleep(min(2.0, 0.25 * 2 ** attempt))
                attempt += 1
            except requests.RequestException as exc:
                raise TransportError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 json: Mapping[str, Any] | None = None, headers: Mapping[str, str] | None = None) -> dict:
        url = self.base_url + path
        response = self._send(method, url, params=params, json=json, headers=headers, retries=self.max_retries)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            raise error_from_response(response.status_code, body, response.headers)
        if response.status_code >= 300 or not isinstance(body, dict):
            raise TransportError(f"{method} {url} answered HTTP {response.status_code} without a JSON object "
                                 "(is base_url spconnect's address?)", status=response.status_code)
        return body


def _segment(value: str) -> str:
    """A connection id as one path segment (ids are UUIDs; anything else must not change the path)."""
    text = str(value)
    if not text:
        raise ValueError("connection_id is required")
    return quote(text, safe="")


__all__ = ["Client", "SpconnectError"]
