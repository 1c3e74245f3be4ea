"""Hosted pages sellers see: invitation, start of consent, callback and its outcome."""

from __future__ import annotations

import logging
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from sellers.models import TOKEN_FIELDS, Event, Grant, Invitation, Seller
from sellers.scopes import CATALOG, InvalidScope
from sellers.services.grants import AuthorizationOutcome
from sellers.services.invitations import invitation_resolve
from sellers.services.reviews import HeldForReview
from sellers.services.status import seller_status_transition

from .flows import CallbackFailed, amazon_return_record, callback_complete, callback_error_record, consent_start
from .models import OAuthState
from .outcomes import CONNECTED, already_connected_page, invitation_open_token, outcome_page, outcome_remember, rejected_page
from .pages import callback_problem, hosted_page, problem_page, read_query_params
from .state import StateRejected, state_consume

logger = logging.getLogger(__name__)

RESULT_SESSION_KEY = "spconnect_result"
# Callback parameters we read, and the longest value each may have. Amazon's are far shorter;
# anything longer is hostile or broken and is refused before we look at it.
CALLBACK_PARAMS = {
    "state": 256,
    "code": 2048,
    "spapi_oauth_code": 2048,
    "selling_partner_id": 64,
    "mws_auth_token": 512,
    "error": 64,
    "error_description": 1000,
    "error_uri": 1000,
}


def usable_invitation(view):
    """The URL's `token` must name an invitation that can still be used; the view gets both.

    Unknown: 404. Already used to connect fully ("You're already connected"), or expired: 410.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, token: str, **kwargs) -> HttpResponse:
        invitation = invitation_resolve(token)
        if invitation is None:
            return problem_page(
                request,
                title="Link not found",
                message="This link is not valid. Check that you copied the whole link, or ask the agency for a new one.",
                status=404,
            )
        name = invitation.tenant.name
        if invitation.completed_at is not None:
            # A finished link must not stay a standing invitation to swap the seller's account.
            return already_connected_page(request, invitation=invitation)
        if invitation.is_expired():
            return problem_page(
                request,
                title="This link has expired",
                message=f"Links from {name} are valid for a limited time. Ask {name} for a new link.",
                status=410,
                brand=name,
            )
        return view(request, token=token, invitation=invitation, **kwargs)

    return wrapper


def _scope_rows(tenant, requirements=None):
    reqs = list(requirements if requirements is not None else tenant.scope_requirements.all())
    by_scope = {r.scope: r for r in reqs}
    return [
        {"name": name, "label": CATALOG[name].label, "description": CATALOG[name].description,
         "reason": by_scope[name].reason, "required": by_scope[name].kind == "required"}
        for name in CATALOG
        if name in by_scope
    ]


@hosted_page
@require_GET
@usable_invitation
def invite(request: HttpRequest, token: str, invitation: Invitation) -> HttpResponse:
    tenant = invitation.tenant
    # Recorded once per step (a reload records nothing); a connected seller keeps its status.
    seller_status_transition(
        seller=invitation.seller, grant=None, kind=Event.Kind.LINK_OPENED, detail="Opened the link.",
        actor="seller", step=Seller.Status.OPENED, only_when_moved=True,
    )
    requirements = list(tenant.scope_requirements.all())
    unknown = [r.scope for r in requirements if r.scope not in CATALOG]
    return render(
        request,
        "authflow/invite.html",
        {
            "invitation": invitation,
            "tenant": tenant,
            "seller": invitation.seller,
            "scopes": _scope_rows(tenant, requirements),
            "config_error": str(InvalidScope(unknown)) if unknown else "",
            "token": token,
            # Back after a partial grant (the link stays open): say what is still missing.
            "missing_rows": _missing_rows(invitation.seller, _scope_rows(tenant, requirements)),
        },
    )


def _missing_rows(seller, rows: list[dict]) -> list[dict]:
    """The required scopes the seller's grant lacks; [] without a grant (nothing granted yet)."""
    grant = Grant.objects.defer(*TOKEN_FIELDS).filter(seller=seller).first()
    if grant is None:
        return []
    have = set(grant.effective_scopes)
    return [row for row in rows if row["required"] and row["name"] not in have]


@hosted_page
@require_POST
@usable_invitation
def start(request: HttpRequest, token: str, invitation: Invitation) -> HttpResponse:
    try:
        url = consent_start(invitation=invitation, session=request.session)
    except InvalidScope as exc:
        # The agency's configuration is wrong; refuse before sending the seller to Amazon.
        return problem_page(
            request,
            title="This connection is misconfigured",
            message=f"{exc} Please tell {invitation.tenant.name}.",
            status=400,
            brand=invitation.tenant.name,
        )
    return redirect(url)


def _usable_token(state: OAuthState) -> str | None:
    """The token of the state's invitation while it can still start a new attempt."""
    return invitation_open_token(state.invitation if state.invitation_id else None)


@hosted_page
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Amazon's redirect back: `state`, `selling_partner_id`, `spapi_oauth_code` (seed: `code`).

    Every problem page it can answer with is a row of `authflow.pages.CALLBACK_PROBLEMS`.
    """
    try:
        params = read_query_params(request, CALLBACK_PARAMS)
    except ValueError as exc:
        return callback_problem(request, "unreadable", detail=str(exc))
    try:
        state = state_consume(value=params.get("state"), session=request.session)
    except StateRejected as exc:
        logger.info("Callback rejected: %s", exc.reason)
        # A reload, or Back and Confirm on Amazon's page: the page this state ended on.
        return rejected_page(request, exc)
    if state.flow == OAuthState.Flow.AMAZON:
        amazon_return_record(state=state)

    tenant, retry_token = state.tenant.name, _usable_token(state)
    error = params.get("error")
    if error:
        callback_error_record(state=state, error=error, description=params.get("error_description", ""))
        key = error if error in ("access_denied", "invalid_scope") else "consent_error"
        return outcome_page(request, state=state, key=key, retry_token=retry_token, tenant=tenant)
    code = params.get("spapi_oauth_code") or params.get("code")
    if not code:
        return outcome_page(request, state=state, key="no_code", retry_token=retry_token, tenant=tenant)
    try:
        outcome = callback_complete(
            state=state,
            code=code,
            selling_partner_id=params.get("selling_partner_id", ""),
            mws_auth_token=params.get("mws_auth_token", ""),
        )
    except CallbackFailed as exc:
        return outcome_page(request, state=state, key=exc.kind, retry_token=retry_token, tenant=tenant)
    if isinstance(outcome, HeldForReview):
        return outcome_page(request, state=state, key="review", tenant=tenant)
    request.session[RESULT_SESSION_KEY] = _result_summary(state=state, outcome=outcome)
    outcome_remember(request, state=state, key=CONNECTED, tenant=tenant)
    # Post/redirect/get: reloading the result page must not replay the callback.
    return redirect("authflow:result")


def _result_summary(*, state: OAuthState, outcome: AuthorizationOutcome) -> dict:
    """What the result page shows, as kept in the session until then."""
    return {
        "tenant": state.tenant.name,
        "seller": outcome.seller.name,
        "status": outcome.status,
        "granted": outcome.granted_scopes,
        "missing_required": outcome.missing_required,
        "missing_optional": outcome.missing_optional,
        "confirmed": outcome.scopes_confirmed,
        "reauthorized": outcome.reauthorized,
        # The id, never the link's token: session rows are stored in clear and outlive the link.
        "invitation": state.invitation_id,
        "at": timezone.now().isoformat(),
    }


def _retry_token(invitation_id) -> str | None:
    """The token of the result's invitation while it can still be used, else None."""
    if not invitation_id:
        return None
    invitation = (
        Invitation.objects.filter(pk=invitation_id, expires_at__gt=timezone.now(), completed_at__isnull=True)
        .only("token")
        .first()
    )
    return invitation.token if invitation is not None else None


@hosted_page
@require_GET
def result(request: HttpRequest) -> HttpResponse:
    data = request.session.get(RESULT_SESSION_KEY)
    if not data:
        return problem_page(
            request,
            title="Nothing to show",
            message="There is no recent connection in this browser. Use the link the agency sent you.",
            status=404,
        )

    def rows(names):
        return [{"name": n, "label": CATALOG[n].label, "description": CATALOG[n].description} for n in names if n in CATALOG]

    return render(
        request,
        "authflow/result.html",
        {
            **data,
            "retry_token": _retry_token(data.get("invitation")),
            "granted_rows": rows(data["granted"]),
            "missing_rows": rows(data["missing_required"]),
            "missing_optional_rows": rows(data["missing_optional"]),
            "partial": bool(data["missing_required"]),
        },
    )
