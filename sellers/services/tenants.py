"""Tenant-level state: the app's LWA credentials."""

from __future__ import annotations

from django.utils import timezone

from sellers import amazon
from sellers.models import Event, Tenant

from .events import event_record
from .notifications import notify_staff


def tenant_credentials_failed(*, tenant: Tenant, error: amazon.LwaError) -> bool:
    """Flag the tenant's app credentials as rejected by LWA. True when newly flagged.

    This is an app problem (wrong or expired client secret), so no seller is touched.
    """
    now = timezone.now()
    message = f"{error.error}: {error.description}"[:500]
    newly = Tenant.objects.filter(pk=tenant.pk, credentials_failing_since__isnull=True).update(
        credentials_failing_since=now, credentials_error=message
    )
    if newly:
        tenant.credentials_failing_since, tenant.credentials_error = now, message
        event = event_record(
            tenant=tenant,
            kind=Event.Kind.CREDENTIALS_INVALID,
            detail=f"LWA rejected the app's client credentials ({message}). Check the client secret.",
            actor="amazon",
        )
        notify_staff(
            tenant=tenant,
            subject="LWA rejected the app's client credentials",
            body=(
                f"Login with Amazon refused {tenant.name}'s client id/secret ({message}). No seller is affected, "
                "but no access token can be refreshed until the client secret in the tenant settings is fixed."
            ),
            event=event,
        )
    return bool(newly)


def tenant_credentials_ok(*, tenant: Tenant) -> bool:
    """Clear the flag after a successful token request. True when it was set."""
    cleared = Tenant.objects.filter(pk=tenant.pk, credentials_failing_since__isnull=False).update(
        credentials_failing_since=None, credentials_error=""
    )
    if cleared:
        tenant.credentials_failing_since, tenant.credentials_error = None, ""
        event_record(
            tenant=tenant,
            kind=Event.Kind.CREDENTIALS_RECOVERED,
            detail="LWA accepted the app's credentials again.",
            actor="amazon",
        )
    return bool(cleared)
