"""Django admin for agency staff, scoped to their tenants.

Permissions come from TenantMembership roles (sellers/tenancy.py), not from django.contrib.auth
permissions: owner (everything, including the app registration and members), manager (sellers
and actions), viewer (read only). Superusers see every tenant. An object of a tenant the user
cannot see is a 404 on every object URL. Tokens and secrets are never read into a page: grant
columns come from `.defer()`ed querysets and secrets are write-only form fields.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

# Registers django-q2's admins before they are restricted to superusers below, whatever the
# order of INSTALLED_APPS.
import django_q.admin  # noqa: F401
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.core.validators import RegexValidator
from django.db import models
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince, timeuntil
from django_q.models import Failure, OrmQ, Schedule, Success, Task

from sellers.admin_html import scope_chips, status_badge
from sellers.csv_safety import SafeDictWriter
from sellers.fields import UndecryptableValue, mask_secret
from sellers.models import Event, Grant, IdentityReview, ScopeRequirement, Seller, Tenant, TenantMembership
from sellers.scopes import CATALOG, SCOPE_CHOICES
from sellers.selectors import (
    renewal_due_q,
    required_scopes,
    required_scopes_by_tenant,
    seller_open_links,
    sellers_holding_scope,
    sellers_missing_required_scope,
)
from sellers.services.client_secrets import ClientSecretError, client_secret_install
from sellers.services.events import actor_for_user, event_record
from sellers.services.exports import FIELDS as EXPORT_FIELDS
from sellers.services.exports import seller_records
from sellers.services.grants import grant_mark_revoked
from sellers.services.identity import fingerprint_from_participations, grant_fingerprint_record
from sellers.services.invitations import (
    LinkEmail,
    invitation_create,
    reauthorization_link_get_or_create,
    reauthorization_link_send,
)
from sellers.services.requirements import tenant_requirements_changed
from sellers.services.spapi import SPAPI_CALL_ERRORS, spapi_request
from sellers.services.status import missing_required_scopes
from sellers.services.tokens import RefreshOutcome, RefreshResult, grant_refresh
from sellers.tasks import grant_refresh_enqueue
from sellers.tenancy import Role, tenant_access, tenant_access_forget, visible_users_q

# Encrypted columns never read by list pages: decrypting them is slow and they must not show.
GRANT_SECRET_FIELDS = ("grant__refresh_token", "grant__access_token", "grant__mws_auth_token")
TENANT_SECRET_FIELDS = ("client_secret", "previous_client_secret", "webhook_secret")
UNDECRYPTABLE_NOTE = (
    "The stored tokens cannot be decrypted with the configured keys (FIELD_ENCRYPTION_KEY): refreshes "
    "and SP-API calls fail until the key they were written under is restored, or the seller re-authorizes."
)
# SP-API calls are slow; one click tests at most this many sellers.
MAX_CONNECTION_TESTS = 25
# Each refresh is an LWA round trip: one click refreshes at most this many sellers itself and
# hands a larger selection to the task workers, so the request never waits on dozens of calls.
MAX_INLINE_REFRESHES = 5
MARKETPLACE_PATH = "/sellers/v1/marketplaceParticipations"

admin.site.site_header = "spconnect"
admin.site.site_title = "spconnect admin"
admin.site.index_title = "Sellers, grants and history"


# --- Tenant scoping ----------------------------------------------------------------------------

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


# --- Sellers -----------------------------------------------------------------------------------


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
    """Sellers whose tenant requires the scope and whose grant does not hold it (or no grant)."""

    title = "required scope missing"
    parameter_name = "missing"
    select = staticmethod(sellers_missing_required_scope)


class RenewalDueFilter(admin.SimpleListFilter):
    """Amazon asks for a new consent 365 days after authorization."""

    title = "renewal"
    parameter_name = "renewal"

    def lookups(self, request, model_admin):
        days = settings.SPCONNECT_RENEWAL_WINDOW_DAYS
        return [("soon", f"Due within {days} days"), ("overdue", "Overdue")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "soon":
            return queryset.filter(
                renewal_due_q(now=now, within_days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS, overdue=False)
            )
        if self.value() == "overdue":
            return queryset.filter(renewal_due_q(now=now))
        return queryset


class SellerChangeList(ChangeList):
    def get_results(self, request):
        super().get_results(request)
        # One query for the required scopes of every tenant on the page, whatever its size.
        tenant_ids = {seller.tenant_id for seller in self.result_list}
        required = required_scopes_by_tenant(tenant_ids=tenant_ids) if tenant_ids else {}
        for seller in self.result_list:
            seller.required_scopes = required.get(seller.tenant_id, [])


class EventInline(admin.TabularInline):
    """The seller's history, newest first; events are append-only, so nothing here is editable."""

    model = Event
    fk_name = "seller"
    fields = ("created_at", "kind", "detail", "actor")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "History (newest first)"
    shown = 50

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        shown = self.shown

        class Newest(formset):
            def get_queryset(self):
                if not hasattr(self, "_newest"):
                    self._newest = super().get_queryset()[:shown]
                return self._newest

        return Newest

    def has_view_permission(self, request, obj=None):
        # Called with the parent seller, or without one by get_queryset (rows are then limited
        # to the parent, which the seller admin has already scoped).
        access = tenant_access(request.user)
        return access.can(obj.tenant_id, Role.VIEWER) if obj is not None else access.can_anywhere(Role.VIEWER)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SellerAddForm(forms.ModelForm):
    class Meta:
        model = Seller
        fields = ("tenant", "name", "email", "region")


@admin.register(Seller)
class SellerAdmin(TenantScopedAdmin):
    list_display = (
        "name",
        "tenant_name",
        "region",
        "selling_partner_id",
        "status_col",
        "scopes_col",
        "token_expires_col",
        "renewal_due_col",
        "last_refresh_col",
    )
    # Deleting a seller would erase its append-only history: superusers only (the default).
    delete_role = None
    list_display_links = ("name",)
    list_filter = ("status", "region", ScopeGrantedFilter, ScopeMissingFilter, RenewalDueFilter)
    search_fields = ("name", "email", "selling_partner_id")
    list_per_page = 100
    list_max_show_all = 500
    # The unfiltered total is a second COUNT on every filtered page; the filtered one is enough.
    show_full_result_count = False
    actions = [
        "send_reauthorization_link",
        "refresh_now",
        "test_connection",
        "mark_revoked",
        "export_csv",
    ]
    inlines = [EventInline]
    readonly_on_change = (
        "tenant_name",
        "region",
        "selling_partner_id",
        "status_col",
        "created_at",
        "grant_summary",
        "identity_reviews",
        "reauthorization_link",
    )

    class Media:
        css = {"all": ("admin_ext/admin.css",)}
        js = ("admin_ext/copy.js",)

    # -- querysets and permissions --

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("tenant", "grant")
        return qs.defer(*GRANT_SECRET_FIELDS, *(f"tenant__{f}" for f in TENANT_SECRET_FIELDS))

    def get_changelist(self, request, **kwargs):
        return SellerChangeList

    def get_list_filter(self, request):
        return tenant_filter_for(request, self.list_filter)

    def has_manage_permission(self, request):
        """Actions need the manager role in at least one tenant; viewers get none."""
        return tenant_access(request.user).can_anywhere(Role.MANAGER)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SellerAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ("tenant", "name", "email", "region"),
                            "description": "Creates a pending seller and its onboarding link."})]
        return [
            ("Profile", {"fields": ("name", "email", "tenant_name", "region", "selling_partner_id", "status_col", "created_at")}),
            ("Current grant", {"fields": ("grant_summary", "identity_reviews")}),
            ("Re-authorization link", {"fields": ("reauthorization_link",)}),
        ]

    @admin.display(description="Identity reviews")
    def identity_reviews(self, obj):
        """Authorizations held because their account could not be confirmed, waiting for staff."""
        waiting = list(
            IdentityReview.objects.filter(seller=obj, status=IdentityReview.Status.OPEN)
            .only("pk", "selling_partner_id", "expires_at")
            .order_by("expires_at")
        )
        if not waiting:
            return "None waiting."
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">A new authorization for {} waits for a decision</a> (until {})',
            (
                (reverse("admin:sellers_identityreview_change", args=[r.pk]), r.selling_partner_id, f"{r.expires_at:%Y-%m-%d %H:%M}")
                for r in waiting
            ),
        )

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return self.readonly_on_change

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "tenant":
            kwargs["queryset"] = tenant_access(request.user).tenants(Role.MANAGER).defer(*TENANT_SECRET_FIELDS)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["name", "email", "updated_at"])
            return
        tenant = form.cleaned_data["tenant"]
        if not tenant_access(request.user).can(tenant.pk, Role.MANAGER):
            raise Http404("No such tenant.")
        invitation = invitation_create(
            tenant=tenant,
            name=form.cleaned_data["name"],
            email=form.cleaned_data.get("email", ""),
            region=form.cleaned_data["region"],
            actor=actor_for_user(request.user),
        )
        # The service created the row; the admin's redirect and log entry use this object.
        obj.pk = obj.id = invitation.seller.pk
        obj._state.adding = False
        self.message_user(request, format_html("Onboarding link (valid until {}): {}", f"{invitation.expires_at:%Y-%m-%d}", invitation.url))

    # -- changelist columns --

    @staticmethod
    def _grant(obj) -> Grant | None:
        try:
            return obj.grant
        except Grant.DoesNotExist:
            return None

    @admin.display(description="Tenant", ordering="tenant__name")
    def tenant_name(self, obj):
        return obj.tenant.name

    @admin.display(description="Status", ordering="status")
    def status_col(self, obj):
        return status_badge(obj.status, obj.get_status_display())

    @admin.display(description="Scopes")
    def scopes_col(self, obj):
        grant = self._grant(obj)
        required = getattr(obj, "required_scopes", None)
        if required is None:
            required = required_scopes(tenant_id=obj.tenant_id)
        granted = grant.effective_scopes if grant is not None and grant.status == Grant.Status.ACTIVE else []
        missing = missing_required_scopes(grant=grant, required=required) if grant is not None else []
        return scope_chips(granted, missing, confirmed=bool(grant and grant.scopes_confirmed))

    @admin.display(description="Access token", ordering="grant__access_token_expires_at")
    def token_expires_col(self, obj):
        grant = self._grant(obj)
        if grant is None or grant.status != Grant.Status.ACTIVE or grant.access_token_expires_at is None:
            return "—"
        now = timezone.now()
        if grant.access_token_expires_at <= now:
            return format_html('<span class="spc-muted">expired {} ago</span>', timesince(grant.access_token_expires_at, now, depth=1))
        return f"expires in {timeuntil(grant.access_token_expires_at, now, depth=1)}"

    @admin.display(description="Renewal due", ordering="grant__authorized_at")
    def renewal_due_col(self, obj):
        grant = self._grant(obj)
        if grant is None or grant.status != Grant.Status.ACTIVE:
            return "—"
        due = grant.renewal_due_at
        now = timezone.now()
        css = ""
        if due <= now:
            css = "spc-overdue"
        elif due <= now + timedelta(days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS):
            css = "spc-due-soon"
        return format_html('<span class="{}" title="authorized {}">{}</span>', css, f"{grant.authorized_at:%Y-%m-%d}", f"{due:%Y-%m-%d}")

    @admin.display(description="Last refresh", ordering="grant__last_refreshed_at")
    def last_refresh_col(self, obj):
        grant = self._grant(obj)
        if grant is None or grant.last_refreshed_at is None:
            return "—"
        return f"{timesince(grant.last_refreshed_at, depth=1)} ago"

    # -- change page --

    @admin.display(description="Grant")
    def grant_summary(self, obj):
        grant = self._grant(obj)
        if grant is None:
            return "Not authorized yet."
        required = required_scopes(tenant_id=obj.tenant_id)
        missing = missing_required_scopes(grant=grant, required=required)
        refused = grant.refused_scopes or []
        # The tokens are read once here: the refresh token for its masked tail, all of them to
        # know they still decrypt. No value leaves this method.
        try:
            tokens = Grant.objects.filter(pk=grant.pk).only("refresh_token", "access_token", "mws_auth_token").first()
        except UndecryptableValue:
            refresh_shown = "cannot be decrypted with the configured keys"
            problem = [("Tokens", format_html('<strong class="spc-overdue">{}</strong>', UNDECRYPTABLE_NOTE))]
        else:
            refresh_shown, problem = mask_secret(tokens.refresh_token if tokens else ""), []
        rows = [
            *problem,
            ("Status", grant.get_status_display() + (f" since {grant.revoked_at:%Y-%m-%d %H:%M}" if grant.revoked_at else "")),
            ("Scopes", scope_chips(grant.effective_scopes, missing, confirmed=grant.scopes_confirmed)),
            ("Confirmed by Amazon", "yes" if grant.scopes_confirmed else "no (assumed from the app's registration)"),
            ("Refused by Amazon", ", ".join(refused) or "—"),
            ("Authorized", f"{grant.authorized_at:%Y-%m-%d %H:%M} UTC"),
            ("Renewal due", f"{grant.renewal_due_at:%Y-%m-%d}"),
            ("Access token", self.token_expires_col(obj)),
            ("Last refresh", self.last_refresh_col(obj)),
            ("Refreshes", f"{grant.refresh_count} (consecutive failures: {grant.consecutive_failures})"),
            ("Last error", grant.last_error or "—"),
            ("Refresh token", refresh_shown),
        ]
        body = format_html(
            "".join("<tr><th>{}</th><td>{}</td></tr>" for _ in rows), *[x for row in rows for x in row]
        )
        return format_html('<table class="spc-grant">{}</table>', body)

    @admin.display(description="Link")
    def reauthorization_link(self, obj):
        # Set by get_object for the requesting user; anything else (no request) shows no link.
        may_manage = getattr(obj, "user_may_manage", False)
        links = seller_open_links(seller_ids=[obj.pk])
        invitation = (links if may_manage else links.defer("token")).first()
        create_url = reverse("admin:sellers_seller_reauthorization_link", args=[obj.pk])
        create = format_html(' <a class="button" href="{}">Create a link…</a>', create_url) if may_manage else ""
        if invitation is None:
            return format_html("No unexpired link.{}", create)
        about = format_html(
            "{} link, valid until {} UTC{}.",
            invitation.get_purpose_display(),
            f"{invitation.expires_at:%Y-%m-%d %H:%M}",
            f", emailed {invitation.last_emailed_at:%Y-%m-%d %H:%M}" if invitation.last_emailed_at else "",
        )
        if not may_manage:
            # The link is a bearer credential: whoever holds it can connect an Amazon account to
            # this seller. Viewers learn that it exists, never the URL.
            return format_html('{} <span class="spc-muted">Only owners and managers can see or copy it.</span>', about)
        return format_html(
            '<input type="text" readonly class="vTextField spc-link" id="spc-reauth-link" value="{}"> '
            '<button type="button" class="button" data-copy-target="spc-reauth-link">Copy</button>'
            '<div class="help">{}</div>',
            invitation.url,
            about,
        )

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        # Display methods get no request; the page's buttons depend on the user's role.
        obj.user_may_manage = tenant_access(request.user).can(obj.tenant_id, Role.MANAGER)
        return obj

    def get_urls(self):
        return [
            path(
                "<path:object_id>/reauthorization-link/",
                self.admin_site.admin_view(self.reauthorization_link_view),
                name="sellers_seller_reauthorization_link",
            ),
            *super().get_urls(),
        ]

    def reauthorization_link_view(self, request, object_id):
        """GET shows what will happen; POST creates the link (or keeps the unexpired one)."""
        seller = self.get_object(request, object_id)
        if not tenant_access(request.user).can(seller.tenant_id, Role.MANAGER):
            raise Http404("No such seller.")
        change_url = reverse("admin:sellers_seller_change", args=[seller.pk])
        if request.method == "POST":
            invitation, created = reauthorization_link_get_or_create(seller=seller, actor=actor_for_user(request.user))
            if created:
                self.message_user(request, f"Created a {invitation.get_purpose_display().lower()} link for {seller.name}.")
            else:
                self.message_user(request, f"{seller.name} already has an unexpired link; it is shown below.", messages.INFO)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Re-authorization link for {seller.name}",
            "opts": self.model._meta,
            "seller": seller,
            "change_url": change_url,
        }
        return TemplateResponse(request, "admin/sellers/seller/reauthorization_link.html", context)

    # -- actions --

    def response_action(self, request, queryset):
        selected = request.POST.getlist(helpers.ACTION_CHECKBOX_NAME)
        if any(not value.isdigit() for value in selected):
            self.message_user(request, "The selection was not understood; nothing was done.", messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        return super().response_action(request, queryset)

    def _targets(self, request, queryset) -> tuple[list[Seller], int]:
        """(sellers the user manages among the selected ones, number of selected rows refused).

        `queryset` is already limited to the user's tenants, so ids of other tenants smuggled
        into the POST are dropped there; they and rows of tenants where the user is only a viewer
        are counted as refused.
        """
        ids = list(queryset.values_list("pk", flat=True))
        if request.POST.get("select_across") == "1":
            submitted = len(ids)  # every row of the filtered list: the checkboxes do not count
        else:
            submitted = len(set(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))) + getattr(request, "spc_unusable_ids", 0)
        manageable = list(
            tenant_access(request.user)
            .scope(Seller.objects.filter(pk__in=ids), "tenant", Role.MANAGER)
            .select_related("tenant")
            .order_by("name", "id")
        )
        return manageable, max(submitted - len(manageable), 0)

    def _report_refused(self, request, refused: int) -> None:
        if refused:
            self.message_user(
                request,
                f"{refused} selected row(s) refused: they are not sellers of a tenant you manage.",
                messages.WARNING,
            )

    @admin.action(description="Email a re-authorization link", permissions=["manage"])
    def send_reauthorization_link(self, request, queryset):
        sellers, refused = self._targets(request, queryset)
        actor = actor_for_user(request.user)
        counts = {outcome: 0 for outcome in LinkEmail}
        # One mail-server connection for the batch; a server that cannot be reached fails each
        # send below (reported as failed, claim given back), never the page.
        connection = get_connection(fail_silently=False)
        try:
            try:
                connection.open()
            except OSError:
                pass  # each send below tries again and is counted as failed
            for seller in sellers:
                _, outcome = reauthorization_link_send(seller=seller, actor=actor, connection=connection)
                counts[outcome] += 1
        finally:
            try:
                connection.close()
            except OSError:
                pass
        self.message_user(
            request,
            f"Re-authorization links: {counts[LinkEmail.SENT]} emailed, {counts[LinkEmail.ALREADY]} already emailed "
            f"earlier (not sent again), {counts[LinkEmail.NO_ADDRESS]} without an email address (link created, copy "
            "it from the seller's page).",
        )
        if counts[LinkEmail.FAILED]:
            self.message_user(
                request,
                f"{counts[LinkEmail.FAILED]} email(s) could not be sent (the mail server refused or did not answer); "
                "nothing was recorded for them, so running the action again retries them.",
                level=messages.ERROR,
            )
        self._report_refused(request, refused)

    @admin.action(description="Refresh access tokens now", permissions=["manage"])
    def refresh_now(self, request, queryset):
        sellers, refused = self._targets(request, queryset)
        actor = actor_for_user(request.user)
        counts = {outcome: 0 for outcome in RefreshOutcome.values}
        grants = {g.seller_id: g for g in Grant.objects.filter(seller__in=sellers).only("id", "seller_id")}
        targets = [(seller, grants[seller.pk]) for seller in sellers if seller.pk in grants]
        no_grant = len(sellers) - len(targets)
        not_yet = f"; {no_grant} not authorized yet" if no_grant else ""
        if len(targets) > MAX_INLINE_REFRESHES:
            for seller, _ in targets:
                event_record(
                    seller=seller,
                    kind=Event.Kind.REFRESH_REQUESTED,
                    detail="Queued for a refresh in the background.",
                    data={"outcome": "queued"},
                    actor=actor,
                )
            grant_refresh_enqueue(grant_ids=[grant.pk for _, grant in targets], actor=actor, force=True)
            self.message_user(
                request,
                f"Refresh: {len(targets)} sellers queued for a refresh in the background (more than "
                f"{MAX_INLINE_REFRESHES} selected){not_yet}. Each seller's history shows the outcome once "
                "the task workers have run.",
                messages.INFO,
            )
            self._report_refused(request, refused)
            return
        for seller, grant in targets:
            try:
                result = grant_refresh(grant=grant, actor=actor, force=True)
            except UndecryptableValue:
                result = RefreshResult(RefreshOutcome.UNDECRYPTABLE, UNDECRYPTABLE_NOTE)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            event_record(
                seller=seller,
                kind=Event.Kind.REFRESH_REQUESTED,
                detail=f"{RefreshOutcome(result.outcome).label}: {result.detail}",
                data={"outcome": result.outcome},
                actor=actor,
            )
        summary = ", ".join(f"{n} {RefreshOutcome(o).label.lower()}" for o, n in counts.items() if n)
        problems = (
            RefreshOutcome.REVOKED,
            RefreshOutcome.TRANSIENT_FAILURE,
            RefreshOutcome.CREDENTIALS_FAILED,
            RefreshOutcome.UNDECRYPTABLE,
        )
        level = messages.WARNING if any(counts.get(outcome) for outcome in problems) else messages.SUCCESS
        self.message_user(request, f"Refresh: {summary or 'nothing to refresh'}{not_yet}.", level)
        self._report_refused(request, refused)

    @admin.action(description="Test connection (getMarketplaceParticipations)", permissions=["manage"])
    def test_connection(self, request, queryset):
        sellers, refused = self._targets(request, queryset)
        actor = actor_for_user(request.user)
        skipped = max(len(sellers) - MAX_CONNECTION_TESTS, 0)
        ok = failed = 0
        for seller in sellers[:MAX_CONNECTION_TESTS]:
            marketplaces: list[str] = []
            try:
                response = spapi_request(seller=seller, method="GET", path=MARKETPLACE_PATH)
            except SPAPI_CALL_ERRORS as exc:
                success, detail = False, str(exc)
            except UndecryptableValue:
                success, detail = False, UNDECRYPTABLE_NOTE
            else:
                success = response.status_code == 200
                if success:
                    marketplaces = _marketplace_names(response.body)
                    # Kept for the identity check of a later re-authorization.
                    fingerprint = fingerprint_from_participations(region=seller.region, body=response.body)
                    grant = Grant.objects.filter(seller=seller).first()
                    if fingerprint is not None and fingerprint.store_names and grant is not None:
                        grant_fingerprint_record(grant=grant, fingerprint=fingerprint)
                    detail = "Marketplaces: " + (", ".join(marketplaces) or "none")
                else:
                    codes = ", ".join(response.error_codes) or "no error code"
                    detail = f"SP-API answered HTTP {response.status_code} ({codes})."
            event_record(
                seller=seller,
                kind=Event.Kind.CONNECTION_TESTED,
                detail=detail,
                data={"ok": success, "marketplaces": marketplaces},
                actor=actor,
            )
            if success:
                ok += 1
                self.message_user(request, f"{seller.name}: connected. {detail}", messages.SUCCESS)
            else:
                failed += 1
                self.message_user(request, f"{seller.name}: {detail}", messages.ERROR)
        self.message_user(
            request,
            f"Connection test: {ok} connected, {failed} failed"
            + (f", {skipped} not tested (at most {MAX_CONNECTION_TESTS} per click)" if skipped else "")
            + ".",
            messages.INFO,
        )
        self._report_refused(request, refused)

    @admin.action(description="Mark revoked (stop refreshing)", permissions=["manage"])
    def mark_revoked(self, request, queryset):
        """Asks for confirmation first: a revoked grant is never refreshed again."""
        sellers, refused = self._targets(request, queryset)
        if request.POST.get("post") != "yes":
            context = {
                **self.admin_site.each_context(request),
                "title": "Mark grants revoked?",
                "opts": self.model._meta,
                "sellers": sellers,
                "refused": refused,
                "action": "mark_revoked",
                "select_across": request.POST.get("select_across") == "1",
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
                "query_string": request.GET.urlencode(),
            }
            return TemplateResponse(request, "admin/sellers/seller/mark_revoked_confirmation.html", context)
        actor = actor_for_user(request.user)
        note = " ".join(request.POST.get("reason", "").split())[:300]
        reason = f"Marked revoked in the admin by {request.user.get_username()}" + (f": {note}" if note else ".")
        revoked = 0
        for seller in sellers:
            if grant_mark_revoked(seller=seller, reason=reason, actor=actor, kind=Event.Kind.MARKED_REVOKED):
                revoked += 1
        self.message_user(
            request,
            f"Marked revoked: {revoked}; {len(sellers) - revoked} already revoked or not authorized (unchanged).",
        )
        self._report_refused(request, refused)

    @admin.action(description="Export selected as CSV", permissions=["manage"])
    def export_csv(self, request, queryset):
        sellers, refused = self._targets(request, queryset)
        self._report_refused(request, refused)
        actor = actor_for_user(request.user)
        by_tenant: dict[int, list[Seller]] = {}
        for seller in sellers:
            by_tenant.setdefault(seller.tenant_id, []).append(seller)
        for tenant_sellers in by_tenant.values():
            # One event per tenant, not per row: who took a copy of the seller list, and when.
            event_record(
                tenant=tenant_sellers[0].tenant,
                kind=Event.Kind.EXPORTED,
                detail=f"{len(tenant_sellers)} seller(s) exported to CSV from the admin.",
                data={"sellers": len(tenant_sellers)},
                actor=actor,
            )
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="sellers-{timezone.now():%Y%m%d-%H%M}.csv"'
        writer = SafeDictWriter(response, fieldnames=EXPORT_FIELDS)
        writer.writeheader()
        for record in seller_records(Seller.objects.filter(pk__in=[s.pk for s in sellers])):
            record = dict(record)
            record["granted_scopes"] = " ".join(record["granted_scopes"])
            record["missing_scopes"] = " ".join(record["missing_scopes"])
            writer.writerow(record)
        return response


def _marketplace_names(body) -> list[str]:
    """`Amazon.com (US)` for each marketplace of a getMarketplaceParticipations answer."""
    payload = body.get("payload") if isinstance(body, dict) else None
    names = []
    for item in payload if isinstance(payload, list) else []:
        marketplace = item.get("marketplace") if isinstance(item, dict) else None
        if isinstance(marketplace, dict):
            names.append(f"{marketplace.get('name', '?')} ({marketplace.get('countryCode', '?')})")
    return names


# --- History -----------------------------------------------------------------------------------


@admin.register(Event)
class EventAdmin(TenantScopedAdmin):
    """Every history event (grants, revocations, renewals, staff actions) of the user's tenants."""

    list_display = ("created_at", "tenant_name", "seller_link", "kind", "detail_short", "actor")
    list_filter = ("kind", ("created_at", admin.DateFieldListFilter))
    search_fields = ("seller__name", "seller__selling_partner_id")
    list_per_page = 100
    show_full_result_count = False
    fields = ("created_at", "tenant_name", "seller_link", "kind", "detail", "data", "actor")
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
    def detail_short(self, obj):
        return obj.detail if len(obj.detail) <= 140 else obj.detail[:139] + "…"


# --- Tenant (owners) ---------------------------------------------------------------------------


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
        help_text="Set a new webhook signing secret. Leave empty to keep the current one.",
    )
    registered_scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="The roles the app is registered for; assumed granted when Amazon returns no scope.",
    )

    class Meta:
        model = Tenant
        # Field classes rather than a formfield callback: the admin builds its form with its own
        # callback, which keeps these.
        field_classes = {"redirect_uri": HttpsURLField, "webhook_url": HttpsURLField}
        # An allow-list: a field added to Tenant later (a secret, say) stays off the form until named here.
        fields = (
            "name", "slug", "application_id", "client_id", "client_secret_expires_at", "redirect_uri", "is_draft",
            "registered_scopes", "webhook_url",
        )

    def clean_registered_scopes(self):
        return [s for s in CATALOG if s in set(self.cleaned_data.get("registered_scopes") or [])]


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
    readonly_fields = ("client_secret_state", "webhook_secret_state", "credentials_state")
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

    @admin.display(description="Webhook secret")
    def webhook_secret_state(self, obj):
        if obj.pk is None:
            return "—"
        return "set" if Tenant.objects.filter(pk=obj.pk).exclude(webhook_secret="").exists() else "not set"

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


# --- Superuser-only admins: background tasks (their arguments span tenants) and users ------------

def _superuser_only(base):
    class SuperuserOnly(base):
        def has_module_permission(self, request):
            return request.user.is_active and request.user.is_superuser

        def has_view_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

        def has_add_permission(self, request, *args):
            return request.user.is_active and request.user.is_superuser and super().has_add_permission(request, *args)

        def has_change_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

        def has_delete_permission(self, request, obj=None):
            return request.user.is_active and request.user.is_superuser

    SuperuserOnly.__name__ = SuperuserOnly.__qualname__ = f"SuperuserOnly{base.__name__}"
    return SuperuserOnly


def _restrict_to_superusers(model) -> None:
    if admin.site.is_registered(model):
        model_admin = admin.site.get_model_admin(model)
        admin.site.unregister(model)
        admin.site.register(model, _superuser_only(type(model_admin)))


def _restrict_builtin_admins() -> None:
    for model in (Task, Success, Failure, Schedule, OrmQ, get_user_model(), Group):
        _restrict_to_superusers(model)


if not admin.site.is_registered(get_user_model()):
    admin.site.register(get_user_model(), UserAdmin)
if not admin.site.is_registered(Group):
    admin.site.register(Group, GroupAdmin)
_restrict_builtin_admins()

# Registered from their own module, which Django does not discover by itself. Imported last:
# it builds on TenantScopedAdmin from this module.
from sellers import admin_reviews  # noqa: E402,F401
