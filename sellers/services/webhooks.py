"""Webhooks: Standard Webhooks messages POSTed to a tenant's URL when something happens to its
connections or its app.

Which history events are announced, under which type and with which payload, is
`webhook_events.py`. `webhook_enqueue(event=…)` is called where such an event is recorded (by
`notify_staff`, and directly for events staff are not emailed about). The message is built after
the surrounding transaction commits, so nothing is announced that was rolled back, the payload
shows the state that transaction left, and no HTTP call runs while a database lock is held; a
django-q2 task POSTs it.

Signing is the `standardwebhooks` package's, so receivers verify with a stock library in any
language: `webhook-id` (one per message, the same on every retry: receivers dedupe on it),
`webhook-timestamp` (the attempt's time, so a retry passes a receiver's five-minute tolerance)
and `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. Secrets are Standard
Webhooks' `whsec_<base64>`, the key being the decoded bytes. A secret saved before (any other
text) keeps signing with its UTF-8 bytes as the key: for a stock library it is `whsec_` + the
base64 of that text, so no stored secret had to change.

Before each attempt the URL's host is resolved and checked again (`sellers/validators.py`) and
the request connects to the address that passed, so a name that changes its answer cannot
steer a delivery inside. A failed attempt schedules the next one, up to five.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone
from standardwebhooks import Webhook

from sellers import http
from sellers.fields import UndecryptableValue
from sellers.models import Event, Tenant
from sellers.validators import webhook_destination

from .webhook_events import webhook_event_type, webhook_message

logger = logging.getLogger(__name__)

WEBHOOK_MAX_ATTEMPTS = 5
WEBHOOK_RETRY_BASE_SECONDS = 60  # then 2, 4, 8 minutes
WEBHOOK_SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for keys of 24 to 64 bytes; generated ones are 32.
WEBHOOK_SECRET_MIN_BYTES, WEBHOOK_SECRET_MAX_BYTES = 24, 64


class WebhookDeliveryFailed(Exception):
    """The receiver did not answer 2xx (or did not answer). Raised so django-q2 records it."""


def webhook_secret_generate() -> str:
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def webhook_secret_problem(value: str) -> str | None:
    """Why `value` is not a Standard Webhooks secret a new setting may use, or None."""
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        return "A webhook secret starts with whsec_ (Standard Webhooks)."
    try:
        key = base64.b64decode(value[len(WEBHOOK_SECRET_PREFIX):], validate=True)
    except (binascii.Error, ValueError):
        return "After whsec_, a webhook secret is base64 (A-Z, a-z, 0-9, + and /, = padding)."
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        return f"A webhook secret holds {WEBHOOK_SECRET_MIN_BYTES} to {WEBHOOK_SECRET_MAX_BYTES} random bytes; this one holds {len(key)}."
    return None


def webhook_signer(secret: str) -> Webhook:
    """The signer for a tenant's stored secret (raises ValueError if it cannot be one)."""
    if secret.startswith(WEBHOOK_SECRET_PREFIX):
        if webhook_secret_problem(secret):
            raise ValueError("the stored webhook secret is not a valid whsec_ secret")
        return Webhook(secret)
    # Saved before secrets were whsec_: its bytes are the key (whsec_ + base64 of it, for receivers).
    return Webhook(secret.encode())


def webhook_headers(*, secret: str, message_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    now = now or datetime.now(UTC)
    signature = webhook_signer(secret).sign(msg_id=message_id, timestamp=now, data=body)
    return {"webhook-id": message_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": signature}


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


def _announce(event: Event, message_id: str) -> None:
    """After the commit: build the message from what the database now holds, and queue it."""
    from django_q.tasks import async_task

    message = webhook_message(event=event)
    if message is None:
        return
    body = json.dumps(message, separators=(",", ":"), sort_keys=True)
    async_task("sellers.tasks.webhook_deliver", event.tenant_id, body, 1, message_id, task_name=f"webhook-{message_id}")


def webhook_enqueue(*, event: Event, tenant: Tenant | None = None) -> None:
    """Announce a history event on the tenant's webhook, if it has one and the event's kind is
    announced, once the surrounding transaction commits."""
    if webhook_event_type(event.kind) is None:
        return
    # Whether a URL and a secret are set is asked of SQL (an empty secret is stored empty): the
    # change being announced never depends on decrypting the secret.
    if tenant is not None and tenant.pk == event.tenant_id:
        url = tenant.webhook_url
    else:
        url = Tenant.objects.filter(pk=event.tenant_id).values_list("webhook_url", flat=True).first() or ""
    if not url:
        return
    if not Tenant.objects.filter(pk=event.tenant_id).exclude(webhook_secret="").exists():
        logger.warning("Tenant %s has a webhook URL but no webhook secret; webhook not sent.", event.tenant_id)
        return
    message_id = _message_id()

    def announce() -> None:
        _announce(event, message_id)

    # robust, as for emails: a broker being down must not undo the change being announced. A
    # function, not a partial: Django names a failing robust callback by its __qualname__.
    transaction.on_commit(announce, robust=True)


def webhook_post(*, url: str, body: bytes, headers: Mapping[str, str], addresses: Sequence[str] | None = None) -> int:
    """POST a signed JSON body (to one of `addresses`, when given); returns the status code,
    raises on network errors."""
    response = http.send("POST", url, data=body, headers={"Content-Type": "application/json", **headers}, pin_addresses=addresses)
    return response.status_code


def webhook_deliver(*, tenant_id: int, body: str, attempt: int = 1, message_id: str = "") -> str:
    """POST one signed message; on failure schedule the next attempt (django-q2), with the same
    `message_id`, and raise."""
    # A task queued before messages had ids carries none: it gets one here, kept by its retries.
    message_id = message_id or _message_id()
    try:
        tenant = Tenant.objects.filter(pk=tenant_id).only("slug", "webhook_url", "webhook_secret").first()
    except UndecryptableValue:
        logger.warning("Webhook of tenant %s not sent: its secret cannot be decrypted with the configured keys.", tenant_id)
        raise WebhookDeliveryFailed(f"Webhook of tenant {tenant_id} refused: its secret cannot be decrypted.") from None
    if tenant is None or not tenant.webhook_url or not tenant.webhook_secret:
        return "skipped: the tenant has no webhook any more"
    problem, addresses = webhook_destination(tenant.webhook_url)
    if problem and "does not resolve" not in problem:
        # Saved before the rule existed, or DNS now points inside: never worth a retry.
        logger.warning("Webhook of tenant %s not sent: %s", tenant.slug, problem)
        raise WebhookDeliveryFailed(f"Webhook of {tenant.slug} refused: {problem}")
    try:
        # Signed at each attempt: the timestamp is the attempt's, the id the message's.
        headers = webhook_headers(secret=tenant.webhook_secret, message_id=message_id, body=body)
    except ValueError as exc:
        logger.warning("Webhook of tenant %s not sent: %s", tenant.slug, exc)
        raise WebhookDeliveryFailed(f"Webhook of {tenant.slug} refused: {exc}; set a new webhook secret.") from None
    headers["X-Spconnect-Delivery-Attempt"] = str(attempt)
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
            message_id,
            schedule_type=Schedule.ONCE,
            next_run=timezone.now() + delay,
        )
        raise WebhookDeliveryFailed(f"Webhook {message_id} of {tenant.slug} {problem}; attempt {attempt + 1} in {delay}.")
    raise WebhookDeliveryFailed(f"Webhook {message_id} of {tenant.slug} {problem}; gave up after {attempt} attempts.")
