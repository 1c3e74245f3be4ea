"""The history of sellers and grants in the admin: read only, like the events themselves."""

from __future__ import annotations

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from sellers.admin.base import TenantScopedAdmin
from sellers.admin.filters import tenant_filter_for
from sellers.admin_html import scope_labels_in, when
from sellers.models import Event
from sellers.tenancy import tenant_access


@admin.register(Event)
class EventAdmin(TenantScopedAdmin):
    """Every history event (grants, revocations, renewals, staff actions) of the user's tenants."""

    list_display = ("when_col", "tenant_name", "seller_link", "kind", "detail_short", "actor")
    list_filter = ("kind", ("created_at", admin.DateFieldListFilter))
    search_fields = ("seller__name", "seller__selling_partner_id")
    list_per_page = 100
    show_full_result_count = False
    fields = ("when_col", "tenant_name", "seller_link", "kind", "detail_labels", "data", "actor")
    readonly_fields = fields
    add_role = change_role = delete_role = None

    class Media:
        css = {"all": ("admin_ext/admin.css",)}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("tenant", "seller")
            .only(
                "id", "created_at", "kind", "detail", "data", "actor", "tenant", "seller",
                "tenant__name", "seller__name", "seller__selling_partner_id", "seller__tenant",
            )
        )

    def get_list_filter(self, request):
        return tenant_filter_for(request, self.list_filter)

    def get_list_display(self, request):
        # Staff of one tenant: a Tenant column would repeat one name and push the detail out.
        if tenant_access(request.user).is_multi_tenant:
            return self.list_display
        return tuple(name for name in self.list_display if name != "tenant_name")

    @admin.display(description="When (UTC)", ordering="created_at")
    def when_col(self, obj):
        return when(obj.created_at)

    def get_actions(self, request):
        return {}

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {"title": "History of sellers and grants", **(extra_context or {})})

    @admin.display(description="Tenant", ordering="tenant__name")
    def tenant_name(self, obj):
        return obj.tenant.name

    @admin.display(description="Seller", ordering="seller__name")
    def seller_link(self, obj):
        if obj.seller is None:
            return "—"
        url = reverse("admin:sellers_seller_change", args=[obj.seller_id])
        return format_html('<a href="{}">{}</a> <span class="spc-muted">{}</span>', url, obj.seller.name, obj.seller.selling_partner_id)

    @admin.display(description="Detail")
    def detail_labels(self, obj):
        return scope_labels_in(obj.detail)

    @admin.display(description="Detail")
    def detail_short(self, obj):
        detail = scope_labels_in(obj.detail)
        return detail if len(detail) <= 140 else detail[:139] + "…"
