"""The admin index dashboard: per tenant, sellers by status, required scopes held, and what the
next 30 days bring (renewals due, refreshes failing, refresh tasks lost in the last hour), drawn
as server-side SVG.

A fixed number of queries whatever the number of tenants, sellers or grants: everything is
grouped by tenant in the database (`sellers.selectors`). No token column is ever read.
The charts are drawn by `sellers.admin_html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.utils import timezone
from django.utils.safestring import SafeString

from sellers.admin_html import svg_bars
from sellers.models import Seller, Tenant
from sellers.scopes import CATALOG, short_name
from sellers.selectors import grant_figures_by_tenant, required_scopes_by_tenant, seller_counts_by_status
from sellers.tenancy import TenantAccess

# A superuser may see hundreds of tenants; the index shows the first ones and says so.
MAX_TENANTS = 12
# Buckets of the "next 30 days" chart, in days from today: [start, end).
RENEWAL_BUCKETS = ((0, 7), (7, 14), (14, 21), (21, 31))


@dataclass
class TenantDashboard:
    tenant: Tenant
    by_status: list[tuple[str, str, int]] = field(default_factory=list)  # (value, label, count)
    total: int = 0
    authorized: int = 0  # sellers with an active grant
    scopes: list[tuple[str, int]] = field(default_factory=list)  # (required scope, sellers holding it)
    renewals: list[tuple[str, int]] = field(default_factory=list)  # (bucket label, count)
    failing: int = 0
    refresh_lost: int = 0  # grants whose scheduled refresh task never reported back, last hour
    renewals_total: int = 0

    @property
    def status_chart(self) -> SafeString:
        return svg_bars(
            [(label, n, f"spc-bar-{value}") for value, label, n in self.by_status],
            title=f"Sellers of {self.tenant.name} by status",
        )

    @property
    def scope_chart(self) -> SafeString:
        return svg_bars(
            [(short_name(s), n, "spc-bar-scope") for s, n in self.scopes],
            title=f"Authorized sellers of {self.tenant.name} holding each required scope",
            maximum=max(self.authorized, 1),
            suffix=f" / {self.authorized}",
        )

    @property
    def upcoming_chart(self) -> SafeString:
        rows = [(label, n, "spc-bar-renewal") for label, n in self.renewals]
        rows.append(("Failing now", self.failing, "spc-bar-failing"))
        rows.append(("Refresh tasks lost, 1 h", self.refresh_lost, "spc-bar-failing"))
        return svg_bars(rows, title=f"Renewals due, failing refreshes and lost refresh tasks of {self.tenant.name}")


def dashboards_for(access: TenantAccess, *, now=None) -> tuple[list[TenantDashboard], int]:
    """(dashboards of the first MAX_TENANTS visible tenants, number of visible tenants)."""
    now = now or timezone.now()
    tenants_qs = access.tenants().only("id", "name", "slug").order_by("name", "id")
    tenants = list(tenants_qs[:MAX_TENANTS])
    if not tenants:
        return [], 0
    visible_count = len(tenants) if len(tenants) < MAX_TENANTS else tenants_qs.count()
    ids = [t.id for t in tenants]
    counts = seller_counts_by_status(tenant_ids=ids)
    required = required_scopes_by_tenant(tenant_ids=ids)
    figures = grant_figures_by_tenant(tenant_ids=ids, now=now, renewal_buckets=RENEWAL_BUCKETS)
    return [
        _board(tenant, counts.get(tenant.id, {}), required.get(tenant.id, []), figures.get(tenant.id, {}))
        for tenant in tenants
    ], visible_count


def _board(tenant: Tenant, by_status: dict[str, int], required: list[str], row: dict[str, int]) -> TenantDashboard:
    scope_index = {scope: i for i, scope in enumerate(CATALOG)}
    renewals = [
        (f"Renewal in {start}–{end - 1} d", row.get(f"renewal_{i}", 0)) for i, (start, end) in enumerate(RENEWAL_BUCKETS)
    ]
    return TenantDashboard(
        tenant=tenant,
        by_status=[(value, label, by_status.get(value, 0)) for value, label in Seller.Status.choices],
        total=sum(by_status.values()),
        authorized=row.get("authorized", 0),
        failing=row.get("failing", 0),
        refresh_lost=row.get("refresh_lost", 0),
        scopes=[(s, row.get(f"scope_{scope_index[s]}", 0)) for s in required],
        renewals=renewals,
        renewals_total=sum(n for _, n in renewals),
    )
