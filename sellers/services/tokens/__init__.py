"""Access tokens: handed out from a cache while valid, refreshed at LWA by one caller at a time.

* `errors`: what callers catch (`TokenError` and its kinds) and `reauthorization_required`,
  the one place that builds `ReauthorizationRequired` with the seller's link;
* `cache`: the in-process cache of access tokens;
* `locks`: the per-grant lock a refresh holds (threads, and processes on a SQLite file);
* `refresh`: `grant_access_token` (the hot path) and `grant_refresh`, the single-flight
  refresh and what each LWA answer does to the grant, the seller and the tenant;
* `sweep`: `grants_refresh`, many grants ahead of need (which ones: `grants_due`, a read,
  lives in `sellers/selectors.py` and is re-exported here).

Import from here: `from sellers.services.tokens import grant_access_token`.
"""

from sellers.selectors import grants_due

from .cache import CACHE_MAX_ENTRIES, access_token_cache_clear
from .errors import (
    AppCredentialsRejected,
    ReauthorizationRequired,
    TokenError,
    TokenUnavailable,
    reauthorization_required,
)
from .locks import LOCK_WAIT_SECONDS
from .refresh import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_CAP_SECONDS,
    RefreshOutcome,
    RefreshResult,
    grant_access_token,
    grant_refresh,
)
from .sweep import BATCH_SIZE, UNDECRYPTABLE_DETAIL, RefreshSummary, grants_refresh

__all__ = [
    "BACKOFF_BASE_SECONDS",
    "BACKOFF_CAP_SECONDS",
    "BATCH_SIZE",
    "CACHE_MAX_ENTRIES",
    "LOCK_WAIT_SECONDS",
    "UNDECRYPTABLE_DETAIL",
    "AppCredentialsRejected",
    "ReauthorizationRequired",
    "RefreshOutcome",
    "RefreshResult",
    "RefreshSummary",
    "TokenError",
    "TokenUnavailable",
    "access_token_cache_clear",
    "grant_access_token",
    "grant_refresh",
    "grants_due",
    "grants_refresh",
    "reauthorization_required",
]
