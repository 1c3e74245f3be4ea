"""Grantless tokens: the tenant's app acting for itself (no seller), for the operations Amazon
serves that way (notification destinations, client secret rotation).

LWA's `client_credentials` grant gives a token for one scope. Tokens are kept in this process
per tenant, client id and scope until `access_token_margin()` before they expire, and one caller
at a time asks LWA for a given key (single flight: threads waiting on the lock take the token
the first one fetched). Nothing is stored in the database: a grantless token is cheap to get
again, and LWA lets several be valid at once, so each process holding its own is harmless.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from sellers import amazon
from sellers.models import Tenant

from ..credentials import tenant_lwa_call
from ..tenants import tenant_credentials_failed, tenant_credentials_ok
from .errors import AppCredentialsRejected, TokenError, TokenUnavailable
from .refresh import access_token_margin

GRANTLESS_SCOPES = ("sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation")
GRANTLESS_CACHE_MAX_ENTRIES = 10_000


class GrantlessRefused(TokenError):
    """LWA refused the grantless request for a reason other than the app's credentials
    (`invalid_scope`, …). `error` is LWA's code."""

    def __init__(self, error: str, message: str):
        self.error = error
        super().__init__(message)


@dataclass(frozen=True)
class GrantlessToken:
    scope: str
    expires_at: datetime
    access_token: str = field(repr=False)

    def expires_in(self, now: datetime | None = None) -> int:
        return max(0, int((self.expires_at - (now or timezone.now())).total_seconds()))


_tokens: dict[tuple[int, str, str], GrantlessToken] = {}
_locks: dict[tuple[int, str, str], threading.Lock] = {}
_guard = threading.Lock()


def grantless_cache_clear() -> None:
    """Forget every grantless token of this process (tests, benchmarks)."""
    with _guard:
        _tokens.clear()
        _locks.clear()


def _lock_for(key: tuple[int, str, str]) -> threading.Lock:
    with _guard:
        lock = _locks.get(key)
        if lock is None:
            if len(_locks) >= GRANTLESS_CACHE_MAX_ENTRIES:
                # Oldest first; a lock held right now stays usable by its holders.
                oldest = next(iter(_locks))
                _locks.pop(oldest, None)
                _tokens.pop(oldest, None)
            lock = _locks[key] = threading.Lock()
        return lock


def _usable(token: GrantlessToken | None, now: datetime) -> bool:
    return token is not None and token.expires_at - now > access_token_margin()


def tenant_grantless_token(*, tenant: Tenant, scope: str, wait_seconds: float = 30.0) -> GrantlessToken:
    """A grantless access token of the tenant's app for `scope` (one of GRANTLESS_SCOPES).

    Raises ValueError (another scope), AppCredentialsRejected (LWA refuses the client secret;
    the tenant is flagged as for seller tokens), GrantlessRefused, TokenUnavailable.
    """
    if scope not in GRANTLESS_SCOPES:
        raise ValueError(f"{scope!r} is not a grantless scope; use one of {', '.join(GRANTLESS_SCOPES)}.")
    key = (tenant.pk, tenant.client_id, scope)
    held = _tokens.get(key)
    if _usable(held, timezone.now()):
        assert held is not None
        return held
    lock = _lock_for(key)
    if not lock.acquire(timeout=wait_seconds):
        raise TokenUnavailable("Another request is fetching this grantless token; try again shortly.")
    try:
        held = _tokens.get(key)
        if _usable(held, timezone.now()):
            assert held is not None
            return held
        asked_at = timezone.now()
        try:
            answer = tenant_lwa_call(
                tenant=tenant,
                call=lambda secret: amazon.lwa_client_credentials(client_id=tenant.client_id, client_secret=secret, scope=scope),
            )
        except amazon.LwaInvalidClient as exc:
            tenant_credentials_failed(tenant=tenant, error=exc)
            raise AppCredentialsRejected(
                "Login with Amazon rejected the app's credentials; the tenant's owner must check the client secret."
            ) from None
        except amazon.LwaTransient as exc:
            retry = timedelta(seconds=min(exc.retry_after or 5, 300))
            raise TokenUnavailable(
                f"Login with Amazon did not answer the grantless request ({exc.error}).", retry_at=timezone.now() + retry
            ) from None
        except amazon.LwaError as exc:
            raise GrantlessRefused(exc.error, f"Login with Amazon refused a grantless token for {scope}: {exc}") from None
        if tenant.credentials_failing_since is not None:
            tenant_credentials_ok(tenant=tenant)
        token = GrantlessToken(scope=scope, expires_at=asked_at + timedelta(seconds=answer.expires_in), access_token=answer.access_token)
        _tokens[key] = token
        return token
    finally:
        lock.release()
