from __future__ import annotations

from typing import Any

from sellers.models import Event, Seller, Tenant


def event_record(
    *,
    kind: str,
    seller: Seller | None = None,
    tenant: Tenant | None = None,
    detail: str = "",
    data: dict[str, Any] | None = None,
    actor: str = "system",
) -> Event:
    """Append one history event (tenant taken from the seller when not given).

    Never pass a token, secret or authorization code in detail or data.
    """
    if tenant is None and seller is None:
        raise ValueError("An event belongs to a tenant or a seller.")
    tenant_id = tenant.pk if tenant is not None else seller.tenant_id
    return Event.objects.create(
        tenant_id=tenant_id, seller=seller, kind=kind, detail=detail[:2000], data=data or {}, actor=actor[:150]
    )


def actor_for_user(user) -> str:
    return f"staff:{user.get_username()}" if user is not None and user.is_authenticated else "system"
