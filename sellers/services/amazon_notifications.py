"""Amazon's inbound notifications about the app's LWA client secret.

`notification_ingest` reads APPLICATION_OAUTH_CLIENT_NEW_SECRET (installs the new secret) and
APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY (records the date, warns the owners), bare or wrapped in
the SQS and SNS envelopes they are delivered in, and routes each to the tenants with its LWA
client id. Anything else raises ClientSecretError, whose message never quotes the document (it
holds a secret). Staff emails are `services/notifications.py`, not this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sellers.models import Tenant

from .client_secrets import ClientSecretError, client_secret_expiry_record, client_secret_install

NEW_SECRET = "APPLICATION_OAUTH_CLIENT_NEW_SECRET"
SECRET_EXPIRY = "APPLICATION_OAUTH_CLIENT_SECRET_EXPIRY"


@dataclass
class IngestResult:
    notification_type: str
    tenants: list[str]
    changed: int
    summary: str


def _timestamp(value: Any, name: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = parse_datetime(value) if isinstance(value, str) else None
    except ValueError:  # well-formed but impossible, e.g. February 30th
        parsed = None
    if parsed is None:
        raise ClientSecretError(f"{name} is not an ISO 8601 time.")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)


# An SQS batch holding an SNS envelope holding the notification is three levels; more is not Amazon.
MAX_ENVELOPES = 4


def _unwrap(document: Any, depth: int = 0) -> list[dict]:
    """The notifications in a document: one notification, an SQS message ({"Body": "…"}) or an
    SQS batch as a Lambda receives it ({"Records": [{"body": "…"}]})."""
    if depth > MAX_ENVELOPES:
        raise ClientSecretError("The notification is wrapped in too many envelopes.")
    if isinstance(document, dict) and isinstance(document.get("Records"), list):
        found: list[dict] = []
        for record in document["Records"]:
            found.extend(_unwrap(record, depth + 1))
        return found
    if isinstance(document, dict) and "notificationType" not in document:
        for key in ("Body", "body", "Message"):
            if isinstance(document.get(key), str):
                try:
                    inner = json.loads(document[key])
                except (ValueError, RecursionError):
                    raise ClientSecretError(f"The message's {key} is not JSON.") from None
                return _unwrap(inner, depth + 1)
    if isinstance(document, dict) and isinstance(document.get("notificationType"), str):
        return [document]
    raise ClientSecretError("This is not an SP-API notification (no notificationType).")


def _tenants_for(client_id: Any) -> list[Tenant]:
    if not isinstance(client_id, str) or not client_id:
        raise ClientSecretError("The notification names no clientId.")
    tenants = list(Tenant.objects.filter(client_id=client_id).order_by("slug"))
    if not tenants:
        raise ClientSecretError(f"No tenant has the LWA client id {client_id}.")
    return tenants


def notification_ingest(*, document: Any, actor: str = "amazon") -> list[IngestResult]:
    """Apply Amazon's client-secret notifications. Raises ClientSecretError for anything else."""
    results = []
    for notification in _unwrap(document):
        kind = notification["notificationType"]
        payload: dict = notification["payload"] if isinstance(notification.get("payload"), dict) else {}
        if kind == NEW_SECRET:
            results.append(_new_secret_apply(payload, actor=actor))
        elif kind == SECRET_EXPIRY:
            results.append(_secret_expiry_apply(payload, actor=actor))
        else:
            raise ClientSecretError(
                f"Unsupported notification type {kind[:80]!r}; this command reads {NEW_SECRET} and {SECRET_EXPIRY}."
            )
    return results


def _new_secret_apply(payload: dict, *, actor: str) -> IngestResult:
    body = payload.get("applicationOAuthClientNewSecret")
    if not isinstance(body, dict):
        raise ClientSecretError("payload.applicationOAuthClientNewSecret is missing.")
    tenants = _tenants_for(body.get("clientId"))
    secret = body.get("newClientSecret")
    if not isinstance(secret, str):
        raise ClientSecretError("payload.applicationOAuthClientNewSecret.newClientSecret is missing.")
    expires_at = _timestamp(body.get("newClientSecretExpiryTime"), "newClientSecretExpiryTime")
    old_until = _timestamp(body.get("oldClientSecretExpiryTime"), "oldClientSecretExpiryTime")
    changed = sum(
        client_secret_install(
            tenant=t, secret=secret, expires_at=expires_at, previous_valid_until=old_until,
            actor=actor, source="Amazon notification",
        )
        for t in tenants
    )
    summary = (
        f"new client secret installed for {', '.join(t.slug for t in tenants)}"
        if changed
        else f"the client secret of {', '.join(t.slug for t in tenants)} was already current; nothing changed"
    )
    if old_until is not None and changed:
        summary += f"; the previous one stays valid until {old_until:%Y-%m-%d %H:%M} UTC"
    return IngestResult(NEW_SECRET, [t.slug for t in tenants], changed, summary)


def _secret_expiry_apply(payload: dict, *, actor: str) -> IngestResult:
    body = payload.get("applicationOAuthClientSecretExpiry")
    if not isinstance(body, dict):
        raise ClientSecretError("payload.applicationOAuthClientSecretExpiry is missing.")
    tenants = _tenants_for(body.get("clientId"))
    expires_at = _timestamp(body.get("clientSecretExpiryTime"), "clientSecretExpiryTime")
    if expires_at is None:
        raise ClientSecretError("payload.applicationOAuthClientSecretExpiry.clientSecretExpiryTime is missing.")
    reason = str(body.get("clientSecretExpiryReason") or "")[:64]
    for t in tenants:
        client_secret_expiry_record(tenant=t, expires_at=expires_at, reason=reason, actor=actor)
    summary = f"client secret of {', '.join(t.slug for t in tenants)} expires {expires_at:%Y-%m-%d %H:%M} UTC; owners warned"
    return IngestResult(SECRET_EXPIRY, [t.slug for t in tenants], len(tenants), summary)


def notification_parse(text: str | bytes) -> Any:
    """JSON from a file or stdin, with an error that never quotes the content (it holds a secret)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ClientSecretError("The notification is nested too deeply to be one of Amazon's.") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise ClientSecretError(f"The notification is not valid JSON (line {getattr(exc, 'lineno', '?')}).") from None
