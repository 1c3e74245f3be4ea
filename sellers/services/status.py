"""Seller status: derived from the grant, the tenant's required scopes and the clock.

Stored on the seller (so lists and filters are one indexed query) and recomputed by
`seller_status_sync` whenever one of its inputs changes; the renewal sweep recomputes sellers
whose authorization crossed 365 days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from sellers.models import Event, Grant, ScopeRequirement, Seller

from .events import event_record


def missing_required_scopes(*, grant: Grant | None, required: list[str]) -> list[str]:
    have = set(grant.effective_scopes) if grant is not None else set()
    return [s for s in required if s not in have]


def seller_status_compute(
    *, grant: Grant | None, required: list[str], now: datetime | None = None
) -> str:
    """Precedence: revoked > expired > failing > partial > active; pending without a grant."""
    now = now or timezone.now()
    if grant is None:
        return Seller.Status.PENDING
    if grant.status == Grant.Status.REVOKED:
        return Seller.Status.REVOKED
    if grant.authorized_at + timedelta(days=settings.SPCONNECT_RENEWAL_DAYS) <= now:
        return Seller.Status.EXPIRED
    if grant.failing_since is not None:
        return Seller.Status.FAILING
    if missing_required_scopes(grant=grant, required=required):
        return Seller.Status.PARTIAL
    return Seller.Status.ACTIVE


def required_scopes_for(tenant_id: int) -> list[str]:
    from sellers.scopes import CATALOG

    wanted = set(
        ScopeRequirement.objects.filter(tenant_id=tenant_id, kind=ScopeRequirement.Kind.REQUIRED).values_list(
            "scope", flat=True
        )
    )
    return [s for s in CATALOG if s in wanted]


def seller_status_sync(
    *,
    seller: Seller,
    grant: Grant | None = None,
    required: list[str] | None = None,
    cause: str = "",
    actor: str = "system",
    record: bool = True,
) -> str:
    """Recompute and store the seller's status; append a STATUS_CHANGED event when it moved.

    Callers that already wrote a more specific event (granted, revoked, …) pass record=False.
    """
    if grant is None:
        # No token is needed for a status, and a grant that no key decrypts must still get one
        # (marking it revoked is the way out when its key is lost).
        grant = Grant.objects.filter(seller=seller).defer("refresh_token", "access_token", "mws_auth_token").first()
    if required is None:
        required = required_scopes_for(seller.tenant_id)
    new = seller_status_compute(grant=grant, required=required)
    old = seller.status
    if new != old:
        Seller.objects.filter(pk=seller.pk).update(status=new, updated_at=timezone.now())
        seller.status = new
        if record:
            event_record(
                seller=seller,
                kind=Event.Kind.STATUS_CHANGED,
                detail=f"{old} → {new}" + (f": {cause}" if cause else ""),
                data={"from": old, "to": new},
                actor=actor,
            )
    return new
