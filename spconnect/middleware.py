"""Hardening for the public, unauthenticated pages: per-address rate limits and a strict CSP.

Sellers reach the hosted pages (invitation, start, callback, result, Login URI) without an
account, so the only handle on abuse is the client's address. Counters live in Django's cache
(Redis in production), so every web process and machine shares them.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import DataError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What a cache backend raises when its server is away: Redis errors, refused sockets.
CACHE_ERRORS = (RedisError, OSError)


def client_address(request: HttpRequest) -> str:
    """The address a request came from, as far as this deployment can know it.

    `X-Forwarded-For` is read only when SPCONNECT_TRUSTED_PROXY_COUNT says how many proxies of
    ours append to it: with N proxies the client is the N-th entry from the right, and anything
    further left was written by the client and is ignored. A header with fewer entries than
    that, or an entry that is not an IP address, did not come through our proxies as
    configured: the peer address is used instead.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.SPCONNECT_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if len(hops) < proxies:
        return remote
    try:
        return str(ipaddress.ip_address(hops[-proxies]))
    except ValueError:
        return remote


def _limit_key(address: str) -> str:
    """One IPv4 address, or one IPv6 /64 (a single subscriber usually holds a whole /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    count: int
    retry_after: int  # seconds until the current window ends


def rate_limit_hit(
    *, address: str, limit: int, window: int, now: float | None = None, scope: str = "public"
) -> RateDecision:
    """Count one request from `address` in the current fixed window and say if it may proceed.

    A fixed window (one counter per address per window) costs one atomic INCR on Redis. At a
    window's edge a client can get up to twice the limit in a short burst; for pages a seller
    opens a handful of times that is an acceptable price for one round trip per request.
    """
    now = time.time() if now is None else now
    index = int(now // window)
    retry_after = max(1, math.ceil((index + 1) * window - now))
    key = f"spconnect:ratelimit:{scope}:{_limit_key(address)}:{index}"
    cache.add(key, 0, timeout=window + 1)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=window + 1)
        count = 1
    return RateDecision(allowed=count <= limit, count=count, retry_after=retry_after)


def _is_limited_path(path: str) -> bool:
    return any(path.startswith(prefix) for prefix in settings.SPCONNECT_RATE_LIMIT_PATHS)


def _limit_for(request: HttpRequest) -> tuple[str, int, int] | None:
    """(scope, requests, window) that applies to this request, or None."""
    path = request.path_info
    if request.method == "POST" and path in settings.SPCONNECT_LOGIN_PATHS:
        return "login", settings.SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS, settings.SPCONNECT_LOGIN_RATE_LIMIT_WINDOW_SECONDS
    if _is_limited_path(path):
        return "public", settings.SPCONNECT_RATE_LIMIT_REQUESTS, settings.SPCONNECT_RATE_LIMIT_WINDOW_SECONDS
    return None


class RateLimitMiddleware:
    """429 with Retry-After once an address exceeds the limit on the public pages.

    If the cache is unreachable the request goes through (logged): a Redis outage must not lock
    every seller out of the consent flow, and /healthz reports the outage.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        applies = _limit_for(request)
        if applies is not None and applies[1] > 0:
            scope, limit, window = applies
            address = client_address(request)
            try:
                decision = rate_limit_hit(address=address, limit=limit, window=window, scope=scope)
            except CACHE_ERRORS as exc:
                logger.warning("Rate limit not applied, the cache is unreachable: %s", type(exc).__name__)
            else:
                if not decision.allowed:
                    logger.info("Rate limited %s on %s (%s requests)", address, request.path_info, decision.count)
                    return self._too_many(request, decision, scope)
        return self.get_response(request)

    @staticmethod
    def _too_many(request: HttpRequest, decision: RateDecision, scope: str) -> HttpResponse:
        minutes = max(1, math.ceil(decision.retry_after / 60))
        wait = f"Please wait {minutes} minute{'s' if minutes > 1 else ''}"
        if scope == "login":
            title = "Too many sign-in attempts"
            message = f"Too many sign-in attempts came from your network in a short time. {wait} and try again."
        else:
            title = "Too many attempts"
            message = f"Too many requests came from your network in a short time. {wait} and open your link again."
        response = render(
            request,
            "problem.html",
            {"title": title, "message": message, "retry_url": None, "kind": "error"},
            status=429,
        )
        response["Retry-After"] = str(decision.retry_after)
        response["Cache-Control"] = "no-store"
        return response


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def content_security_policy() -> str:
    """The hosted pages load one stylesheet from our static files and run no script at all.

    `form-action` must name Seller Central: the start form's answer is a redirect to Amazon's
    consent page, and browsers check redirects after a form submission against form-action.
    """
    static = _origin(settings.STATIC_URL)
    assets = "'self'" + (f" {static}" if static else "")
    consent = sorted({o for o in (_origin(u) for u in settings.SPAPI_CONSENT_HOSTS.values()) if o})
    directives = [
        "default-src 'none'",
        f"style-src {assets}",
        f"img-src {assets} data:",
        f"font-src {assets}",
        "form-action 'self'" + "".join(f" {o}" for o in consent),
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
    return "; ".join(directives)


class ContentSecurityPolicyMiddleware:
    """Content-Security-Policy on every page but the paths in SPCONNECT_CSP_EXEMPT_PATHS.

    The admin is exempt: Django's admin is staff-only behind a login, and its templates are
    not ours to keep free of inline styles.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        path = request.path_info
        if "Content-Security-Policy" not in response and not any(
            path.startswith(prefix) for prefix in settings.SPCONNECT_CSP_EXEMPT_PATHS
        ):
            response["Content-Security-Policy"] = content_security_policy()
        return response


# --- Numbers the database cannot hold ---------------------------------------------------------


def _is_out_of_range(exc: BaseException) -> bool:
    """SQLite refuses to bind an int beyond 64 bits; PostgreSQL answers SQLSTATE 22003."""
    if isinstance(exc, OverflowError):
        return True
    if isinstance(exc, DataError):
        cause = exc.__cause__
        return getattr(cause, "sqlstate", None) == "22003" or getattr(cause, "pgcode", None) == "22003"
    return False


class OutOfRangeNumberMiddleware:
    """A number too large for the database in a URL, filter or form is bad input: 400, not 500.

    Django range-checks most integer lookups itself, but not all (foreign keys, `pk__in` in the
    admin's bulk actions); one answer here covers every view rather than a check in each.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not _is_out_of_range(exception):
            return None
        # Warning, not info: nearly always input, but an overflow in our own arithmetic lands here too.
        logger.warning("400 for an out-of-range number on %s %s (%s)", request.method, request.path_info, exception)
        return render(
            request,
            "400.html",
            {"message": "A number in this request is larger than any record could have. Check the address or go back."},
            status=400,
        )
