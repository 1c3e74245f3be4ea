"""Telling a tenant's staff that something needs them: email, and the tenant's webhook if any.

Emails leave after the surrounding transaction commits (nothing is announced that was rolled
back, and no SMTP call runs while a database lock is held); so do webhooks
(`sellers/services/webhooks.py`). Neither ever carries a token, secret or re-authorization
link: subjects and bodies are written by spconnect's services, history data never holds
secrets, and everything is scrubbed once more on the way out.
"""

from __future__ import annotations

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.template.loader import render_to_string

from sellers.models import Event, Tenant, TenantMembership
from sellers.redaction import redact

from .webhooks import webhook_enqueue

NOTIFIED_ROLES = (TenantMembership.Role.OWNER, TenantMembership.Role.MANAGER)


def staff_recipients(*, tenant: Tenant) -> list[str]:
    emails = (
        TenantMembership.objects.filter(tenant=tenant, role__in=NOTIFIED_ROLES, user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
        .distinct()
    )
    return list(emails)


def _send_emails(subject: str, text: str, recipients: list[str]) -> None:
    send_mass_mail([(subject, text, None, [to]) for to in recipients], fail_silently=False)


def notify_staff(*, tenant: Tenant, subject: str, body: str, event: Event | None = None) -> None:
    """Email the tenant's owners and managers; announce the event on its webhook, if any (and if
    the event's kind is announced: `webhook_events.py`)."""
    subject, body = redact(subject), redact(body)
    recipients = staff_recipients(tenant=tenant)
    if recipients:
        text = render_to_string(
            "email/staff_notification.txt",
            {"tenant": tenant, "body": body, "event": event, "seller": event.seller if event is not None and event.seller_id else None,
             "site_url": settings.SITE_URL},
        )
        mail_subject = f"[spconnect] {tenant.name}: {subject}"

        def send() -> None:
            _send_emails(mail_subject, text, recipients)

        # robust: a mail server being down must not undo or break the change being announced. A
        # function, not a partial: Django names a failing robust callback by its __qualname__.
        transaction.on_commit(send, robust=True)
    if event is not None:
        webhook_enqueue(event=event, tenant=tenant)
