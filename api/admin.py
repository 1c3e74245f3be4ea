"""API keys in the admin, scoped to the user's tenants like everything else.

Owners create keys (the key is shown once, on the page that answers the form, and never again:
only its hash is stored) and revoke them. Managers and viewers see the list (names, prefixes,
permissions, last use), never a key. Keys are revoked, not deleted, so the history keeps
naming them.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from sellers.admin import TenantScopedAdmin, tenant_filter_for
from sellers.models import Tenant
from sellers.services.events import actor_for_user
from sellers.tenancy import Role, tenant_access

from .keys import MAX_EXPIRES_DAYS, ApiKeyError, api_key_create, api_key_revoke
from .models import ApiKey, Permission


class ApiKeyCreateForm(forms.Form):
    tenant = forms.ModelChoiceField(queryset=Tenant.objects.none(), empty_label=None)
    name = forms.CharField(max_length=100, help_text="Unique within the tenant, e.g. repricer or order-sync.")
    permissions = forms.MultipleChoiceField(
        choices=Permission.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Give a program only what it needs. tokens:read hands out access tokens: full power over the sellers' data.",
    )
    paths = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40}),
        help_text="Optional: SP-API path prefixes the key's proxy calls are limited to, one per line (e.g. /orders/v0/).",
    )
    expires_days = forms.IntegerField(
        required=False, min_value=1, max_value=MAX_EXPIRES_DAYS, label="Expires in (days)", help_text="Empty: never."
    )

    def __init__(self, *args, tenants, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["tenant"].queryset = tenants


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(TenantScopedAdmin):
    view_role = Role.VIEWER
    add_role = Role.OWNER
    change_role = None  # a key is never edited: create another, revoke this one
    list_display = ("name", "tenant_name", "prefix_col", "state_col", "permissions_col", "last_used_at", "expires_at", "created_at")
    list_filter = (StateFilter,)
    search_fields = ("name", "prefix")
    ordering = ("tenant__name", "name")
    fields = (
        "tenant", "name", "prefix_col", "state_col", "permissions_col", "paths_col", "created_at", "created_by",
        "last_used_at", "expires_at", "revoked_at", "revoked_by",
    )
    readonly_fields = fields
    actions = ["revoke_keys"]
    change_form_template = "admin/api/apikey/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tenant")

    def get_list_filter(self, request):
        return tenant_filter_for(request, self.list_filter)

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request, obj=None):
        access = tenant_access(request.user)
        return access.can(obj.tenant_id, Role.OWNER) if obj is not None else access.can_anywhere(Role.OWNER)

    @admin.display(description="Tenant", ordering="tenant__name")
    def tenant_name(self, obj):
        return obj.tenant.name

    @admin.display(description="Key")
    def prefix_col(self, obj):
        return format_html("<code>{}</code>", obj.display_prefix)

    @admin.display(description="State")
    def state_col(self, obj):
        return obj.state

    @admin.display(description="Permissions")
    def permissions_col(self, obj):
        return ", ".join(obj.permissions)

    @admin.display(description="Proxy paths")
    def paths_col(self, obj):
        return ", ".join(obj.paths) or "any"

    # --- Create: the key is shown once, on the answer to the form -----------------------------

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied
        tenants = tenant_access(request.user).tenants(Role.OWNER)
        form = ApiKeyCreateForm(request.POST or None, tenants=tenants)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                key, full = api_key_create(
                    tenant=data["tenant"],
                    name=data["name"],
                    permissions=data["permissions"],
                    paths=data["paths"].replace(",", "\n").splitlines(),
                    expires_days=data["expires_days"],
                    actor=actor_for_user(request.user),
                )
            except ApiKeyError as exc:
                form.add_error(None, str(exc))
            else:
                self.log_addition(request, key, [{"added": {}}])
                response = TemplateResponse(
                    request,
                    "admin/api/apikey/created.html",
                    {**self.admin_site.each_context(request), "opts": self.opts, "title": "API key created", "key": key, "full_key": full},
                )
                response["Cache-Control"] = "no-store"  # the page carries the key: never keep it
                return response
        return TemplateResponse(
            request,
            "admin/api/apikey/add.html",
            {**self.admin_site.each_context(request), "opts": self.opts, "title": "Create an API key", "form": form},
        )

    # --- Revoke -------------------------------------------------------------------------------

    @admin.action(description="Revoke selected API keys", permissions=["revoke"])
    def revoke_keys(self, request, queryset):
        owned = tenant_access(request.user).scope(queryset, "tenant", Role.OWNER)
        actor = actor_for_user(request.user)
        revoked = sum(api_key_revoke(api_key=key, actor=actor) for key in owned.filter(revoked_at__isnull=True))
        self.message_user(request, f"Revoked {revoked} API key{'s' if revoked != 1 else ''}.", messages.SUCCESS)

    def get_urls(self):
        return [
            path("<path:object_id>/revoke/", self.admin_site.admin_view(self.revoke_view), name="api_apikey_revoke"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        key = self.get_object(request, object_id)
        extra = {
            "may_revoke": key.revoked_at is None and self.has_revoke_permission(request, key),
            "revoke_url": reverse("admin:api_apikey_revoke", args=[key.pk]),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def revoke_view(self, request, object_id):
        """POST only; owners of the key's tenant."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        key = self.get_object(request, object_id)
        if not self.has_revoke_permission(request, key):
            raise Http404("No such key.")
        if api_key_revoke(api_key=key, actor=actor_for_user(request.user)):
            self.message_user(request, f"Revoked {key.name} ({key.display_prefix}): it no longer works.", messages.SUCCESS)
        else:
            self.message_user(request, f"{key.name} was already revoked.", messages.WARNING)
        return HttpResponseRedirect(reverse("admin:api_apikey_change", args=[key.pk]))
