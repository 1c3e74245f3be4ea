"""python-amazon-sp-api's access tokens from spconnect instead of from refresh tokens.

python-amazon-sp-api builds every client with
`auth_token_client_class(refresh_token=, credentials=, proxies=, verify=)` and, before each
request, asks the object it got for `get_auth()` (grantless operations: `get_grantless_auth(scope)`),
reading `.access_token` from the `AccessTokenResponse` returned. `sp_api_auth()` returns such a
callable: the token comes from spconnect's `POST /connections/{id}/access-token` and is kept in
this process until `min_ttl` seconds before it expires, shared by every client and thread of the
process asking for the same connection with the same key; one request at a time per connection
goes to spconnect (concurrent callers wait for its answer).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .client import Client, Timeout
from .models import AccessToken, GrantlessToken

#: python-amazon-sp-api refuses to build a client without `lwa_app_id` and `lwa_client_secret`,
#: even when another class supplies the tokens. With spconnect they are never used: pass these
#: placeholders as `credentials=` so that the app's real secret need not be in your program.
SP_API_CREDENTIALS = {"lwa_app_id": "spconnect", "lwa_client_secret": "spconnect"}


class _Slot:
    """One connection's cached token; `lock` lets one caller at a time fetch it."""

    __slots__ = ("generation", "lock", "stale", "value")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (token, monotonic time it expires at), replaced whole so readers need no lock.
        self.value: tuple[Any, float] | None = None
        self.generation = 0
        # Set by invalidate(): the cached token was refused, so the next fetch forces a refresh.
        self.stale = False


class TokenCache:
    """Tokens by (spconnect, key, connection), least recently used dropped beyond `maxsize`."""

    def __init__(self, maxsize: int = 10_000):
        self.maxsize = maxsize
        self._slots: OrderedDict[Hashable, _Slot] = OrderedDict()
        self._lock = threading.Lock()

    def slot(self, key: Hashable) -> _Slot:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                slot = self._slots[key] = _Slot()
                while len(self._slots) > self.maxsize:
                    self._slots.popitem(last=False)
            else:
                self._slots.move_to_end(key)
            return slot

    def discard(self, key: Hashable) -> None:
        with self._lock:
            self._slots.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._slots.clear()

    def __len__(self) -> int:
        return len(self._slots)


#: The process's cache, shared by every `sp_api_auth()` callable unless one is given its own.
TOKENS = TokenCache()

_clients: dict = {}
_clients_lock = threading.Lock()


def _shared_client(base_url: str, api_key: str, timeout: Timeout) -> Client:
    """One `Client` (one connection pool) per spconnect, key and timeout, however many callables."""
    key = (base_url.rstrip("/"), hashlib.sha256(api_key.encode()).hexdigest(), timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = Client(base_url=base_url, api_key=api_key, timeout=timeout)
        return client


class SpApiAuth:
    """The `auth_token_client_class` for python-amazon-sp-api: call it as the library does and it
    returns a token client for one spconnect connection. Made by `sp_api_auth()`."""

    def __init__(self, *, client: Client, connection_id: str, min_ttl: int, cache: TokenCache,
                 response_class: Callable[..., Any]):
        if not connection_id:
            raise ValueError("connection_id is required")
        if min_ttl < 0:
            raise ValueError("min_ttl must be 0 or more seconds")
        self.client = client
        self.connection_id = str(connection_id)
        self.min_ttl = int(min_ttl)
        self.cache = cache
        self.response_class = response_class
        self._key = (client.base_url, hashlib.sha256(client._api_key.encode()).hexdigest(), self.connection_id)

    def __repr__(self) -> str:
        return f"<spconnect_client.SpApiAuth {self.client.base_url} connection {self.connection_id}>"

    def __call__(self, refresh_token: Any = None, credentials: Any = None, proxies: Any = None, verify: Any = True,
                 **_ignored: Any) -> SpApiTokenClient:
        # refresh_token and credentials: spconnect holds the seller's refresh token and the app's
        # secret. proxies and verify: the library's settings for its calls to Amazon, not to spconnect.
        return SpApiTokenClient(self)

    def access_token(self, *, force_refresh: bool = False) -> tuple[AccessToken, float]:
        """The connection's token and the monotonic time it expires at, from the cache while it
        has more than `min_ttl` seconds left."""
        slot = self.cache.slot(self._key)
        if not force_refresh:
            fresh = self._fresh(slot.value)
            if fresh is not None:
                return fresh
        seen = slot.generation
        with slot.lock:
            # Whoever held the lock may have fetched what this caller wanted (a forced refresh
            # counts once for everyone who asked while it ran).
            fresh = self._fresh(slot.value)
            if fresh is not None and (not force_refresh or slot.generation != seen):
                return fresh
            force = force_refresh or slot.stale
            asked_at = time.monotonic()
            token = self.client.get_access_token(self.connection_id, min_ttl_seconds=self.min_ttl, force_refresh=force)
            value = (token, asked_at + token.expires_in)
            slot.value, slot.stale = value, False
            slot.generation += 1
            return value

    def grantless_token(self, scope: str) -> tuple[GrantlessToken, float]:
        """The app's grantless token for `scope` and the monotonic time it expires at, cached like
        seller tokens (one request at a time per scope goes to spconnect)."""
        slot = self.cache.slot((self._key[0], self._key[1], "grantless", scope))
        fresh = self._fresh(slot.value)
        if fresh is not None:
            return fresh
        with slot.lock:
            fresh = self._fresh(slot.value)
            if fresh is not None:
                return fresh
            asked_at = time.monotonic()
            token = self.client.get_grantless_token(scope)
            slot.value = value = (token, asked_at + token.expires_in)
            return value

    def invalidate(self) -> None:
        """Drop the cached token because SP-API refused it (403: revoked, or expired early): the
        next call asks spconnect for a new one (`force_refresh`), which also tells spconnect to
        check the seller's authorization with Amazon (`ReauthorizationRequired` if it is gone)."""
        slot = self.cache.slot(self._key)
        with slot.lock:
            slot.value, slot.stale = None, True

    def _fresh(self, value: tuple[AccessToken, float] | None) -> tuple[AccessToken, float] | None:
        if value is not None and value[1] - time.monotonic() > self.min_ttl:
            return value
        return None


class SpApiTokenClient:
    """What python-amazon-sp-api keeps as its `_auth`: `get_auth()` before every request."""

    def __init__(self, auth: SpApiAuth):
        self._spconnect = auth

    def get_auth(self):
        token, expires = self._spconnect.access_token()
        return self._spconnect.response_class(
            access_token=token.access_token,
            refresh_token=None,  # stays in spconnect
            expires_in=max(0, int(expires - time.monotonic())),
            token_type=token.token_type,
        )

    def get_grantless_auth(self, scope: str = "sellingpartnerapi::notifications"):
        """The agency app's own token for a grantless operation, from `POST /grantless-token`
        (the key needs the `grantless` permission)."""
        token, expires = self._spconnect.grantless_token(scope)
        return self._spconnect.response_class(
            access_token=token.access_token,
            refresh_token=None,
            expires_in=max(0, int(expires - time.monotonic())),
            token_type="bearer",
        )

    def invalidate(self) -> None:
        self._spconnect.invalidate()


def sp_api_auth(
    *,
    connection_id: str,
    base_url: str | None = None,
    api_key: str | None = None,
    min_ttl: int = 300,
    client: Client | None = None,
    timeout: Timeout = (5.0, 30.0),
    cache: TokenCache | None = None,
) -> SpApiAuth:
    """What to pass as python-amazon-sp-api's `auth_token_client_class` to call SP-API as the
    seller of `connection_id`:

        Orders(auth_token_client_class=sp_api_auth(base_url=URL, api_key=KEY, connection_id=ID),
               credentials=SP_API_CREDENTIALS, marketplace=Marketplaces.US)

    Give `base_url` and `api_key` (a key with `tokens:read`), or a `client`. Tokens are cached
    in this process (`cache`, by default one shared by all) until `min_ttl` seconds before they
    expire. Errors are `spconnect_client` exceptions: `ReauthorizationRequired` carries the link
    to send the seller, `TokenUnavailable` and `RateLimited` carry `retry_after`.
    """
    try:
        from sp_api.auth import AccessTokenResponse  # type: ignore[import-untyped]
    except ImportError as exc:  # the optional dependency
        raise ImportError("sp_api_auth needs python-amazon-sp-api: pip install 'spconnect-client[sp-api]'") from exc
    if client is None:
        if not base_url or not api_key:
            raise ValueError("sp_api_auth needs base_url and api_key, or client")
        client = _shared_client(base_url, api_key, timeout)
    return SpApiAuth(client=client, connection_id=connection_id, min_ttl=min_ttl,
                     cache=TOKENS if cache is None else cache, response_class=AccessTokenResponse)
