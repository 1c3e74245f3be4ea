"""Hosted pages sellers see: invitation, start of consent, callback and its outcome."""

from __future__ import annotations

import logging
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from sellers.models import Invitation
from sellers.scopes import CATALOG, InvalidScope
from sellers.services.invitations import invitation_resolve

from . import services
from .models import OAuthState

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


def hosted_page(view):
    """Pages of the consent flow: never cached, and they leak no URL (state, code) by Referer."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        # strict-origin, not no-referrer: both send no path or query anywhere, but under
        # no-referrer browsers send `Origin: null` with our own form posts, which CSRF refuses.
        response["Referrer-Policy"] = "strict-origin"
        return response

    return never_cache(wrapper)


def _scope_rows(tenant, requirements=None):
    reqs = list(requirements if requirements is not None else tenant.scope_requirements.all())
    by_scope = {r.scope: r for r in reqs}
    return [
        {"name": name, "label": CATALOG[name].label, "description": CATALOG[name].description,
         "reason": by_scope[name].reason, "required": by_scope[name].kind == "required"}
        for name in CATALOG
        if name in by_scope
    ]


def _problem(request, *, title: str, message: str, status: int, retry_token: str | None = None, kind: str = "error"):
    return render(
        request,
        "authflow/problem.html",
        {"title": title, "message": message, "retry_token": retry_token, "kind": kind},
        status=status,
    )


def _unusable_link(request, invitation) -> HttpResponse | None:
    """Expired links, and links already used to connect fully, are refused (410)."""
    name = invitation.tenant.name
    if invitation.is_expired():
        return _problem(
            request,
            title="This link has expired",
            message=f"Links from {name} are valid for a limited time. Ask {name} for a new link.",
            status=410,
        )
    if invitation.completed_at is not None:
        # A finished link must not stay a standing invitation to swap the seller's account.
        return _problem(
            request,
            title="This link was already used",
            message=f"Your account was connected with this link. If you need to connect again, ask {name} for a new link.",
            status=410,
        )
    return None


@hosted_page
@require_GET
def invite(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_resolve(token)
    if invitation is None:
        return _problem(
            request,
            title="Link not found",
            message="This link is not valid. Check that you copied the whole link, or ask the agency for a new one.",
            status=404,
        )
    tenant = invitation.tenant
    unusable = _unusable_link(request, invitation)
    if unusable is not None:
        return unusable
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
        },
    )


@hosted_page
@require_POST
def start(request: HttpRequest, token: str) -> HttpResponse:
    invitation = invitation_resolve(token)
    if invitation is None:
        return _problem(request, title="Link not found", message="This link is not valid. Ask the agency for a new one.", status=404)
    unusable = _unusable_link(request, invitation)
    if unusable is not None:
        return unusable
    try:
        url = services.consent_start(invitation=invitation, session=request.session)
    except InvalidScope as exc:
        # The agency's configuration is wrong; refuse before sending the seller to Amazon.
        return _problem(
            request,
            title="This connection is misconfigured",
            message=f"{exc} Please tell {invitation.tenant.name}.",
            status=400,
        )
    return redirect(url)


def read_query_params(request: HttpRequest, limits: dict[str, int]) -> dict[str, str]:
    """The named query parameters, each at most once and within its length, else ValueError."""
    values = {}
    for name, max_len in limits.items():
        found = request.GET.getlist(name)
        if len(found) > 1:
            raise ValueError(f"The parameter {name} was sent more than once.")
        if found:
            if len(found[0]) > max_len:
                raise ValueError(f"The parameter {name} is too long.")
            values[name] = found[0]
    return values


@hosted_page
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """Amazon's redirect back: `state`, `selling_partner_id`, `spapi_oauth_code` (seed: `code`)."""
    try:
        params = read_query_params(request, CALLBACK_PARAMS)
    except ValueError as exc:
        return _problem(request, title="We could not read Amazon's answer", message=f"{exc} Start again from your link.", status=400)

    try:
        state = services.state_consume(value=params.get("state"), session=request.session)
    except services.StateRejected as exc:
        logger.info("Callback rejected: %s", exc.reason)
        # Never offer the invitation link to another browser: a leaked callback URL must not
        # turn into the seller's reusable link.
        retry = (
            exc.state.invitation.token
            if exc.state is not None and exc.state.invitation_id and exc.reason != "other_browser"
            else None
        )
        return _problem(request, title="This sign-in attempt cannot be used", message=exc.message, status=exc.status_code, retry_token=retry)
    if state.flow == OAuthState.Flow.AMAZON:
        services.amazon_return_record(state=state)

    retry_token = (
        state.invitation.token
        if state.invitation_id and not state.invitation.is_expired() and state.invitation.completed_at is None
        else None
    )
    error = params.get("error")
    if error:
        services.callback_error_record(state=state, error=error, description=params.get("error_description", ""))
        if error == "access_denied":
            return _problem(
                request,
                title="You declined the connection",
                message=f"Nothing was shared with {state.tenant.name}. If you declined by mistake, you can try again.",
                status=200,
                retry_token=retry_token,
                kind="declined",
            )
        if error == "invalid_scope":
            return _problem(
                request,
                title="Amazon refused a requested permission",
                message=f"invalid_scope: The requested scope is invalid or not available. Please tell {state.tenant.name}.",
                status=400,
                retry_token=None,
            )
        return _problem(
            request,
            title="Amazon could not complete the connection",
            message="Amazon reported an error. You can try again; if it keeps happening, contact the agency.",
            status=400,
            retry_token=retry_token,
        )

    code = params.get("spapi_oauth_code") or params.get("code")
    if not code:
        return _problem(request, title="Amazon's answer was incomplete", message="No authorization code came back. Please start again.", status=400, retry_token=retry_token)

    try:
        outcome = services.callback_complete(
            state=state,
            code=code,
            selling_partner_id=params.get("selling_partner_id", ""),
            mws_auth_token=params.get("mws_auth_token", ""),
        )
    except services.CallbackFailed as exc:
        return _problem(request, title="The connection could not be completed", message=exc.message, status=exc.status_code, retry_token=retry_token)
    if isinstance(outcome, services.HeldForReview):
        name = state.tenant.name
        return _problem(
            request,
            title=f"{name} will confirm your connection",
            message=f"Amazon accepted your approval. Before it is used, {name} will confirm that this Amazon account "
            f"belongs to {outcome.seller.name}; you will hear from them. You do not need to do anything else now.",
            status=200,
            kind="review",
        )

    request.session[RESULT_SESSION_KEY] = {
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
    # Post/redirect/get: reloading the result page must not replay the callback.
    return redirect("authflow:result")


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
        return _problem(request, title="Nothing to show", message="There is no recent connection in this browser. Use the link the agency sent you.", status=404)

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


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html")
