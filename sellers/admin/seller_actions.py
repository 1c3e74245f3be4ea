"""The actions of the sellers list: email a link, refresh, test the connection, mark revoked, export.

Each action acts only on the selected sellers of tenants where the user is a manager (or owner)
and reports the rows it refused. Viewers get no actions.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.mail import get_connection
from django.http import HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils import timezone

from sellers.admin.base import UNDECRYPTABLE_NOTE, TenantScopedAdmin
from sellers.csv_safety import SafeDictWriter
from sellers.fields import UndecryptableValue
from sellers.models import TENANT_SECRET_FIELDS, Event, Grant, Seller
from sellers.services.events import actor_for_user, event_record
from sellers.services.exports import FIELDS as EXPORT_FIELDS
from sellers.services.exports import csv_row, seller_records
from sellers.services.grants import grant_mark_revoked
from sellers.services.identity import fingerprint_from_participations, grant_fingerprint_record
from sellers.services.invitations import LinkEmail, reauthorization_link_send
from sellers.services.spapi import SPAPI_CALL_ERRORS, spapi_request
from sellers.services.tokens import RefreshOutcome, RefreshResult, grant_refresh
from sellers.tasks import grant_refresh_enqueue
from sellers.tenancy import Role, tenant_access

# SP-API calls are slow; one click tests at most this many sellers.
MAX_CONNECTION_TESTS = 25
# Each refresh is an LWA round trip: one click refreshes at most this many sellers itself and
# hands a larger selection to the task workers, so the request never waits on dozens of calls.
MAX_INLINE_REFRESHES = 5
MARKETPLACE_PATH = "/sellers/v1/marketplaceParticipations"


class SellerActionsAdmin(TenantScopedAdmin):
    """The seller admin's actions; SellerAdmin (sellers/admin/sellers.py) lists them."""

    def has_manage_permission(self, request):
        """Actions need the manager role in at least one tenant; viewers get none."""
        return tenant_access(request.user).can_anywhere(Role.MANAGER)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

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
            # No action needs the tenant's secrets from here (a refresh reads them itself), and
            # decrypting them must not stop staff from revoking or exporting when a key is lost.
            .defer(*(f"tenant__{name}" for name in TENANT_SECRET_FIELDS))
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
        parts = [f"{counts[LinkEmail.SENT]} emailed"]
        if counts[LinkEmail.ALREADY]:
            parts.append(f"{counts[LinkEmail.ALREADY]} already emailed earlier (not sent again; re-send from the seller's page)")
        if counts[LinkEmail.NO_ADDRESS]:
            parts.append(f"{counts[LinkEmail.NO_ADDRESS]} without an email address (link created, copy it from the seller's page)")
        self.message_user(request, "Links: " + ", ".join(parts) + ".")
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
        # A seller who never connected has nothing to test (and testing must not re-invite them).
        connected = set(Grant.objects.filter(seller__in=sellers).values_list("seller_id", flat=True))
        no_grant = len(sellers)
        sellers = [seller for seller in sellers if seller.pk in connected]
        no_grant -= len(sellers)
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
                # Token errors already name the seller: not "Deny Seller: Deny Seller has not …".
                named = detail if detail.startswith(seller.name) else f"{seller.name}: {detail}"
                self.message_user(request, named, messages.ERROR)
        self.message_user(
            request,
            f"Connection test: {ok} connected, {failed} failed"
            + (f", {skipped} not tested (at most {MAX_CONNECTION_TESTS} per click)" if skipped else "")
            + (f", {no_grant} not authorized yet (nothing to test)" if no_grant else "")
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
                # From a seller's own page, "No" goes back there rather than to the list.
                "cancel_url": getattr(request, "spc_cancel_url", ""),
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
            writer.writerow(csv_row(record))  # as export_grants writes it
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
