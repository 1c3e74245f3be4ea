"""The seller's own page: one sentence on what happened last and what to do next, and buttons
for the actions (email or re-send the link, copy it, refresh now, test the connection, mark
revoked) so staff act where they look.

The buttons are POST forms (CSRF-protected by the admin) to `<id>/act/<action>/`; emailing and
marking revoked ask for confirmation first. Every action is checked here, on the server: the
seller must be of a tenant the user manages (a viewer, or anyone else, gets the 404 a missing
seller gets). The refresh, test and revoke buttons run the list's actions on this one seller.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.admin import helpers
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect, QueryDict
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from sellers.admin.guidance import headline
from sellers.admin.seller_actions import SellerActionsAdmin
from sellers.admin_html import when
from sellers.models import Event, Grant, Seller
from sellers.selectors import seller_open_links
from sellers.services.events import actor_for_user
from sellers.services.invitations import LinkEmail, reauthorization_link_send
from sellers.tenancy import Role, tenant_access

# action in the URL -> the list action it runs on this seller (None: handled here).
PAGE_ACTIONS = {"email_link": None, "refresh": "refresh_now", "test": "test_connection", "revoke": "mark_revoked"}
EMAIL_RESULTS = {
    LinkEmail.SENT: (messages.SUCCESS, "Link emailed to {email}."),
    LinkEmail.ALREADY: (messages.INFO, "The link was emailed a moment ago by someone else; not sent twice."),
    LinkEmail.NO_ADDRESS: (messages.WARNING, "{name} has no email address: copy the link below and send it yourself."),
    LinkEmail.FAILED: (messages.ERROR, "The email could not be sent (the mail server refused or did not answer); try again."),
}


class SellerPageAdmin(SellerActionsAdmin):
    """The change page's headline and buttons; SellerAdmin (sellers/admin/sellers.py) builds on it."""

    change_form_template = "admin/sellers/seller/change_form.html"

    def page_context(self, request, seller: Seller) -> dict:
        grant = Grant.objects.filter(seller=seller).only("id", "seller_id", "status", "authorized_at").first()
        last = Event.objects.filter(seller=seller).exclude(kind=Event.Kind.STATUS_CHANGED).only(
            "kind", "detail", "created_at"
        ).order_by("-created_at", "-id").first()
        renewal_due = grant.renewal_due_at if grant is not None and grant.status == Grant.Status.ACTIVE else None
        if renewal_due is not None and renewal_due > timezone.now() + timedelta(days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS):
            renewal_due = None  # far off: nothing to do about it yet
        may_manage = tenant_access(request.user).can(seller.tenant_id, Role.MANAGER)
        link = seller_open_links(seller_ids=[seller.pk]).defer("token").first() if may_manage else None
        return {
            "spc_headline": headline(status=seller.status, last=last, renewal_due=renewal_due),
            "spc_may_manage": may_manage,
            "spc_has_link": link is not None,
            "spc_link_emailed": when(link.last_emailed_at) if link is not None and link.last_emailed_at else "",
            "spc_connected": grant is not None and grant.status == Grant.Status.ACTIVE,
            "spc_has_email": bool(seller.email),
            "spc_urls": {name: reverse("admin:sellers_seller_act", args=[seller.pk, name]) for name in PAGE_ACTIONS},
        }

    def change_view(self, request, object_id, form_url="", extra_context=None):
        seller = self.get_object(request, object_id)
        context = {**(extra_context or {}), **self.page_context(request, seller)}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self):
        return [
            path("<path:object_id>/act/<str:action>/", self.admin_site.admin_view(self.seller_act_view),
                 name="sellers_seller_act"),
            *super().get_urls(),
        ]

    def seller_act_view(self, request, object_id, action):
        if action not in PAGE_ACTIONS:
            raise Http404("No such action.")
        seller = self.get_object(request, object_id)
        if not tenant_access(request.user).can(seller.tenant_id, Role.MANAGER):
            raise Http404("No such seller.")
        change_url = reverse("admin:sellers_seller_change", args=[seller.pk])
        confirms = action in ("email_link", "revoke")
        if request.method != "POST" and not confirms:
            return HttpResponseNotAllowed(["POST"])
        if action == "email_link":
            return self._email_link(request, seller, change_url)
        # The list's action on this one seller: the selection is this seller only, whatever was posted.
        posted = request.POST.copy() if request.method == "POST" else QueryDict(mutable=True)
        posted.setlist(helpers.ACTION_CHECKBOX_NAME, [str(seller.pk)])
        posted.pop("select_across", None)
        request.POST = posted
        request.spc_cancel_url = change_url
        response = getattr(self, str(PAGE_ACTIONS[action]))(request, self.get_queryset(request).filter(pk=seller.pk))
        return response or HttpResponseRedirect(change_url)

    def _email_link(self, request, seller: Seller, change_url: str):
        """GET: what will be sent, to whom; POST: send it (again, if it was sent before)."""
        link = seller_open_links(seller_ids=[seller.pk]).defer("token").first()
        # The form carries when the link had last been emailed as the page showed it: a second
        # submit (double click, Back and submit, a reload) finds it changed and sends nothing.
        shown = _emailed_marker(link)
        if request.method == "POST":
            if request.POST.get("emailed_marker") != shown:
                self.message_user(
                    request,
                    f"The link was emailed to {seller.name} after that page was shown: not sent again.",
                    messages.WARNING,
                )
                return HttpResponseRedirect(change_url)
            _, outcome = reauthorization_link_send(seller=seller, actor=actor_for_user(request.user), resend=True)
            level, text = EMAIL_RESULTS[outcome]
            self.message_user(request, text.format(email=seller.email, name=seller.name), level)
            return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Email the link to {seller.name}?",
            "opts": self.model._meta,
            "seller": seller,
            "link": link,
            "emailed": when(link.last_emailed_at) if link is not None and link.last_emailed_at else "",
            "expires": when(link.expires_at) if link is not None else "",
            "change_url": change_url,
            "emailed_marker": shown,
        }
        return TemplateResponse(request, "admin/sellers/seller/email_link_confirmation.html", context)


def _emailed_marker(link) -> str:
    """Which link, and when it was last emailed: changes with every email sent."""
    if link is None:
        return "none"
    return f"{link.pk}:{link.last_emailed_at.isoformat() if link.last_emailed_at else 'never'}"
