"""Telling a tenant's staff that something needs them: email, and an optional signed webhook.

Both leave after the surrounding transaction commits (nothing is announced that was rolled
back, and no SMTP or HTTP call runs while a database lock is held). Neither ever carries a
token, secret or re-authorization link: subjects and bodies are written by spconnect's
services, history data never holds secrets, and everything is scrubbed once more on the way out.

Webhook receivers verify `X-Spconnect-Signature: sha256=<hex>`, the HMAC-SHA256 of
`"<X-Spconnect-Timestamp>.<raw body>"` keyed with the tenant's webhook secret, and should
refuse timestamps older than a few minutes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import timezone

from sellers import amazon
from sellers.models import Event, Tenant, TenantMembership
from sellers.validators import webhook_destination
from spconnect.logging import redact

logger = logging.getLogger(__name__)

NOTIFIED_ROLES = (TenantMembership.Role.OWNER, TenantMembership.Role.MANAGER)
WEBHOOK_MAX_ATTEMPTS = 5
WEBHOOK_RETRY_BASE_SECONDS = 60  # then 2, 4, 8 minutes


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or did not answer). Raised so django-q2 records it."""


def staff_recipients(*, tenant: Tenant) -> list[str]:
    emails = (
        TenantMembership.objects.filter(tenant=tenant, role__in=NOTIFIED_ROLES, user__is_active=True)
        .exclude(user__email="")
        .order_by("user__email")
        .values_list("user__email", flat=True)
        .distinct()
    )
    return list(emails)


def webhook_payload(*, tenant: Tenant, subject: str, body: str, event: Event | None) -> dict:
    seller = event.seller if event is not None and event.seller_id else None
    return {
        "id": str(uuid.uuid4()),
        "type": event.kind if event is not None else "notice",
        "created_at": (event.created_at if event is not None else timezone.now()).isoformat(),
        "tenant": {"slug": tenant.slug, "name": tenant.name},
        "seller": None
        if seller is None
        else {
            "id": str(seller.public_id),
            "name": seller.name,
            "region": seller.region,
            "selling_partner_id": seller.selling_partner_id,
            "status": seller.status,
        },
        "subject": redact(subject),
        "message": redact(body),
        "event": None
        if event is None
        else {"kind": event.kind, "detail": redact(event.detail), "data": event.data, "actor": event.actor},
    }


def webhook_sign(*, secret: str, timestamp: str, body: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _send_emails(subject: str, text: str, recipients: list[str]) -> None:
    send_mass_mail([(subject, text, None, [to]) for to in recipients], fail_silently=False)


def _enqueue_webhook(tenant_id: int, body: str) -> None:
    from django_q.tasks import async_task

    async_task("sellers.tasks.webhook_deliver", tenant_id, body, 1, task_name=f"webhook-{tenant_id}-{uuid.uuid4().hex[:8]}")


def notify_staff(*, tenant: Tenant, subject: str, body: str, event: Event | None = None) -> None:
    """Email the tenant's owners and managers; POST a signed JSON event to its webhook, if any."""
    subject, body = redact(subject), redact(body)
    recipients = staff_recipients(tenant=tenant)
    if recipients:
        text = render_to_string(
            "email/staff_notification.txt",
            {"tenant": tenant, "body": body, "event": event, "seller": event.seller if event is not None and event.seller_id else None,
             "site_url": settings.SITE_URL},
        )
        # robust: a mail server being down must not undo or break the change being announced.
        transaction.on_commit(partial(_send_emails, f"[spconnect] {tenant.name}: {subject}", text, recipients), robust=True)
    if tenant.webhook_url:
        if not tenant.webhook_secret:
            logger.warning("Tenant %s has a webhook URL but no webhook secret; webhook not sent.", tenant.slug)
            return
        payload = webhook_payload(tenant=tenant, subject=subject, body=body, event=event)
        transaction.on_commit(partial(_enqueue_webhook, tenant.pk, amazon.dumps(payload).decode()), robust=True)


def webhook_deliver(*, tenant_id: int, body: str, attempt: int = 1) -> str:
    """POST one signed webhook; on failure schedule the next attempt (django-q2) and raise."""
    tenant = Tenant.objects.filter(pk=tenant_id).first()
    if tenant is None or not tenant.webhook_url or not tenant.webhook_secret:
        return "skipped: the tenant has no webhook any more"
    problem, addresses = webhook_destination(tenant.webhook_url)
    if problem and "does not resolve" not in problem:
        # Saved before the rule existed, or DNS now points inside: never worth a retry.
        logger.warning("Webhook of tenant %s not sent: %s", tenant.slug, problem)
        raise WebhookDeliveryFailed(f"Webhook of {tenant.slug} refused: {problem}")
    timestamp = str(int(time.time()))
    headers = {
        "X-Spconnect-Timestamp": timestamp,
        "X-Spconnect-Signature": webhook_sign(secret=tenant.webhook_secret, timestamp=timestamp, body=body),
        "X-Spconnect-Delivery-Attempt": str(attempt),
    }
    if problem is None:
        try:
            status = amazon.webhook_post(url=tenant.webhook_url, body=body.encode(), headers=headers, addresses=addresses)
            problem = None if 200 <= status < 300 else f"answered HTTP {status}"
        except amazon.NETWORK_ERRORS as exc:
            problem = f"did not answer ({type(exc).__name__})"
    if problem is None:
        return f"delivered (attempt {attempt})"
    if attempt < WEBHOOK_MAX_ATTEMPTS:
        from django_q.models import Schedule
        from django_q.tasks import schedule

        delay = timedelta(seconds=WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        schedule(
            "sellers.tasks.webhook_deliver",
            tenant_id,
            body,
            attempt + 1,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + delay,
        )
        raise WebhookDeliveryFailed(f"Webhook of {tenant.slug} {problem}; attempt {attempt + 1} in {delay}.")
    raise WebhookDeliveryFailed(f"Webhook of {tenant.slug} {problem}; gave up after {attempt} attempts.")
