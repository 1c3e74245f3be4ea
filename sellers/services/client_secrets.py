"""The tenant's LWA client secret: installing a new one and recording Amazon's expiry notice.

Amazon rotates the secret every 180 days. The tenant keeps the current secret and the previous
one with its expiry; `tenant_lwa_call` (`services/credentials.py`) tries the previous one on
invalid_client until then. `client_secret_install` installs a new one (from `set_client_secret`,
the admin, or Amazon's APPLICATION_OAUTH_CLIENT_NEW_SECRET notification, read by
`services/amazon_notifications.py`). Secrets never appear in events, messages, exceptions or
output.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from sellers.models import Event, Tenant

from .events import event_record
from .notifications import notify_staff

DEFAULT_PREVIOUS_VALID_DAYS = 7
SECRET_LIFETIME_DAYS = 180  # Amazon's rotation period


class ClientSecretError(ValueError):
    """A secret or notification that cannot be used; the message never contains a secret."""


def _check_secret(secret: str) -> str:
    secret = secret.strip()
    if not secret:
        raise ClientSecretError("The client secret is empty.")
    if len(secret) > 1000 or any(c.isspace() for c in secret) or not secret.isprintable():
        raise ClientSecretError("The client secret must be one line of printable characters without spaces.")
    return secret


@transaction.atomic
def client_secret_install(
    *,
    tenant: Tenant,
    secret: str,
    expires_at: datetime | None = None,
    previous_valid_until: datetime | None = None,
    actor: str = "system",
    source: str = "command",
) -> bool:
    """Make `secret` the tenant's current LWA client secret; the current one becomes the previous,
    accepted until `previous_valid_until` (default: 7 days). False when it was already current.

    Records SECRET_ROTATED and tells the tenant's owners and managers (without the secret).
    """
    secret = _check_secret(secret)
    now = timezone.now()
    tenant = Tenant.objects.select_for_update().get(pk=tenant.pk)
    if tenant.client_secret == secret:
        # Amazon delivers notifications at least once: a repeat changes nothing.
        if expires_at is not None and tenant.client_secret_expires_at != expires_at:
            Tenant.objects.filter(pk=tenant.pk).update(client_secret_expires_at=expires_at)
        return False
    previous_valid_until = previous_valid_until or now + timedelta(days=DEFAULT_PREVIOUS_VALID_DAYS)
    had_secret = bool(tenant.client_secret)
    if had_secret:
        tenant.previous_client_secret = tenant.client_secret
        tenant.previous_client_secret_expires_at = previous_valid_until
    tenant.client_secret = secret
    tenant.client_secret_expires_at = expires_at or now + timedelta(days=SECRET_LIFETIME_DAYS)
    tenant.save(
        update_fields=["client_secret", "client_secret_expires_at", "previous_client_secret", "previous_client_secret_expires_at"]
    )
    detail = f"New LWA client secret installed ({source}); it expires {tenant.client_secret_expires_at:%Y-%m-%d}."
    if had_secret:
        detail += f" The previous one is still accepted until {previous_valid_until:%Y-%m-%d %H:%M} UTC."
    event = event_record(
        tenant=tenant,
        kind=Event.Kind.SECRET_ROTATED,
        detail=detail,
        data={
            "source": source,
            "expires_at": tenant.client_secret_expires_at.isoformat(),
            "previous_valid_until": previous_valid_until.isoformat() if had_secret else None,
        },
        actor=actor,
    )
    notify_staff(tenant=tenant, subject="LWA client secret rotated", body=detail + " Nothing else to do.", event=event)
    return True


def client_secret_expiry_record(*, tenant: Tenant, expires_at: datetime, reason: str = "", actor: str = "amazon") -> None:
    """Amazon announced that the current secret expires: store the date and warn the owners."""
    Tenant.objects.filter(pk=tenant.pk).update(client_secret_expires_at=expires_at)
    tenant.client_secret_expires_at = expires_at
    days = max(0, (expires_at - timezone.now()).days)
    detail = f"Amazon says the app's LWA client secret expires on {expires_at:%Y-%m-%d %H:%M} UTC (in {days} days)" + (
        f", reason {reason}." if reason else "."
    )
    event = event_record(
        tenant=tenant,
        kind=Event.Kind.SECRET_EXPIRY_NOTICE,
        detail=detail,
        data={"expires_at": expires_at.isoformat(), "reason": reason},
        actor=actor,
    )
    notify_staff(
        tenant=tenant,
        subject=f"LWA client secret expires on {expires_at:%Y-%m-%d}",
        body=(
            f"{detail} Rotate it before then: in Solution Provider Portal → Developer Central, choose "
            "'Rotate secret' (Amazon then delivers the new secret by the APPLICATION_OAUTH_CLIENT_NEW_SECRET "
            "notification; feed it to `manage.py ingest_notification`), or paste a new secret into "
            f"`manage.py set_client_secret --tenant {tenant.slug}`. See docs/operations.md."
        ),
        event=event,
    )
