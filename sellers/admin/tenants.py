"""Tenants in the admin, for their owners: the app registration, secrets, required scopes, members.

Secrets are write-only form fields: a new value can be set, the current one is never shown.
Tenants are created by superusers.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html

from sellers.admin.base import TenantScopedAdmin
from sellers.fields import UndecryptableValue
from sellers.models import TENANT_SECRET_FIELDS, ScopeRequirement, Seller, Tenant, TenantMembership
from sellers.roles import AppRole, clean_roles, role_labels
from sellers.scopes import CATALOG, SCOPE_CHOICES, roles_for_scope, scopes_given_by_roles
from sellers.selectors import required_scopes
from sellers.services.client_secrets import ClientSecretError, client_secret_install
from sellers.services.events import actor_for_user
from sellers.services.requirements import tenant_requirements_changed
from sellers.services.webhooks import WEBHOOK_SECRET_PREFIX, webhook_secret_problem
from sellers.tenancy import Role, tenant_access, tenant_access_forget, visible_users_q


class OwnerOnlyInline(admin.TabularInline):
    """An inline of the tenant page that only the tenant's owners see and change."""

    extra = 0

    def _owner(self, request, obj):
        access = tenant_access(request.user)
        return access.can(obj.pk, Role.OWNER) if obj is not None else access.can_anywhere(Role.OWNER)

    def has_view_permission(self, request, obj=None):
        return self._owner(request, obj)

    def has_add_permission(self, request, obj=None):
        return self._owner(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._owner(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._owner(request, obj)


class ScopeRequirementInline(OwnerOnlyInline):
    model = ScopeRequirement
    fields = ("scope", "kind", "reason")


class MembershipFormSet(BaseInlineFormSet):
    def clean(self):
        super().clean()
        # Whoever saves this page must not lock every owner out of the tenant.
        owners_before = sum(
            1 for form in self.initial_forms if form.initial.get("role") == TenantMembership.Role.OWNER
        )
        owners = 0
        current = set(self.instance.memberships.values_list("user_id", flat=True)) if self.instance.pk else set()
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if data and not data.get("DELETE") and data.get("role") == TenantMembership.Role.OWNER:
                owners += 1
            user = data.get("user") if data and not data.get("DELETE") else None
            # The picker offers other tenants' inactive or non-staff members to their common
            # owner (so that their own rows stay valid); joining this tenant needs active staff.
            if user is not None and user.pk not in current and not (user.is_active and user.is_staff and not user.is_superuser):
                form.add_error("user", "Only active staff accounts (not superusers) can be added as members.")
        if owners_before and not owners:
            raise ValidationError("A tenant keeps at least one owner.")


class MembershipInline(OwnerOnlyInline):
    model = TenantMembership
    formset = MembershipFormSet
    fields = ("user", "role")
    verbose_name = "member"
    verbose_name_plural = "Members and roles"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = (
                get_user_model().objects.filter(visible_users_q(tenant_access(request.user)))
                .distinct()
                .order_by("username")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class HttpsURLField(forms.URLField):
    """A URL typed without a scheme is read as https: the redirect URI and webhook need it."""

    def __init__(self, **kwargs):
        kwargs.setdefault("assume_scheme", "https")
        super().__init__(**kwargs)


class TenantForm(forms.ModelForm):
    """Secrets are write-only: a field to set a new value, never prefilled, never displayed."""

    new_client_secret = forms.CharField(
        required=False,
        strip=True,
        max_length=1000,
        # LWA secrets are one token; a space means a paste went wrong.
        validators=[RegexValidator(r"^\S*$", "A client secret is one line without spaces.")],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Set a new LWA client secret. The current one is kept as the previous secret "
        "(tried on invalid_client) for a few days. Leave empty to keep the current secret.",
    )
    new_client_secret_expires_at = forms.DateTimeField(
        required=False, help_text="When Amazon expires the new secret. Empty: 180 days from now."
    )
    new_webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Set a new webhook signing secret, a Standard Webhooks secret: whsec_ and 24 to 64 random bytes "
        "in base64. Make one with: python3 -c \"import base64, secrets; print('whsec_' + "
        "base64.b64encode(secrets.token_bytes(32)).decode())\" and give the same value to your receiver. "
        "Leave empty to keep the current one.",
    )
    registered_scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The scopes the app is registered for; assumed granted when Amazon returns no scope and no "
        "app role is recorded below.",
    )
    app_roles = forms.MultipleChoiceField(
        choices=AppRole.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="App roles",
        help_text="The SP-API roles chosen when the app was registered (Seller Central → Develop Apps → the app). "
        "Real Amazon returns no scope: the scopes these roles give then count as granted, marked "
        "\"from the app's registration\". Adding a role later makes every seller re-authorize.",
    )

    class Meta:
        model = Tenant
        # Field classes rather than a formfield callback: the admin builds its form with its own
        # callback, which keeps these.
        field_classes = {"redirect_uri": HttpsURLField, "webhook_url": HttpsURLField}
        # An allow-list: a field added to Tenant later (a secret, say) stays off the form until named here.
        fields = (
            "name", "slug", "application_id", "client_id", "client_secret_expires_at", "redirect_uri", "is_draft",
            "registered_scopes", "app_roles", "webhook_url",
        )

    def clean_new_webhook_secret(self):
        value = self.cleaned_data.get("new_webhook_secret") or ""
        problem = webhook_secret_problem(value) if value else None
        if problem:
            raise ValidationError(problem, code="webhook_secret")
        return value

    def clean_registered_scopes(self):
        return [s for s in CATALOG if s in set(self.cleaned_data.get("registered_scopes") or [])]

    def clean_app_roles(self):
        return clean_roles(self.cleaned_data.get("app_roles"))


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin):
    form = TenantForm
    tenant_field = "pk"
    view_role = change_role = Role.OWNER
    add_role = None  # tenants are created by superusers
    delete_role = None
    list_display = ("name", "slug", "application_id", "sellers_link", "credentials_state")
    search_fields = ("name", "slug")
    inlines = [ScopeRequirementInline, MembershipInline]
    readonly_fields = ("client_secret_state", "webhook_secret_state", "credentials_state", "scopes_from_roles")
    fieldsets = [
        (None, {"fields": ("name", "slug")}),
        (
            "App registration",
            {
                "fields": (
                    "application_id",
                    "client_id",
                    "client_secret_state",
                    "new_client_secret",
                    "new_client_secret_expires_at",
                    "credentials_state",
                    "redirect_uri",
                    "is_draft",
                    "registered_scopes",
                    "app_roles",
                    "scopes_from_roles",
                )
            },
        ),
        ("Webhook", {"fields": ("webhook_url", "webhook_secret_state", "new_webhook_secret")}),
    ]

    class Media:
        css = {"all": ("admin_ext/admin.css",)}

    def tenant_id_of(self, obj):
        return obj.pk

    def get_queryset(self, request):
        return super().get_queryset(request).defer(*TENANT_SECRET_FIELDS)

    @admin.display(description="Sellers")
    def sellers_link(self, obj):
        url = reverse("admin:sellers_seller_changelist") + f"?tenant={obj.pk}"
        return format_html('<a href="{}">Sellers</a>', url)

    @admin.display(description="Client secret")
    def client_secret_state(self, obj):
        # Emptiness is checked in SQL: the secret itself is never decrypted for this page.
        if obj.pk is None:
            return "—"
        has = Tenant.objects.filter(pk=obj.pk).exclude(client_secret="").exists()
        state = "set" if has else "not set"
        if has and obj.client_secret_expires_at:
            state += f", expires {obj.client_secret_expires_at:%Y-%m-%d}"
        if Tenant.objects.filter(pk=obj.pk).exclude(previous_client_secret="").exists():
            state += "; previous secret kept" + (
                f" until {obj.previous_client_secret_expires_at:%Y-%m-%d}" if obj.previous_client_secret_expires_at else ""
            )
        return state

    @admin.display(description="Scopes the app's roles give")
    def scopes_from_roles(self, obj):
        # What an authorization counts as granted when Amazon names no scope (sellers.scopes.SCOPE_ROLES).
        if obj.pk is None or not obj.app_roles:
            return "— (no role recorded: the registered scopes above are assumed instead)"
        given = scopes_given_by_roles(obj.app_roles)
        missing = [f"{CATALOG[s].label} (needs {' or '.join(role_labels(roles_for_scope(s)))})" for s in CATALOG if s not in given]
        text = ", ".join(CATALOG[s].label for s in given) or "none"
        return text + (f". Not given: {'; '.join(missing)}." if missing else ".")

    @admin.display(description="Webhook secret")
    def webhook_secret_state(self, obj):
        if obj.pk is None:
            return "—"
        try:
            secret = Tenant.objects.filter(pk=obj.pk).values_list("webhook_secret", flat=True).first() or ""
        except UndecryptableValue:
            return "set, but it cannot be decrypted with the configured keys: set a new one"
        if not secret:
            return "not set"
        if not secret.startswith(WEBHOOK_SECRET_PREFIX):
            # Decrypted only to tell which form it has; the value is never shown.
            return "set, in the form used before whsec_ secrets (receivers use whsec_ + its base64); setting a new one is advised"
        return "set"

    @admin.display(description="App credentials")
    def credentials_state(self, obj):
        if obj.credentials_failing_since:
            return format_html(
                '<span class="spc-badge spc-badge-revoked">rejected since {}</span> {}',
                f"{obj.credentials_failing_since:%Y-%m-%d %H:%M}",
                obj.credentials_error,
            )
        return format_html('<span class="spc-badge spc-badge-active">{}</span>', "OK")

    def save_model(self, request, obj, form, change):
        actor = actor_for_user(request.user)
        new_secret = form.cleaned_data.get("new_client_secret")
        new_webhook = form.cleaned_data.get("new_webhook_secret")
        obj.save()
        if new_secret:
            try:
                installed = client_secret_install(
                    tenant=obj,
                    secret=new_secret,
                    expires_at=form.cleaned_data.get("new_client_secret_expires_at"),
                    actor=actor,
                    source="admin",
                )
            except ClientSecretError as exc:
                self.message_user(request, f"The client secret was not changed: {exc}", messages.ERROR)
            else:
                self.message_user(
                    request,
                    "The new client secret is stored (it will not be shown again); the previous one is still "
                    "accepted for a few days." if installed else "That client secret is already the current one.",
                )
        if new_webhook:
            obj.webhook_secret = new_webhook
            obj.save(update_fields=["webhook_secret"])
            self.message_user(request, "The new webhook secret is stored (it will not be shown again).")

    def save_related(self, request, form, formsets, change):
        tenant = form.instance
        before = required_scopes(tenant_id=tenant.pk)
        super().save_related(request, form, formsets, change)
        tenant_access_forget(request.user)
        after = required_scopes(tenant_id=tenant.pk)
        if before != after:
            changed = tenant_requirements_changed(tenant=tenant, actor=actor_for_user(request.user), previous_required=before)
            partial = Seller.objects.filter(tenant=tenant, status=Seller.Status.PARTIAL).count()
            self.message_user(
                request,
                f"Required scopes changed: {changed} seller(s) changed status; {partial} seller(s) of "
                f"{tenant.name} are now partial (missing a required scope).",
                messages.WARNING if partial else messages.SUCCESS,
            )
