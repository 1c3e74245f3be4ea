"""Webhooks: a signed JSON event POSTed to a tenant's URL whenever its staff are told something.

`notify_staff` calls `webhook_enqueue`; the POST leaves from a django-q2 task after the
surrounding transaction commits (nothing is announced that was rolled back, and no HTTP call
runs while a database lock is held). A payload never carries a token, secret or
re-authorization link, and its texts are scrubbed once more on the way out.

Receivers verify `X-Spconnect-Signature: sha256=<hex>`, the HMAC-SHA256 of
`"<X-Spconnect-Timestamp>.<raw body>"` keyed with the tenant's webhook secret, and should
refuse timestamps older than a few minutes.

Before each attempt the URL's host is resolved and checked again (`sellers/validators.py`) and
the request connects to the address that passed, so a name that changes its answer cannot
steer a delivery inside. A failed attempt schedules the next one, up to five.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from functools import partial

from django.db import transaction
from django.utils import timezone

from sellers import http
from sellers.models import Event, Tenant
from sellers.redaction import redact
from sellers.validators import webhook_destination

logger = logging.getLogger(__name__)

WEBHOOK_MAX_ATTEMPTS = 5
WEBHOOK_RETRY_BASE_SECONDS = 60  # then 2, 4, 8 minutes


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or did not answer). Raised so django-q2 records it."""


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


def _enqueue_webhook(tenant_id: int, body: str) -> None:
    from django_q.tasks import async_task

    async_task("sellers.tasks.webhook_deliver", tenant_id, body, 1, task_name=f"webhook-{tenant_id}-{uuid.uuid4().hex[:8]}")


def webhook_enqueue(*, tenant: Tenant, subject: str, body: str, event: Event | None = None) -> None:
    """Queue a signed JSON event for the tenant's webhook, if it has one, once the transaction commits."""
    if not tenant.webhook_url:
        return
    if not tenant.webhook_secret:
        logger.warning("Tenant %s has a webhook URL but no webhook secret; webhook not sent.", tenant.slug)
        return
    payload = webhook_payload(tenant=tenant, subject=subject, body=body, event=event)
    text = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    # robust, as for emails: a broker being down must not undo the change being announced.
    transaction.on_commit(partial(_enqueue_webhook, tenant.pk, text), robust=True)


def webhook_post(*, url: str, body: bytes, headers: Mapping[str, str], addresses: Sequence[str] | None = None) -> int:
    """POST a signed JSON body (to one of `addresses`, when given); returns the status code,
    raises on network errors."""
    response = http.send("POST", url, data=body, headers={"Content-Type": "application/json", **headers}, pin_addresses=addresses)
    return response.status_code


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
            status = webhook_post(url=tenant.webhook_url, body=body.encode(), headers=headers, addresses=addresses)
            problem = None if 200 <= status < 300 else f"answered HTTP {status}"
        except http.NETWORK_ERRORS as exc:
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
