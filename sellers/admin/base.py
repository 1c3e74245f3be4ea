"""The tenant-scoped base of every admin of the project, and what its pages never show.

Permissions come from TenantMembership roles (sellers/tenancy.py), not from django.contrib.auth
permissions: owner (everything, including the app registration and members), manager (sellers
and actions), viewer (read only). Superusers see every tenant. An object of a tenant the user
cannot see is a 404 on every object URL.
"""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import helpers
from django.http import Http404

from sellers.models import TOKEN_FIELDS
from sellers.tenancy import Role, tenant_access

# Encrypted columns never read by list pages: decrypting them is slow and they must not show.
GRANT_SECRET_FIELDS = tuple(f"grant__{name}" for name in TOKEN_FIELDS)
UNDECRYPTABLE_NOTE = (
    "The stored tokens cannot be decrypted with the configured keys (FIELD_ENCRYPTION_KEY): refreshes "
    "and SP-API calls fail until the key they were written under is restored, or the seller re-authorizes."
)

DB_ID_MAX = 2**63 - 1  # the largest primary key any supported database can hold


def db_id(value) -> int | None:
    """A primary key from user input, or None when no row could have it."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit():
        return None
    number = int(text)
    return number if 0 < number <= DB_ID_MAX else None


class TenantScopedAdmin(admin.ModelAdmin):
    """A ModelAdmin whose rows, permissions and object URLs follow the user's tenant roles.

    `*_role` is the least role needed in the object's tenant; None means superusers only.
    """

    tenant_field = "tenant"
    view_role: str | None = Role.VIEWER
    add_role: str | None = Role.MANAGER
    change_role: str | None = Role.MANAGER
    delete_role: str | None = None

    def tenant_id_of(self, obj) -> int | None:
        return obj.tenant_id

    def get_queryset(self, request):
        role = self.view_role or Role.OWNER
        return tenant_access(request.user).scope(super().get_queryset(request), self.tenant_field, role)

    def _allowed(self, request, role: str | None, obj=None) -> bool:
        access = tenant_access(request.user)
        if role is None:
            return access.is_superuser
        if obj is None:
            return access.can_anywhere(role)
        return access.can(self.tenant_id_of(obj), role)

    def has_module_permission(self, request):
        return self._allowed(request, self.view_role)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, self.view_role, obj) or self.has_change_permission(request, obj)

    def has_add_permission(self, request):
        return self._allowed(request, self.add_role)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, self.change_role, obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, self.delete_role, obj)

    def response_action(self, request, queryset):
        # Ids no row can have (not integers, beyond 64 bits) never reach the database: SQLite
        # cannot bind them. They are refused like rows of other tenants.
        submitted = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        usable = [value for value in submitted if db_id(value) is not None]
        if len(usable) != len(submitted):
            request.POST = request.POST.copy()
            request.POST.setlist(helpers.ACTION_CHECKBOX_NAME, usable)
            request.spc_unusable_ids = len(submitted) - len(usable)
        return super().response_action(request, queryset)

    def get_object(self, request, object_id, from_field=None):
        # Django answers a missing object with a redirect; outside the user's tenants (or absent)
        # is a plain 404 here, on the change, history and delete URLs alike.
        if from_field is None and db_id(object_id) is None:
            raise Http404("No such object.")
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404("No such object.")
        return obj
