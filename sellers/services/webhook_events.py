"""What a tenant's webhook says: which history events are announced, under which type, and with
which payload.

`WEBHOOK_EVENT_TYPES` is the one mapping from `Event.Kind` to a webhook event type; a kind it
does not name is never sent. The payload follows Standard Webhooks: `{"type", "timestamp",
"data"}`. For `connection.*` types `data` is the connection exactly as the agency API shows it
(`api.connections.connection_record` checked against `api.schemas.ConnectionOut`, rendered by
django-ninja's encoder), so a receiver parses one shape from both; identity reviews carry the
review and its connection; `app.credentials_rejected` carries the tenant. Never a token, secret
or link: the connection object has none, and the only free text (LWA's error) is scrubbed.
"""

from __future__ import annotations

import json
from typing import Any

from sellers.models import Event, IdentityReview, Tenant
from sellers.redaction import redact

WEBHOOK_EVENT_TYPES: dict[str, str] = {
    Event.Kind.GRANTED: "connection.created",
    Event.Kind.REAUTHORIZED: "connection.reauthorized",
    Event.Kind.PARTIALLY_GRANTED: "connection.partial",
    Event.Kind.REVOKED: "connection.revoked",
    Event.Kind.MARKED_REVOKED: "connection.revoked",
    Event.Kind.RENEWAL_DUE: "connection.expiring",
    Event.Kind.EXPIRED: "connection.expired",
    Event.Kind.REFRESH_FAILING: "connection.refresh_failing",
    Event.Kind.REFRESH_RECOVERED: "connection.refresh_recovered",
    Event.Kind.CREDENTIALS_INVALID: "app.credentials_rejected",
    Event.Kind.IDENTITY_REVIEW_OPENED: "identity_review.opened",
    Event.Kind.IDENTITY_REVIEW_APPROVED: "identity_review.approved",
    Event.Kind.IDENTITY_REVIEW_REJECTED: "identity_review.rejected",
    Event.Kind.IDENTITY_REVIEW_EXPIRED: "identity_review.expired",
}

_REVIEW_KINDS = {
    Event.Kind.IDENTITY_REVIEW_OPENED,
    Event.Kind.IDENTITY_REVIEW_APPROVED,
    Event.Kind.IDENTITY_REVIEW_REJECTED,
    Event.Kind.IDENTITY_REVIEW_EXPIRED,
}


def webhook_event_type(kind: str) -> str | None:
    """The webhook type of a history event's kind; None when such events are not announced."""
    return WEBHOOK_EVENT_TYPES.get(kind)


def _json_ready(value: Any) -> Any:
    """As the API renders it: django-ninja's encoder (ISO 8601 in UTC with milliseconds, UUIDs as text)."""
    from ninja.responses import NinjaJSONEncoder

    return json.loads(json.dumps(value, cls=NinjaJSONEncoder))


def connection_object(*, tenant_id: int, seller_id: int) -> dict | None:
    """The agency API's connection object for one seller of the tenant (None if it is gone)."""
    # Imported here: `api` builds on `sellers.services`, which must import without it.
    from api.connections import connection_record, tenant_connections
    from api.schemas import ConnectionOut
    from sellers.selectors import required_scopes

    seller = tenant_connections(tenant_id=tenant_id).filter(pk=seller_id).first()
    if seller is None:
        return None
    record = connection_record(seller, required=required_scopes(tenant_id=tenant_id))
    return _json_ready(ConnectionOut.model_validate(record).model_dump())


def review_object(*, tenant_id: int, review_public_id: str) -> dict | None:
    """An identity review: its id and state, the connection it is for and the one holding the id."""
    review = IdentityReview.objects.filter(tenant_id=tenant_id, public_id=review_public_id).only(
        "public_id", "seller_id", "holder_id", "selling_partner_id", "region", "reason", "status",
        "created_at", "expires_at", "decided_at",
    ).first()
    if review is None:
        return None
    holder = connection_object(tenant_id=tenant_id, seller_id=review.holder_id) if review.holder_id else None
    return _json_ready({
        "id": review.public_id,
        "status": review.status,
        "reason": review.reason,
        "selling_partner_id": review.selling_partner_id or None,
        "region": review.region,
        "opened_at": review.created_at,
        "expires_at": review.expires_at,
        "decided_at": review.decided_at,
        "connection": connection_object(tenant_id=tenant_id, seller_id=review.seller_id),
        "holder": holder,
    })


def app_object(*, tenant: Tenant) -> dict:
    """The tenant whose app credentials LWA refused, and what LWA said (scrubbed)."""
    return _json_ready({
        "tenant": {"id": tenant.public_id, "slug": tenant.slug, "name": tenant.name},
        "error": redact(tenant.credentials_error) or None,
        "failing_since": tenant.credentials_failing_since,
    })


def webhook_message(*, event: Event) -> dict | None:
    """`{"type", "timestamp", "data"}` for an announced event, read as the database has it now
    (after the commit that recorded it); None when the event's kind is not announced or what it
    is about is gone."""
    event_type = webhook_event_type(event.kind)
    if event_type is None:
        return None
    data: dict | None
    if event.kind in _REVIEW_KINDS:
        review_id = (event.data or {}).get("review")
        data = review_object(tenant_id=event.tenant_id, review_public_id=review_id) if review_id else None
    elif event_type.startswith("app."):
        tenant = Tenant.objects.filter(pk=event.tenant_id).only(
            "public_id", "slug", "name", "credentials_error", "credentials_failing_since"
        ).first()
        data = app_object(tenant=tenant) if tenant is not None else None
    else:
        data = connection_object(tenant_id=event.tenant_id, seller_id=event.seller_id) if event.seller_id else None
    if data is None:
        return None
    return {"type": event_type, "timestamp": _json_ready(event.created_at), "data": data}
