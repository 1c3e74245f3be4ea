"""Sellers in the admin: the list, the seller's page (grant, history, re-authorization link).

Tokens and secrets are never read into a page: grant columns come from `.defer()`ed querysets,
and the change page reads the tokens once, to show a masked tail. The list's actions are in
sellers/admin/seller_actions.py, the page's headline and buttons in sellers/admin/seller_page.py.
Dates are shown in one format (`sellers.admin_html.when`, UTC).
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import Q
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from sellers.admin.base import GRANT_SECRET_FIELDS, UNDECRYPTABLE_NOTE
from sellers.admin.filters import FunnelFilter, RenewalDueFilter, ScopeGrantedFilter, ScopeMissingFilter, tenant_filter_for
from sellers.admin.seller_page import SellerPageAdmin
from sellers.admin_html import scope_chips, scope_labels_in, scope_summary, status_badge, when
from sellers.fields import UndecryptableValue, mask_secret
from sellers.models import TENANT_SECRET_FIELDS, TOKEN_FIELDS, Event, Grant, IdentityReview, Seller
from sellers.selectors import required_scopes, required_scopes_by_tenant, seller_open_links
from sellers.services.events import actor_for_user
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create
from sellers.services.status import missing_required_scopes
from sellers.tenancy import Role, tenant_access


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
    fields = ("when_col", "kind", "detail_labels", "actor")
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

    @admin.display(description="When (UTC)")
    def when_col(self, obj):
        return when(obj.created_at)

    @admin.display(description="Detail")
    def detail_labels(self, obj):
        return scope_labels_in(obj.detail)


class SellerAddForm(forms.ModelForm):
    class Meta:
        model = Seller
        fields = ("tenant", "name", "email", "region")


@admin.register(Seller)
class SellerAdmin(SellerPageAdmin):
    # Short cells so every column fits 1280 px beside the navigation and the filters.
    list_display = (
        "name",
        "tenant_name",
        "region_col",
        "amazon_id_col",
        "status_col",
        "scopes_col",
        "token_col",
        "renewal_due_col",
    )
    # Deleting a seller would erase its append-only history: superusers only (the default).
    delete_role = None
    list_display_links = ("name",)
    list_filter = ("status", "region", FunnelFilter, ScopeGrantedFilter, ScopeMissingFilter, RenewalDueFilter)
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
        "created_col",
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

    def get_list_display(self, request):
        # Staff of one tenant see only its sellers: a Tenant column would repeat one name.
        if tenant_access(request.user).is_multi_tenant:
            return self.list_display
        return tuple(name for name in self.list_display if name != "tenant_name")

    def add_view(self, request, form_url="", extra_context=None):
        return super().add_view(request, form_url, {"title": "Invite a seller", **(extra_context or {})})

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = SellerAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return [(None, {"fields": ("tenant", "name", "email", "region"),
                            "description": "Creates the seller (status: invited) and its onboarding link to send them."})]
        return [
            ("Profile", {"fields": ("name", "email", "tenant_name", "region", "selling_partner_id", "status_col", "created_col")}),
            ("Current grant", {"fields": ("grant_summary", "identity_reviews")}),
            ("The seller's link", {"fields": ("reauthorization_link",)}),
        ]

    @admin.display(description="Identity reviews")
    def identity_reviews(self, obj):
        """Authorizations held because their account could not be confirmed, waiting for staff."""
        waiting = list(
            IdentityReview.objects.filter(Q(seller=obj) | Q(holder=obj), status=IdentityReview.Status.OPEN)
            .only("pk", "selling_partner_id", "expires_at")
            .order_by("expires_at")
        )
        if not waiting:
            return "None waiting."
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">A new authorization for {} waits for a decision</a> (until {})',
            (
                (reverse("admin:sellers_identityreview_change", args=[r.pk]), r.selling_partner_id, f"{when(r.expires_at)} UTC")
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
        connected = grant is not None and grant.status == Grant.Status.ACTIVE
        held = len(grant.effective_scopes) if connected and grant is not None else 0
        missing = missing_required_scopes(grant=grant, required=required) if connected else []
        return scope_summary(held=held, required=required, missing=missing, connected=connected)

    @admin.display(description="Access token", ordering="grant__access_token_expires_at")
    def token_expires_col(self, obj):
        grant = self._grant(obj)
        if grant is None or grant.status != Grant.Status.ACTIVE or grant.access_token_expires_at is None:
            return "—"
        minutes = int((grant.access_token_expires_at - timezone.now()).total_seconds() // 60)
        if minutes < 0:
            return format_html('<span class="spc-muted">expired</span>')
        return f"{minutes} min left" if minutes >= 1 else "under 1 min left"

    @admin.display(description="Created (UTC)")
    def created_col(self, obj):
        return when(obj.created_at)

    @admin.display(description="Region", ordering="region")
    def region_col(self, obj):
        return format_html('<abbr title="{}">{}</abbr>', obj.get_region_display(), obj.region.upper())

    @admin.display(description="Amazon ID", ordering="selling_partner_id")
    def amazon_id_col(self, obj):
        return obj.selling_partner_id or "—"

    @admin.display(description="Access token · last refresh (UTC)", ordering="grant__access_token_expires_at")
    def token_col(self, obj):
        refreshed = self.last_refresh_col(obj)
        if refreshed == "—":
            return self.token_expires_col(obj)
        return format_html('{}<span class="spc-missing">{}</span>', self.token_expires_col(obj), refreshed)

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
        return format_html('<span class="{}" title="authorized {}">{}</span>', css, when(grant.authorized_at), when(due, date_only=True))

    @admin.display(description="Last refresh (UTC)", ordering="grant__last_refreshed_at")
    def last_refresh_col(self, obj):
        grant = self._grant(obj)
        if grant is None or grant.last_refreshed_at is None:
            return "—"
        return when(grant.last_refreshed_at)

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
            tokens = Grant.objects.filter(pk=grant.pk).only(*TOKEN_FIELDS).first()
        except UndecryptableValue:
            refresh_shown = "cannot be decrypted with the configured keys"
            problem = [("Tokens", format_html('<strong class="spc-overdue">{}</strong>', UNDECRYPTABLE_NOTE))]
        else:
            refresh_shown, problem = mask_secret(tokens.refresh_token if tokens else ""), []
        rows = [
            *problem,
            ("Status", grant.get_status_display() + (f" since {when(grant.revoked_at)} UTC" if grant.revoked_at else "")),
            ("Scopes", scope_chips(grant.effective_scopes, missing, confirmed=grant.scopes_confirmed)),
            ("Confirmed by Amazon", "yes" if grant.scopes_confirmed else "no (assumed from the app's registration)"),
            ("Refused by Amazon", ", ".join(refused) or "—"),
            ("Authorized", f"{when(grant.authorized_at)} UTC"),
            ("Renewal due", when(grant.renewal_due_at, date_only=True)),
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
            when(invitation.expires_at),
            f", emailed {when(invitation.last_emailed_at)} UTC" if invitation.last_emailed_at else "",
        )
        if not may_manage:
            # The link is a bearer credential: whoever holds it can connect an Amazon account to
            # this seller. Viewers learn that it exists, never the URL.
            return format_html('{} <span class="spc-muted">Only owners and managers can see or copy it.</span>', about)
        return format_html(
            '<input type="text" readonly class="vTextField spc-link" id="spc-reauth-link" aria-label="The seller\'s link" value="{}"> '
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
                self.message_user(request, f"Created {seller.name}'s {invitation.get_purpose_display().lower()} link.")
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

