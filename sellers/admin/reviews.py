"""Identity reviews in the admin: both accounts side by side, and the decision.

Viewers may look; owners and managers approve or reject (a POST with CSRF, from the review's
own page). Held tokens never reach a page: the queryset defers them.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from sellers.admin.base import TenantScopedAdmin
from sellers.models import TOKEN_FIELDS, IdentityReview
from sellers.services.events import actor_for_user
from sellers.services.reviews import ReviewClosed, identity_review_approve, identity_review_reject
from sellers.tenancy import Role, tenant_access


def _fingerprint_html(data: dict) -> str:
    if not data:
        return format_html('<span class="spc-muted">{}</span>', "Nothing known: SP-API gave no answer.")
    stores = data.get("store_names") or []
    markets = data.get("marketplaces") or []
    return format_html(
        "<dl class='spc-fingerprint'><dt>Stores</dt><dd>{}</dd><dt>Marketplaces</dt><dd>{}</dd>"
        "<dt>Asked in</dt><dd>{}</dd></dl>",
        format_html_join(", ", "{}", ((s,) for s in stores)) or "none named",
        format_html_join(", ", "{}", ((m,) for m in markets)) or "none",
        str(data.get("region", "")).upper() or "—",
    )


@admin.register(IdentityReview)
class IdentityReviewAdmin(TenantScopedAdmin):
    list_display = ("seller", "selling_partner_id", "region", "reason", "status", "created_at", "expires_at")
    list_filter = ("status", "reason")
    search_fields = ("selling_partner_id", "seller__name")
    ordering = ("-created_at",)
    add_role = None  # opened by the callback only
    change_role = None  # decided through the buttons, never edited
    fields = (
        "seller", "holder", "selling_partner_id", "region", "reason", "detail", "accounts",
        "status", "created_at", "expires_at", "decided_at", "decided_by",
    )
    readonly_fields = fields
    change_form_template = "admin/sellers/identityreview/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("seller", "holder", "tenant").defer(*TOKEN_FIELDS)

    @admin.display(description="Accounts side by side")
    def accounts(self, obj):
        return format_html(
            "<div class='spc-compare'><div><h3>Connected before</h3>{}</div><div><h3>New authorization</h3>{}</div></div>",
            _fingerprint_html(obj.reference_fingerprint),
            _fingerprint_html(obj.new_fingerprint),
        )

    def get_urls(self):
        return [
            path(
                "<path:object_id>/decide/",
                self.admin_site.admin_view(self.decide_view),
                name="sellers_identityreview_decide",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        review = self.get_object(request, object_id)
        extra = {
            "may_decide": review.status == IdentityReview.Status.OPEN
            and tenant_access(request.user).can(review.tenant_id, Role.MANAGER),
            "decide_url": reverse("admin:sellers_identityreview_decide", args=[review.pk]),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra)

    def decide_view(self, request, object_id):
        """POST decision=approve|reject; owners and managers of the review's tenant only."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        review = self.get_object(request, object_id)
        if not tenant_access(request.user).can(review.tenant_id, Role.MANAGER):
            raise Http404("No such review.")
        decision = request.POST.get("decision")
        actor = actor_for_user(request.user)
        change_url = reverse("admin:sellers_identityreview_change", args=[review.pk])
        try:
            if decision == "approve":
                outcome = identity_review_approve(review=review, actor=actor)
                self.message_user(
                    request,
                    f"Approved: {outcome.seller.name} is now connected to {review.selling_partner_id} "
                    f"({outcome.seller.get_status_display().lower()}).",
                    messages.SUCCESS,
                )
            elif decision == "reject":
                identity_review_reject(review=review, actor=actor)
                self.message_user(request, "Rejected: the held authorization was discarded.", messages.SUCCESS)
            else:
                self.message_user(request, "Choose approve or reject.", messages.ERROR)
        except ReviewClosed as exc:
            self.message_user(request, str(exc), messages.WARNING)
        return HttpResponseRedirect(change_url)
