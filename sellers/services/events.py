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
    if tenant is not None:
        tenant_id = tenant.pk
    elif seller is not None:
        tenant_id = seller.tenant_id
    else:
        raise ValueError("An event belongs to a tenant or a seller.")
    return Event.objects.create(
        tenant_id=tenant_id, seller=seller, kind=kind, detail=detail[:2000], data=data or {}, actor=actor[:150]
    )


def actor_for_user(user) -> str:
    return f"staff:{user.get_username()}" if user is not None and user.is_authenticated else "system"
