"""The one place a request's key is checked: `KeyAuth(permission)` on each endpoint.

In order: the key (401 `unauthorized` when missing, unknown, revoked or expired), the key's rate
limit (429 `rate_limited` with Retry-After), the permission the endpoint needs (403
`permission_denied`). One query finds the key; `last_used_at` is written at most once a minute.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.security.http import HttpBearer

from spconnect.middleware import CACHE_ERRORS, rate_limit_hit

from .errors import ApiError
from .keys import api_key_find, api_key_touch
from .models import ApiKey

logger = logging.getLogger(__name__)


class KeyRequest(HttpRequest):
    """What endpoints behind `KeyAuth` receive: django-ninja sets `auth` to the accepted key."""

    auth: ApiKey


def actor_for_key(key: ApiKey) -> str:
    """How the history names a request made with this key."""
    return f"api:{key.name}"[:150]


def _rate_limit(key: ApiKey) -> None:
    limit = settings.SPCONNECT_API_RATE_LIMIT_REQUESTS
    if limit <= 0:
        return
    try:
        # The project's fixed-window counter (one INCR on Redis), counted per key.
        decision = rate_limit_hit(
            address=f"key-{key.pk}", limit=limit, window=settings.SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS, scope="api"
        )
    except CACHE_ERRORS as exc:
        # A cache outage must not stop every program of every agency; /healthz reports it.
        logger.warning("API rate limit not applied, the cache is unreachable: %s", type(exc).__name__)
        return
    if not decision.allowed:
        raise ApiError(
            429,
            "rate_limited",
            f"More than {limit} requests in {settings.SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS} s with this key; "
            f"retry after {decision.retry_after} s.",
            headers={"Retry-After": str(decision.retry_after)},
        )


class KeyAuth(HttpBearer):
    """`Authorization: Bearer spc_…` with the permission the endpoint needs."""

    def __init__(self, permission: str):
        super().__init__()
        self.permission = permission

    def __call__(self, request: HttpRequest) -> ApiKey | None:
        # Parsed here rather than by HttpBearer, which logs a malformed header (a key, maybe) in DEBUG.
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            return None
        return self.authenticate(request, presented.strip())

    def authenticate(self, request: HttpRequest, token: str) -> ApiKey | None:
        now = timezone.now()
        key = api_key_find(token, now=now)
        if key is None:
            return None  # django-ninja answers 401 (api/errors.py)
        _rate_limit(key)
        api_key_touch(api_key=key, now=now)
        if self.permission not in key.permissions:
            raise ApiError(403, "permission_denied", f"This key lacks the {self.permission} permission.")
        return key
