"""One record per seller, for `export_grants` and the admin's CSV export.

Streams in chunks with a fixed number of queries per chunk; never reads a token. Writing the
records as CSV goes through `sellers.csv_safety`.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet

from sellers.models import Grant, Seller
from sellers.selectors import required_scopes_by_tenant

from .status import missing_required_scopes

FIELDS = [
    "tenant",
    "name",
    "region",
    "selling_partner_id",
    "status",
    "granted_scopes",
    "missing_scopes",
    "scopes_confirmed",
    "scopes_source",
    "access_token_expires_at",
    "authorized_at",
]
# Where `granted_scopes` come from: Amazon's token response named them, or it named none (real
# Amazon) and they are what the app's registered roles (or scopes) give.
SOURCE_AMAZON = "confirmed by Amazon"
SOURCE_REGISTRATION = "from the app's registration"


def csv_row(record: dict) -> dict:
    """A record as one CSV row, the same from `export_grants --format csv` and the admin's export:
    scopes space-separated, `scopes_confirmed` as yes/no."""
    return {
        **record,
        "granted_scopes": " ".join(record["granted_scopes"]),
        "missing_scopes": " ".join(record["missing_scopes"]),
        "scopes_confirmed": "yes" if record["scopes_confirmed"] else "no",
    }


def seller_records(sellers: QuerySet[Seller], *, chunk_size: int = 2000) -> Iterator[dict]:
    """Yield export records. Grant columns are read with .only() so tokens are never decrypted."""
    sellers = sellers.select_related("tenant").order_by("tenant__slug", "name", "id")
    required = required_scopes_by_tenant(tenant_ids=sellers.values_list("tenant_id", flat=True).distinct())
    grant_fields = (
        "seller_id",
        "granted_scopes",
        "refused_scopes",
        "scopes_confirmed",
        "access_token_expires_at",
        "authorized_at",
        "status",
    )
    # Keyset pagination would need a unique sort key; the id list is cheap and keeps memory flat.
    ids = list(sellers.values_list("id", flat=True))
    for start in range(0, len(ids), chunk_size):
        chunk_ids = ids[start : start + chunk_size]
        chunk = list(sellers.filter(id__in=chunk_ids))
        grants = {
            g.seller_id: g
            for g in Grant.objects.filter(seller_id__in=chunk_ids).only(*grant_fields)
        }
        for seller in chunk:
            grant = grants.get(seller.id)
            yield {
                "tenant": seller.tenant.slug,
                "name": seller.name,
                "region": seller.region,
                "selling_partner_id": seller.selling_partner_id,
                "status": seller.status,
                "granted_scopes": list(grant.effective_scopes) if grant else [],
                "missing_scopes": missing_required_scopes(grant=grant, required=required.get(seller.tenant_id, [])),
                "scopes_confirmed": bool(grant and grant.scopes_confirmed),
                "scopes_source": (SOURCE_AMAZON if grant.scopes_confirmed else SOURCE_REGISTRATION) if grant else "",
                "access_token_expires_at": grant.access_token_expires_at.isoformat()
                if grant and grant.access_token_expires_at and grant.status == Grant.Status.ACTIVE
                else None,
                "authorized_at": grant.authorized_at.isoformat() if grant else None,
            }
