"""One record per seller, for `export_grants`, the admin's CSV export and campaigns.

Streams in chunks with a fixed number of queries per chunk; never reads a token.
"""

from __future__ import annotations

import csv
from typing import Iterator

from django.db.models import QuerySet

from sellers.models import Grant, ScopeRequirement, Seller
from sellers.scopes import CATALOG

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
    "access_token_expires_at",
    "authorized_at",
]


def required_scopes_by_tenant(tenant_ids) -> dict[int, list[str]]:
    out: dict[int, set[str]] = {}
    for tenant_id, scope in ScopeRequirement.objects.filter(
        tenant_id__in=list(tenant_ids), kind=ScopeRequirement.Kind.REQUIRED
    ).values_list("tenant_id", "scope"):
        out.setdefault(tenant_id, set()).add(scope)
    return {tid: [s for s in CATALOG if s in scopes] for tid, scopes in out.items()}


def seller_records(sellers: QuerySet[Seller], *, chunk_size: int = 2000) -> Iterator[dict]:
    """Yield export records. Grant columns are read with .only() so tokens are never decrypted."""
    sellers = sellers.select_related("tenant").order_by("tenant__slug", "name", "id")
    required = required_scopes_by_tenant(sellers.values_list("tenant_id", flat=True).distinct())
    grant_fields = ("seller_id", "granted_scopes", "refused_scopes", "scopes_confirmed", "access_token_expires_at", "authorized_at", "status")
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
                "access_token_expires_at": grant.access_token_expires_at.isoformat() if grant and grant.access_token_expires_at and grant.status == Grant.Status.ACTIVE else None,
                "authorized_at": grant.authorized_at.isoformat() if grant else None,
            }


# Spreadsheet programs run a cell starting with one of these as a formula; seller names are
# typed by staff and sellers, so every CSV we write defuses them.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class SafeCsvWriter:
    """csv.writer that neutralises formula injection in every cell."""

    def __init__(self, stream):
        self._writer = csv.writer(stream)

    def writerow(self, row) -> None:
        self._writer.writerow([csv_cell(v) for v in row])


class SafeDictWriter(csv.DictWriter):
    def writerow(self, rowdict):
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})
