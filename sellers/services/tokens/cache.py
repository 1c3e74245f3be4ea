"""The in-process cache of access tokens, for callers that load grants without their encrypted
columns (`spapi_request`): keyed by grant id, and served only for the same `Grant.version` and
expiry, so a grant that changed (refreshed elsewhere, revoked, re-authorized) is never served
from it."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime

CACHE_MAX_ENTRIES = 50_000


@dataclass(frozen=True)
class _Cached:
    version: int
    expires_at: datetime
    token: str = field(repr=False)


_cache: dict[int, _Cached] = {}
_cache_guard = threading.Lock()


def cached_token(grant_id: int, *, version: int, expires_at: datetime) -> str | None:
    """The token cached for this grant as it is now (same version and expiry), else None."""
    hit = _cache.get(grant_id)
    if hit is not None and hit.version == version and hit.expires_at == expires_at:
        return hit.token
    return None


def cache_put(grant_id: int, version: int, expires_at: datetime | None, token: str) -> None:
    if not token or expires_at is None:
        _cache.pop(grant_id, None)
        return
    with _cache_guard:
        if grant_id not in _cache and len(_cache) >= CACHE_MAX_ENTRIES:
            # Dicts keep insertion order: drop the oldest entry (FIFO is enough here).
            _cache.pop(next(iter(_cache)), None)
        _cache[grant_id] = _Cached(version, expires_at, token)


def cache_forget(grant_id: int) -> None:
    _cache.pop(grant_id, None)


def access_token_cache_clear() -> None:
    """Forget every cached access token of this process (tests, benchmarks)."""
    with _cache_guard:
        _cache.clear()
