"""System checks for settings that look fine on one process and fail quietly on several."""

from __future__ import annotations

from django.conf import settings
from django.core import checks

# Cache backends whose data each process keeps for itself (or does not keep at all).
PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
)


@checks.register(checks.Tags.caches, checks.Tags.security, deploy=True)
def rate_limit_cache_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Warn when the rate limits would be counted per process (`check --deploy`).

    The limits count requests in Django's cache. A process-local cache gives every web process
    (gunicorn worker) its own counters, so a client gets the limit once per process: two
    workers let some 120 requests through a limit of 60, and nothing says so at run time.
    """
    if settings.DEBUG or "spconnect.middleware.RateLimitMiddleware" not in settings.MIDDLEWARE:
        return []
    if settings.SPCONNECT_RATE_LIMIT_REQUESTS <= 0 and settings.SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS <= 0:
        return []
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend not in PROCESS_LOCAL_CACHES:
        return []
    return [
        checks.Warning(
            f"Rate limits are counted in a cache that each process keeps for itself ({backend.rsplit('.', 1)[-1]}): "
            "with several web processes, every one of them lets a client through up to the limit.",
            hint="Set REDIS_URL so that all processes share the counters (docs/deployment.md). With a single "
            "web process, silence this with SILENCED_SYSTEM_CHECKS=spconnect.W001.",
            id="spconnect.W001",
        )
    ]
