"""Rotating what keeps spconnect's secrets: the field encryption key and the LWA client secret.

Field encryption key: with FIELD_ENCRYPTION_KEY="new,old", every key decrypts and the first one
encrypts. `encryption_key_rotate` rewrites every encrypted column under the first key, in
batches, working on the raw stored values (never through the model, so nothing is decrypted
into memory longer than one value and `save()` side effects do not run). A value already under
the first key is left alone, which makes the command resumable and a second run a no-op.

LWA client secret (Amazon rotates it every 180 days): the tenant keeps the current secret and
the previous one with its expiry; `tenant_lwa_call` tries the previous one on invalid_client
until then. `client_secret_install` installs a new one (from `set_client_secret` or Amazon's
APPLICATION_OAUTH_CLIENT_NEW_SECRET notification); `notification_ingest` reads Amazon's
notifications. Secrets never appear in events, messages, exceptions or output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, Callable

import cryptography.fernet
from django.apps import apps
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from encrypted_model_fields import fields as emf

from sellers.models import Event, Tenant

from .events import event_record
from .notifications import notify_staff

# --- Field encryption key ----------------------------------------------------------------------


class UnreadableEncryptedValue(RuntimeError):
    """A stored value no configured key can decrypt. Names the row, never the value."""

    def __init__(self, *, label: str, pk: Any, column: str):
        self.label, self.pk, self.column = label, pk, column
        super().__init__(
            f"{label} row {pk}, field {column}: no key in FIELD_ENCRYPTION_KEY can decrypt it. "
            "Add the key it was written with to the list (after the new key) and run again."
        )


def encrypted_fields() -> list[tuple[type[models.Model], list[models.Field]]]:
    """Every concrete model with encrypted columns (any django-encrypted-model-fields field)."""
    found = []
    for model in apps.get_models():
        meta = model._meta
        if meta.proxy or not meta.managed:
            continue
        columns = [f for f in meta.concrete_fields if isinstance(f, emf.EncryptedMixin)]
        if columns:
            found.append((model, columns))
    return sorted(found, key=lambda item: item[0]._meta.label)


def _configured_keys() -> list[str]:
    keys = settings.FIELD_ENCRYPTION_KEY
    return [keys] if isinstance(keys, str) else list(keys)


@dataclass
class ColumnReport:
    label: str  # "sellers.Grant.refresh_token"
    rotated: int = 0
    current: int = 0  # already under the first key
    empty: int = 0
    changed_meanwhile: int = 0  # rewritten by the app during the run (so under the first key)


@dataclass
class RotationReport:
    keys: int
    columns: list[ColumnReport] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(c.rotated for c in self.columns)

    @property
    def current(self) -> int:
        return sum(c.current for c in self.columns)


def encryption_key_rotate(
    *, batch_size: int = 500, dry_run: bool = False, on_batch: Callable[[str, int], None] | None = None
) -> RotationReport:
    """Re-encrypt every encrypted column with the first FIELD_ENCRYPTION_KEY.

    Raises UnreadableEncryptedValue (naming model, row and field) for a value no key reads; the
    batches before it are committed, so a fixed run resumes where it stopped. `dry_run` reads and
    checks everything and writes nothing.
    """
    keys = _configured_keys()
    primary = cryptography.fernet.Fernet(keys[0])
    # The library's MultiFernet, built from the same setting at import: rotate() decrypts with
    # any key and re-encrypts with the first, so nothing is ever encrypted twice.
    crypter = emf.CRYPTER
    report = RotationReport(keys=len(keys))
    quote = connection.ops.quote_name
    for model, columns in encrypted_fields():
        meta = model._meta
        table, pk_column = quote(meta.db_table), quote(meta.pk.column)
        for fld in columns:
            col = ColumnReport(label=f"{meta.label}.{fld.name}")
            report.columns.append(col)
            column = quote(fld.column)
            last_pk = None
            while True:
                # Keyset over the primary key on raw values: flat memory, one range read per batch.
                where = f"WHERE {pk_column} > %s " if last_pk is not None else ""
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT {pk_column}, {column} FROM {table} {where}ORDER BY {pk_column} LIMIT %s",
                        ([last_pk] if last_pk is not None else []) + [batch_size],
                    )
                    rows = cursor.fetchall()
                if not rows:
                    break
                last_pk = rows[-1][0]
                updates = []
                for pk, raw in rows:
                    if raw is None or raw == "":
                        col.empty += 1
                        continue
                    token = raw.encode() if isinstance(raw, str) else bytes(raw)
                    try:
                        primary.decrypt(token)
                        col.current += 1
                        continue
                    except cryptography.fernet.InvalidToken:
                        pass
                    try:
                        rotated = crypter.rotate(token).decode()
                    except cryptography.fernet.InvalidToken:
                        raise UnreadableEncryptedValue(label=meta.label, pk=pk, column=fld.name) from None
                    updates.append((pk, raw, rotated))
                if updates and not dry_run:
                    with transaction.atomic():
                        with connection.cursor() as cursor:
                            for pk, raw, rotated in updates:
                                # Conditional on the value read: a row the app rewrote meanwhile
                                # is already under the first key and must not be overwritten.
                                cursor.execute(
                                    f"UPDATE {table} SET {column} = %s WHERE {pk_column} = %s AND {column} = %s",
                                    [rotated, pk, raw],
                                )
                                if cursor.rowcount == 1:
                                    col.rotated += 1
                                else:
                                    col.changed_meanwhile += 1
                elif updates:
                    col.rotated += len(updates)
                if on_batch is not None:
                    on_batch(col.label, len(rows))
    return report


def encrypted_rows_count() -> int:
    """Rows × encrypted columns the rotation will look at (for a progress bar)."""
    return sum(model._base_manager.count() * len(columns) for model, columns in encrypted_fields())


# --- LWA client secret ---------------------------------------------------------------------------

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


# --- Amazon's notifications ----------------------------------------------------------------------

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
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, dt_timezone.utc)


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
        payload = notification.get("payload") if isinstance(notification.get("payload"), dict) else {}
        if kind == NEW_SECRET:
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
            results.append(IngestResult(kind, [t.slug for t in tenants], changed, summary))
        elif kind == SECRET_EXPIRY:
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
            results.append(IngestResult(kind, [t.slug for t in tenants], len(tenants), summary))
        else:
            raise ClientSecretError(
                f"Unsupported notification type {kind[:80]!r}; this command reads {NEW_SECRET} and {SECRET_EXPIRY}."
            )
    return results


def notification_parse(text: str | bytes) -> Any:
    """JSON from a file or stdin, with an error that never quotes the content (it holds a secret)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ClientSecretError("The notification is nested too deeply to be one of Amazon's.") from None
    except ValueError as exc:  # UnicodeDecodeError included
        raise ClientSecretError(f"The notification is not valid JSON (line {getattr(exc, 'lineno', '?')}).") from None
