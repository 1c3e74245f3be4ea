"""The admin index dashboard, per tenant: sellers by status, the onboarding funnel of the last 30
days, the sellers that need attention now with their next step, required scopes held, and what
the next 30 days bring (renewals due, refreshes failing, refresh tasks lost in the last hour).

Every count links to the sellers list filtered to exactly the sellers it counts (the counts
and the list filters share their selectors). A fixed number of queries whatever the number of
tenants, sellers or grants: everything is grouped by tenant in the database
(`sellers.selectors`). No token column is ever read. The bars are drawn by `sellers.admin_html`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from sellers.admin.guidance import next_step
from sellers.admin_html import link_bars, scope_label, when
from sellers.models import Event, Seller, Tenant
from sellers.scopes import CATALOG
from sellers.selectors import (
    ATTENTION_RENEWAL_DAYS,
    ATTENTION_STATUSES,
    FUNNEL_DAYS,
    FunnelStep,
    attention_counts_by_tenant,
    funnel_by_tenant,
    grant_figures_by_tenant,
    required_scopes_by_tenant,
    seller_counts_by_status,
    sellers_needing_attention,
)
from sellers.tenancy import TenantAccess

# A superuser may see hundreds of tenants; the index shows the first ones and says so.
MAX_TENANTS = 12
# Buckets of the "next 30 days" chart, in days from today: [start, end). The first is the
# "Needs attention" renewal window.
RENEWAL_BUCKETS = ((0, ATTENTION_RENEWAL_DAYS), (7, 14), (14, 21), (21, 31))
# Sellers named under "Needs attention" per tenant; the counts beside them cover all.
ATTENTION_SHOWN = 8


@dataclass
class Attention:
    seller: Seller
    label: str  # the status, or "Renewal due"
    css: str
    step: str
    url: str


@dataclass
class TenantDashboard:
    tenant: Tenant
    list_url: str  # the sellers list of this tenant; `link(**filters)` narrows it
    by_status: list[tuple[str, str, int]] = field(default_factory=list)  # (value, label, count)
    total: int = 0
    authorized: int = 0  # sellers with an active grant
    scopes: list[tuple[str, int]] = field(default_factory=list)  # (required scope, sellers holding it)
    renewals: list[tuple[str, int]] = field(default_factory=list)  # (bucket label, count)
    failing: int = 0
    refresh_lost: int = 0  # grants whose scheduled refresh task never reported back, last hour
    renewals_total: int = 0
    funnel: list[tuple[str, str, int]] = field(default_factory=list)  # (step, label, count)
    attention: list[Attention] = field(default_factory=list)
    attention_counts: list[tuple[str, int, str]] = field(default_factory=list)  # (label, count, url)

    def link(self, **params: str) -> str:
        return f"{self.list_url}&{urlencode(params)}" if "?" in self.list_url else f"{self.list_url}?{urlencode(params)}"

    @property
    def attention_total(self) -> int:
        return sum(n for _, n, _ in self.attention_counts)

    @property
    def status_chart(self) -> SafeString:
        return link_bars(
            [(label, n, f"spc-bar-{value}", self.link(status__exact=value)) for value, label, n in self.by_status],
            title=f"Sellers of {self.tenant.name} by status",
        )

    @property
    def funnel_chart(self) -> SafeString:
        return link_bars(
            [(label, n, f"spc-bar-{step}", self.link(funnel=step)) for step, label, n in self.funnel],
            title=f"Sellers of {self.tenant.name} invited in the last {FUNNEL_DAYS} days, by how far they got",
        )

    @property
    def scope_chart(self) -> SafeString:
        return link_bars(
            [(scope_label(s), n, "spc-bar-scope", self.link(granted=s)) for s, n in self.scopes],
            title=f"Authorized sellers of {self.tenant.name} holding each required scope",
            maximum=max(self.authorized, 1),
            suffix=f" / {self.authorized}",
        )

    @property
    def upcoming_chart(self) -> SafeString:
        rows = [(label, n, "spc-bar-renewal", self.link(renewal=f"d{start}-{end}"))
                for (label, n), (start, end) in zip(self.renewals, RENEWAL_BUCKETS, strict=True)]
        rows.append(("Failing now", self.failing, "spc-bar-failing", self.link(status__exact=Seller.Status.FAILING)))
        return link_bars(rows, title=f"Renewals due and failing refreshes of {self.tenant.name}")


RECENT_EVENTS = 10


@dataclass(frozen=True)
class RecentEvent:
    when: str
    what: str  # the kind, in words
    seller_id: int | None
    name: str  # the seller's, else the tenant's


def recent_history(access: TenantAccess) -> list[RecentEvent]:
    """The newest history events of the tenants the user may see (Django's "Recent actions" only
    lists edits made in the admin; sellers' steps, Amazon's answers and commands are here)."""
    events = (
        access.scope(Event.objects.all(), "tenant")
        .select_related("seller", "tenant")
        .only("id", "kind", "created_at", "seller__id", "seller__name", "tenant__id", "tenant__name")
        .order_by("-created_at", "-id")[:RECENT_EVENTS]
    )
    return [
        RecentEvent(when(e.created_at), e.get_kind_display(), e.seller_id, e.seller.name if e.seller else e.tenant.name)
        for e in events
    ]


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
    funnels = funnel_by_tenant(tenant_ids=ids, now=now)
    renewals_soon = attention_counts_by_tenant(tenant_ids=ids, now=now)
    attention: dict[int, list[Seller]] = {}
    for seller in sellers_needing_attention(tenant_ids=ids, now=now, per_tenant=ATTENTION_SHOWN):
        attention.setdefault(seller.tenant_id, []).append(seller)
    changelist = reverse("admin:sellers_seller_changelist")
    boards = []
    for tenant in tenants:
        # The tenant filter exists only for staff of several tenants; for the others the list
        # already shows just their tenant.
        list_url = f"{changelist}?{urlencode({'tenant': tenant.id})}" if access.is_multi_tenant else changelist
        board = _board(tenant, list_url, counts.get(tenant.id, {}), required.get(tenant.id, []), figures.get(tenant.id, {}))
        board.funnel = [(step, label, funnels.get(tenant.id, {}).get(step, 0)) for step, label in FunnelStep.choices]
        by_status = counts.get(tenant.id, {})
        board.attention_counts = [
            (Seller.Status(s).label, by_status.get(s, 0), board.link(status__exact=s)) for s in ATTENTION_STATUSES
        ]
        board.attention_counts.append((
            f"Renewal due within {ATTENTION_RENEWAL_DAYS} days", renewals_soon.get(tenant.id, 0),
            board.link(status__exact=Seller.Status.ACTIVE, renewal=f"d0-{ATTENTION_RENEWAL_DAYS}"),
        ))
        board.attention = [_attention(seller, now=now) for seller in attention.get(tenant.id, [])]
        boards.append(board)
    return boards, visible_count


def _attention(seller: Seller, *, now) -> Attention:
    url = reverse("admin:sellers_seller_change", args=[seller.pk])
    if seller.status == Seller.Status.ACTIVE:  # in the list for its renewal
        authorized = getattr(seller, "authorized_at", None)
        due = authorized + timedelta(days=settings.SPCONNECT_RENEWAL_DAYS) if authorized is not None else None
        return Attention(seller, "Renewal due", "renewal", next_step(seller.status, renewal_due=due), url)
    return Attention(seller, seller.get_status_display(), seller.status, next_step(seller.status), url)


def _board(
    tenant: Tenant, list_url: str, by_status: dict[str, int], required: list[str], row: dict[str, int]
) -> TenantDashboard:
    scope_index = {scope: i for i, scope in enumerate(CATALOG)}
    renewals = [
        (f"Renewal in {start}–{end - 1} d", row.get(f"renewal_{i}", 0)) for i, (start, end) in enumerate(RENEWAL_BUCKETS)
    ]
    return TenantDashboard(
        tenant=tenant,
        list_url=list_url,
        by_status=[(value, label, by_status.get(value, 0)) for value, label in Seller.Status.choices],
        total=sum(by_status.values()),
        authorized=row.get("authorized", 0),
        failing=by_status.get(Seller.Status.FAILING, 0),
        refresh_lost=row.get("refresh_lost", 0),
        scopes=[(s, row.get(f"scope_{scope_index[s]}", 0)) for s in required],
        renewals=renewals,
        renewals_total=sum(n for _, n in renewals),
    )
