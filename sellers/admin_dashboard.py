"""The admin index dashboard: per tenant, sellers by status, required scopes held, and what the
next 30 days bring (renewals due, refreshes failing), drawn as server-side SVG.

A fixed number of queries whatever the number of tenants, sellers or grants: everything is
grouped by tenant in the database. No token column is ever read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from sellers.models import Grant, ScopeRequirement, Seller, Tenant
from sellers.scopes import CATALOG, short_name
from sellers.tenancy import TenantAccess

# A superuser may see hundreds of tenants; the index shows the first ones and says so.
MAX_TENANTS = 12
# Buckets of the "next 30 days" chart, in days from today: [start, end).
RENEWAL_BUCKETS = ((0, 7), (7, 14), (14, 21), (21, 31))


def json_list_has_q(path: str, value: str) -> Q:
    """`value` is an element of the JSON list at `path`, on SQLite and PostgreSQL alike.

    `__contains` on a JSONField means "JSON containment" on PostgreSQL but is not supported on
    SQLite; a case-insensitive match of the quoted, JSON-encoded value on the column's text
    works on both. Scope names never contain one another once quoted.
    """
    return Q(**{f"{path}__icontains": json.dumps(value)})


def scope_held_q(scope: str, prefix: str = "") -> Q:
    """An active grant whose effective scopes (granted, not refused by Amazon) include `scope`."""
    return (
        Q(**{f"{prefix}status": Grant.Status.ACTIVE})
        & json_list_has_q(f"{prefix}granted_scopes", scope)
        & ~json_list_has_q(f"{prefix}refused_scopes", scope)
    )


@dataclass
class TenantDashboard:
    tenant: Tenant
    by_status: list[tuple[str, str, int]] = field(default_factory=list)  # (value, label, count)
    total: int = 0
    authorized: int = 0  # sellers with an active grant
    scopes: list[tuple[str, int]] = field(default_factory=list)  # (required scope, sellers holding it)
    renewals: list[tuple[str, int]] = field(default_factory=list)  # (bucket label, count)
    failing: int = 0
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
        return svg_bars(rows, title=f"Renewals due and failing refreshes of {self.tenant.name}")


def dashboards_for(access: TenantAccess, *, now=None) -> tuple[list[TenantDashboard], int]:
    """(dashboards of the first MAX_TENANTS visible tenants, number of visible tenants)."""
    now = now or timezone.now()
    tenants_qs = access.tenants().only("id", "name", "slug").order_by("name", "id")
    tenants = list(tenants_qs[:MAX_TENANTS])
    if not tenants:
        return [], 0
    visible_count = len(tenants) if len(tenants) < MAX_TENANTS else tenants_qs.count()
    ids = [t.id for t in tenants]
    boards = {t.id: TenantDashboard(tenant=t) for t in tenants}

    counts: dict[int, dict[str, int]] = {}
    for tenant_id, status, n in (
        Seller.objects.filter(tenant_id__in=ids).values_list("tenant_id", "status").annotate(n=Count("id")).order_by()
    ):
        counts.setdefault(tenant_id, {})[status] = n

    required: dict[int, list[str]] = {}
    for tenant_id, scope in ScopeRequirement.objects.filter(
        tenant_id__in=ids, kind=ScopeRequirement.Kind.REQUIRED
    ).values_list("tenant_id", "scope"):
        required.setdefault(tenant_id, []).append(scope)

    renewal_days = settings.SPCONNECT_RENEWAL_DAYS
    aggregates = {
        "authorized": Count("id", filter=Q(status=Grant.Status.ACTIVE)),
        "failing": Count("id", filter=Q(status=Grant.Status.ACTIVE, failing_since__isnull=False)),
    }
    for i, scope in enumerate(CATALOG):
        aggregates[f"scope_{i}"] = Count("id", filter=scope_held_q(scope))
    for i, (start, end) in enumerate(RENEWAL_BUCKETS):
        # Renewal is due at authorized_at + 365 days; a due date in [now+start, now+end).
        aggregates[f"renewal_{i}"] = Count(
            "id",
            filter=Q(
                status=Grant.Status.ACTIVE,
                authorized_at__gte=now + timedelta(days=start - renewal_days),
                authorized_at__lt=now + timedelta(days=end - renewal_days),
            ),
        )
    grant_rows = {
        row["seller__tenant_id"]: row
        for row in Grant.objects.filter(seller__tenant_id__in=ids)
        .values("seller__tenant_id")
        .annotate(**aggregates)
        .order_by()
    }

    scope_index = {scope: i for i, scope in enumerate(CATALOG)}
    for tenant_id, board in boards.items():
        by_status = counts.get(tenant_id, {})
        board.by_status = [(value, label, by_status.get(value, 0)) for value, label in Seller.Status.choices]
        board.total = sum(by_status.values())
        row = grant_rows.get(tenant_id, {})
        board.authorized = row.get("authorized", 0)
        board.failing = row.get("failing", 0)
        wanted = set(required.get(tenant_id, []))
        board.scopes = [(s, row.get(f"scope_{scope_index[s]}", 0)) for s in CATALOG if s in wanted]
        board.renewals = [
            (f"Renewal in {start}–{end - 1} d", row.get(f"renewal_{i}", 0))
            for i, (start, end) in enumerate(RENEWAL_BUCKETS)
        ]
        board.renewals_total = sum(n for _, n in board.renewals)
    return [boards[t.id] for t in tenants], visible_count


def svg_bars(
    rows: list[tuple[str, int, str]], *, title: str, maximum: int | None = None, suffix: str = ""
) -> SafeString:
    """A horizontal bar chart as inline SVG: one labelled bar per row, widths to scale.

    Every text goes through format_html (escaped); colours come from CSS classes.
    """
    label_w, bar_w, value_w, row_h = 150, 220, 70, 22
    width = label_w + bar_w + value_w
    height = row_h * len(rows) + 4
    top = maximum if maximum is not None else max([n for _, n, _ in rows] + [1])
    bars = []
    for i, (label, n, css) in enumerate(rows):
        y = 2 + i * row_h
        w = 0 if top <= 0 else round(bar_w * min(n, top) / top)
        bars.append(
            format_html(
                '<g class="{}"><text class="spc-label" x="{}" y="{}" text-anchor="end">{}</text>'
                '<rect class="spc-track" x="{}" y="{}" width="{}" height="{}" rx="3"></rect>'
                '<rect class="spc-bar" x="{}" y="{}" width="{}" height="{}" rx="3"><title>{}: {}</title></rect>'
                '<text class="spc-value" x="{}" y="{}">{}{}</text></g>',
                css,
                label_w - 8, y + 15, label,
                label_w, y + 3, bar_w, row_h - 6,
                label_w, y + 3, w, row_h - 6, label, n,
                label_w + bar_w + 6, y + 15, n, suffix,
            )
        )
    return format_html(
        '<svg class="spc-chart" role="img" viewBox="0 0 {} {}" width="{}" height="{}" '
        'xmlns="http://www.w3.org/2000/svg"><title>{}</title>{}</svg>',
        width, height, width, height, title, mark_safe("".join(bars)),
    )


def status_badge(status: str, label: str) -> SafeString:
    return format_html('<span class="spc-badge spc-badge-{}">{}</span>', status, label)


def scope_chips(granted: list[str], missing: list[str], *, confirmed: bool = True) -> SafeString:
    """Granted scopes as chips, then the missing required ones highlighted.

    Unconfirmed scopes (assumed from the app's registration) are drawn dashed.
    """
    css = "spc-chip" if confirmed else "spc-chip spc-chip-assumed"
    note = "" if confirmed else " (assumed: Amazon did not confirm)"
    chips = format_html_join(
        "", '<span class="{}" title="{}{}">{}</span>', ((css, s, note, short_name(s)) for s in granted)
    )
    missing_chips = format_html_join(
        "",
        '<span class="spc-chip spc-chip-missing" title="Required, not granted: {}">{}</span>',
        ((s, short_name(s)) for s in missing),
    )
    if not granted and not missing:
        return mark_safe('<span class="spc-muted">—</span>')
    return format_html("{}{}", chips, missing_chips)
