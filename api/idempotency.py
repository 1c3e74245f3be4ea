"""`Idempotency-Key` for `POST /api/v1/invitations`, as Stripe does it: a retry with the same
key (from the same API key) within 24 hours gets the first answer and creates nothing; the same
key with another body is a conflict.

The record and the invitation are written in one transaction, under a unique (api key, key)
constraint: of two concurrent requests with one key, one creates and the other, once the first
commits, replays its answer.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from sellers.hashing import token_hash
from sellers.models import Invitation
from sellers.services.invitations import invitation_create

from .models import ApiKey, IdempotencyRecord

WINDOW = timedelta(hours=24)


class IdempotencyConflict(Exception):
    pass


def _digest(payload: dict) -> str:
    return token_hash(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str))


def _replay(record: IdempotencyRecord, digest: str) -> tuple[Invitation, bool]:
    if record.request_hash != digest:
        raise IdempotencyConflict(
            "This Idempotency-Key was used with a different request body in the last 24 hours; use a new key for a new request."
        )
    return record.invitation, True


def _recorded(api_key: ApiKey, key: str) -> IdempotencyRecord | None:
    return IdempotencyRecord.objects.select_related("invitation").filter(api_key=api_key, key=key).first()


def invitation_create_idempotent(
    *, api_key: ApiKey, idempotency_key: str | None, payload: dict, actor: str
) -> tuple[Invitation, bool]:
    """Create a pending seller and its invitation for the key's tenant, once per idempotency key.

    `payload`: the validated body (`name`, `email`, `region`, `days`). Returns (invitation,
    replayed). Raises IdempotencyConflict for a known key with another body.
    """

    def create() -> Invitation:
        return invitation_create(
            tenant=api_key.tenant,
            name=payload["name"],
            email=payload.get("email") or "",
            region=payload["region"],
            actor=actor,
            ttl_days=payload.get("days"),
        )

    if idempotency_key is None:
        return create(), False
    digest = _digest(payload)
    now = timezone.now()
    # Answers older than the window are forgotten (indexed on created_at: one cheap DELETE).
    IdempotencyRecord.objects.filter(created_at__lte=now - WINDOW).delete()
    existing = _recorded(api_key, idempotency_key)
    if existing is not None:
        return _replay(existing, digest)
    try:
        with transaction.atomic():
            invitation = create()
            IdempotencyRecord.objects.create(
                api_key=api_key, key=idempotency_key, request_hash=digest, invitation=invitation, created_at=now
            )
    except IntegrityError:
        # A concurrent request with this key committed first (this one's seller rolled back).
        existing = _recorded(api_key, idempotency_key)
        if existing is None:
            raise
        return _replay(existing, digest)
    return invitation, False
