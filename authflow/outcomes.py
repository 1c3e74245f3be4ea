"""What the seller sees after the callback, again: a reload, or Back and Confirm on Amazon's page.

The callback burns its state, so the same URL a second time is a used state. This browser's
session remembers the page each state ended on (never a token: session rows are stored in
clear), and a used state shows that page again rather than an error. Without that memory, a
link that has since connected the seller says so instead of offering a start that would only
answer "already used".
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from sellers.models import Invitation, Seller

from .models import OAuthState
from .pages import callback_problem, problem_page
from .state import StateRejected

OUTCOME_SESSION_KEY = "spconnect_callback_outcome"
CONNECTED = "connected"  # the callback stored a grant; its page is the result page


def invitation_open_token(invitation: Invitation | None) -> str | None:
    """The invitation's token while it can still start a new attempt, else None."""
    if invitation is None or invitation.is_expired() or invitation.completed_at is not None:
        return None
    return invitation.token


def _open_token_by_id(invitation_id: int | None) -> str | None:
    if not invitation_id:
        return None
    return invitation_open_token(Invitation.objects.filter(pk=invitation_id).only("token", "expires_at", "completed_at").first())


def outcome_remember(request: HttpRequest, *, state: OAuthState, key: str, tenant: str) -> None:
    request.session[OUTCOME_SESSION_KEY] = {"state": state.pk, "key": key, "tenant": tenant, "invitation": state.invitation_id}


def outcome_page(
    request: HttpRequest, *, state: OAuthState, key: str, tenant: str, retry_token: str | None = None
) -> HttpResponse:
    """The callback's page `key` (a row of CALLBACK_PROBLEMS), remembered for a reload."""
    outcome_remember(request, state=state, key=key, tenant=tenant)
    return callback_problem(request, key, retry_token=retry_token, tenant=tenant)


def already_connected_page(request: HttpRequest, *, invitation: Invitation) -> HttpResponse:
    """For a link that completed a connection: "You're already connected" while the seller still
    is (information, not an error), else that the link was used. Gone (410) either way: the link
    cannot start anything."""
    seller, tenant = invitation.seller, invitation.tenant.name
    if seller.status in (Seller.Status.ACTIVE, Seller.Status.FAILING):
        when = timezone.localtime(invitation.completed_at)
        return problem_page(
            request,
            title="You're already connected",
            message=f"{seller.name} was connected to {tenant} with this link on {when:%-d %B %Y}. There is nothing "
            f"more to do here. If {tenant} needs you to connect again, they will send you a new link.",
            status=410,
            kind="info",
            brand=tenant,
        )
    return problem_page(
        request,
        title="This link was already used",
        message=f"Your account was connected with this link. If you need to connect again, ask {tenant} for a new link.",
        status=410,
        kind="info",
        brand=tenant,
    )


def rejected_page(request: HttpRequest, rejected: StateRejected) -> HttpResponse:
    """The page for a callback whose state cannot be used."""
    state = rejected.state
    if state is None:
        return callback_problem(request, rejected.reason)
    tenant = state.tenant.name
    if rejected.reason == "used":
        remembered = request.session.get(OUTCOME_SESSION_KEY) or {}
        if remembered.get("state") == state.pk:
            if remembered["key"] == CONNECTED:
                return redirect("authflow:result")
            return callback_problem(
                request, remembered["key"], retry_token=_open_token_by_id(remembered["invitation"]), tenant=tenant
            )
        if state.invitation is not None and state.invitation.completed_at is not None:
            return already_connected_page(request, invitation=state.invitation)
    # A problem that offers no retry (another browser's state) ignores the token.
    return callback_problem(request, rejected.reason, retry_token=invitation_open_token(state.invitation), tenant=tenant)
