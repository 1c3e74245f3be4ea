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


# Backends that write whole messages where logs go.
EMAIL_BACKENDS_TO_OUTPUT = ("django.core.mail.backends.console.EmailBackend",)


@checks.register(checks.Tags.security, deploy=True)
def email_backend_check(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Refuse, in production, an email backend that prints messages (`check --deploy`).

    Invitation and re-authorization emails carry sellers' links; printed to standard output they
    land in the logs, past the redaction filters (which see log records, not raw output).
    """
    if settings.DEBUG or settings.EMAIL_BACKEND not in EMAIL_BACKENDS_TO_OUTPUT:
        return []
    return [
        checks.Error(
            "EMAIL_BACKEND prints every message to standard output: sellers' invitation and "
            "re-authorization links would end up in the logs, and nobody would receive them.",
            hint="Configure SMTP (EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS) "
            "or another sending backend (docs/deployment.md).",
            id="spconnect.E001",
        )
    ]
