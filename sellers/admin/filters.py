"""List filters of the admin: tenants (only those the user may see), scopes, renewals and the
onboarding funnel. The dashboard links to them; its counts use the same selectors."""

from __future__ import annotations

import re
from collections.abc import Callable

from django.conf import settings
from django.contrib import admin
from django.db import models
from django.utils import timezone

from sellers.admin.base import db_id
from sellers.models import Seller
from sellers.scopes import CATALOG, SCOPE_CHOICES
from sellers.selectors import (
    FUNNEL_DAYS,
    FunnelStep,
    funnel_q,
    renewal_bucket_q,
    renewal_due_q,
    required_scopes_by_tenant,
    sellers_holding_scope,
    sellers_missing_required_scope,
)
from sellers.tenancy import tenant_access


class TenantFilter(admin.SimpleListFilter):
    """Tenants the user may see (never the full table), for superusers and multi-tenant staff."""

    title = "tenant"
    parameter_name = "tenant"

    def lookups(self, request, model_admin):
        return list(tenant_access(request.user).tenants().values_list("id", "name"))

    def queryset(self, request, queryset):
        # A string from the query string, or the lookup's own id when counting facets.
        value = str(self.value() or "")
        if not value:
            return queryset
        tenant_id = db_id(value)
        return queryset.none() if tenant_id is None else queryset.filter(tenant_id=tenant_id)


def tenant_filter_for(request, filters):
    return [*filters, TenantFilter] if tenant_access(request.user).is_multi_tenant else list(filters)


class _ScopeFilter(admin.SimpleListFilter):
    """Sellers filtered by one catalog scope (`select`, a selector); any other value is ignored."""

    select: Callable[..., models.QuerySet[Seller]]

    def lookups(self, request, model_admin):
        return SCOPE_CHOICES

    def queryset(self, request, queryset):
        scope = self.value()
        if scope not in CATALOG:
            return queryset
        return self.select(sellers=queryset, scope=scope)


class ScopeGrantedFilter(_ScopeFilter):
    title = "scope granted"
    parameter_name = "granted"
    select = staticmethod(sellers_holding_scope)


class ScopeMissingFilter(_ScopeFilter):
    """Sellers whose tenant requires the scope and whose grant does not hold it (or no grant).
    Offers only the scopes one of the user's tenants requires."""

    title = "required scope missing"
    parameter_name = "missing"
    select = staticmethod(sellers_missing_required_scope)

    def lookups(self, request, model_admin):
        tenant_ids = tenant_access(request.user).tenants().values_list("id", flat=True)
        required = {s for scopes in required_scopes_by_tenant(tenant_ids=tenant_ids).values() for s in scopes}
        return [(name, label) for name, label in SCOPE_CHOICES if name in required]


_RENEWAL_BUCKET = re.compile(r"d(\d{1,3})-(\d{1,3})")


class RenewalDueFilter(admin.SimpleListFilter):
    """Amazon asks for a new consent 365 days after authorization."""

    title = "renewal"
    parameter_name = "renewal"

    def lookups(self, request, model_admin):
        days = settings.SPCONNECT_RENEWAL_WINDOW_DAYS
        return [("soon", f"Due within {days} days"), ("overdue", "Overdue")]

    def queryset(self, request, queryset):
        now = timezone.now()
        bucket = _RENEWAL_BUCKET.fullmatch(self.value() or "")
        if bucket:  # the dashboard's bars: due in [start, end) days
            start, end = (min(int(n), 400) for n in bucket.groups())
            return queryset.filter(renewal_bucket_q(now=now, start=start, end=end))
        if self.value() == "soon":
            return queryset.filter(
                renewal_due_q(now=now, within_days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS, overdue=False)
            )
        if self.value() == "overdue":
            return queryset.filter(renewal_due_q(now=now))
        return queryset


class FunnelFilter(admin.SimpleListFilter):
    """Sellers invited in the last FUNNEL_DAYS days by how far they got (the dashboard's funnel)."""

    title = f"onboarding, last {FUNNEL_DAYS} days"
    parameter_name = "funnel"

    def lookups(self, request, model_admin):
        return list(FunnelStep.choices)

    def queryset(self, request, queryset):
        if self.value() not in dict(FunnelStep.choices):
            return queryset
        return queryset.filter(funnel_q(str(self.value()), now=timezone.now()))
