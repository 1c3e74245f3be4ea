"""A tenant's scope requirements changed: every seller's status is re-derived at once.

Adding a required scope makes the sellers who lack it `partial` immediately (and removing one
may make them `active`), rather than at their next refresh.
"""

from __future__ import annotations

from django.db import transaction

from sellers.models import Event, Grant, Seller, Tenant
from sellers.selectors import required_scopes

from .events import event_record
from .status import seller_status_sync

# Grant columns the status needs; tokens are never read (no decryption, nothing to leak).
STATUS_GRANT_FIELDS = ("id", "seller_id", "status", "authorized_at", "failing_since", "granted_scopes", "refused_scopes")


@transaction.atomic
def tenant_requirements_changed(
    *, tenant: Tenant, actor: str = "system", previous_required: list[str] | None = None, chunk_size: int = 2000
) -> int:
    """Re-sync the status of the tenant's authorized sellers; returns how many changed status.

    Reads the required scopes once and the grants in chunks with `.only()`, so a seller whose
    status does not move costs no query; each one that moves gets its own STATUS_CHANGED event.
    One REQUIREMENTS_CHANGED event on the tenant says what changed and how many sellers moved.
    """
    required = required_scopes(tenant_id=tenant.pk)
    changed = 0
    became: dict[str, int] = {}
    seller_ids = list(
        Seller.objects.filter(tenant=tenant, grant__isnull=False).order_by("id").values_list("id", flat=True)
    )
    for start in range(0, len(seller_ids), chunk_size):
        chunk = seller_ids[start : start + chunk_size]
        sellers = Seller.objects.filter(id__in=chunk).only("id", "tenant_id", "status", "name")
        grants = {g.seller_id: g for g in Grant.objects.filter(seller_id__in=chunk).only(*STATUS_GRANT_FIELDS)}
        for seller in sellers:
            old = seller.status
            new = seller_status_sync(
                seller=seller,
                grant=grants[seller.id],
                required=required,
                cause="the tenant's required scopes changed",
                actor=actor,
            )
            if new != old:
                changed += 1
                became[new] = became.get(new, 0) + 1

    detail = "Required scopes: " + (", ".join(required) or "none") + f". {changed} seller(s) changed status."
    data = {"required": required, "changed": changed, "became": became}
    if previous_required is not None:
        data["added"] = [s for s in required if s not in previous_required]
        data["removed"] = [s for s in previous_required if s not in required]
    event_record(tenant=tenant, kind=Event.Kind.REQUIREMENTS_CHANGED, detail=detail, data=data, actor=actor)
    return changed
