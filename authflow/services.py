"""The consent flow: build Amazon's consent URL, issue and consume state, complete the callback."""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.models import Event, Grant, Invitation, Seller, Tenant
from sellers.scopes import validate_scopes
from sellers.services.credentials import tenant_lwa_call
from sellers.services.events import event_record
from sellers.services.grants import AuthorizationOutcome, grant_store_authorization
from sellers.services.identity import account_fingerprint, grant_account_check
from sellers.services.reviews import HeldForReview, identity_review_open

from .models import OAuthState

logger = logging.getLogger(__name__)

SESSION_BINDING_KEY = "spconnect_browser"
CONSENT_PATH = "/apps/authorize/consent"


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def browser_binding(session, *, create: bool) -> str | None:
    """A random value kept in this browser's session; its hash ties a state to the browser."""
    value = session.get(SESSION_BINDING_KEY)
    if value is None and create:
        value = secrets.token_urlsafe(32)
        if session.session_key:
            # A session id someone planted before this point must not carry the binding.
            session.cycle_key()
        session[SESSION_BINDING_KEY] = value
    return value


def requested_scopes_for(tenant: Tenant) -> tuple[list[str], list[str]]:
    """(required, optional) scopes to request, validated against the catalog.

    Raises InvalidScope (the seed's `invalid_scope` wording) for anything outside the catalog.
    """
    reqs = list(tenant.scope_requirements.all())
    validate_scopes(r.scope for r in reqs)
    return tenant.scopes_by_kind(reqs)


def consent_url_build(*, tenant: Tenant, region: str, state: str, scopes: list[str]) -> str:
    params = {
        "application_id": tenant.application_id,
        "state": state,
        "redirect_uri": tenant.effective_redirect_uri,
    }
    if scopes:
        params["scope"] = " ".join(validate_scopes(scopes))
    if tenant.is_draft:
        params["version"] = "beta"
    host = settings.SPAPI_CONSENT_HOSTS[region].rstrip("/")
    return f"{host}{CONSENT_PATH}?{urlencode(params)}"


def state_create(
    *,
    session,
    tenant: Tenant,
    region: str,
    scopes: list[str],
    flow: str = OAuthState.Flow.INVITATION,
    seller: Seller | None = None,
    invitation: Invitation | None = None,
    claimed_selling_partner_id: str = "",
) -> str:
    """Store a new state (hashed) bound to this browser; return the state value to send."""
    value = secrets.token_urlsafe(32)  # 256 bits
    binding = browser_binding(session, create=True)
    OAuthState.objects.create(
        state_hash=_sha256(value),
        browser_hash=_sha256(binding),
        flow=flow,
        tenant=tenant,
        seller=seller,
        invitation=invitation,
        region=region,
        requested_scopes=scopes,
        claimed_selling_partner_id=claimed_selling_partner_id,
        expires_at=timezone.now() + timedelta(seconds=settings.SPCONNECT_STATE_TTL_SECONDS),
    )
    return value


def consent_start(*, invitation: Invitation, session) -> str:
    """Begin consent for an invitation; returns the Seller Central consent URL to redirect to."""
    tenant = invitation.tenant
    required, optional = requested_scopes_for(tenant)
    scopes = validate_scopes(required + optional)
    seller = invitation.seller
    state = state_create(
        session=session,
        tenant=tenant,
        region=seller.region,
        scopes=scopes,
        seller=seller,
        invitation=invitation,
    )
    event_record(seller=seller, kind=Event.Kind.CONSENT_STARTED, detail="Sent to Amazon's consent page.", data={"scopes": scopes}, actor="seller")
    return consent_url_build(tenant=tenant, region=seller.region, state=state, scopes=scopes)


class StateRejected(Exception):
    """The callback's state cannot be used. `reason` is one of the REASONS keys."""

    REASONS = {
        "missing": (400, "The link back from Amazon had no state. Start again from your invitation link."),
        "unknown": (400, "This sign-in attempt is not one we started. Start again from your invitation link."),
        "expired": (400, "This sign-in attempt took longer than 10 minutes and expired. Start again."),
        "used": (400, "This sign-in attempt was already completed. Start again if you need to."),
        "other_browser": (
            403,
            "This sign-in attempt was started in a different browser. Finish it in the browser where "
            "you started, or start again here.",
        ),
    }

    def __init__(self, reason: str, state: OAuthState | None = None):
        self.reason = reason
        self.state = state
        self.status_code, self.message = self.REASONS[reason]
        super().__init__(reason)


def state_consume(*, value: str | None, session) -> OAuthState:
    """Check and burn a state: exists, same browser, not used, not expired. Single use."""
    if not value:
        raise StateRejected("missing")
    if len(value) > 256:
        raise StateRejected("unknown")
    state = OAuthState.objects.select_related("tenant", "seller", "invitation").filter(state_hash=_sha256(value)).first()
    if state is None:
        raise StateRejected("unknown")
    binding = browser_binding(session, create=False)
    # Check the browser before burning the state: a replay from elsewhere must not spoil the
    # genuine seller's attempt.
    if binding is None or not secrets.compare_digest(_sha256(binding), state.browser_hash):
        raise StateRejected("other_browser", state)
    if state.used_at is not None:
        raise StateRejected("used", state)
    now = timezone.now()
    if state.expires_at <= now:
        raise StateRejected("expired", state)
    # Conditional UPDATE: of two concurrent callbacks with one state, exactly one wins.
    if OAuthState.objects.filter(pk=state.pk, used_at__isnull=True).update(used_at=now) != 1:
        raise StateRejected("used", state)
    state.used_at = now
    return state


class CallbackFailed(Exception):
    """The callback could not complete; `kind` picks the page, `message` says what to do."""

    def __init__(self, kind: str, message: str, status_code: int = 400, state: OAuthState | None = None):
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.state = state
        super().__init__(kind)


SELLING_PARTNER_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


@dataclass(frozen=True)
class CallbackTarget:
    """Where a completed authorization would go.

    `seller` is None when a new seller is to be created (the Login URI, an id not seen before).
    `holder` is the tenant's seller already holding the id in this region, if any (it may be
    `seller` itself): its grant is what the new tokens must be shown to match.
    """

    seller: Seller | None
    selling_partner_id: str
    holder: Seller | None


ACCOUNT_IN_USE = (
    "This Amazon account is already connected to the agency under another invitation. "
    "Ask the agency for that seller's re-authorization link."
)


def _callback_target(*, state: OAuthState, selling_partner_id: str) -> CallbackTarget:
    """Refuse what can be refused before the code exchange; nothing is written here.

    `selling_partner_id` is not signed by Amazon: it is a claim, checked against the account
    behind the tokens once they exist (`callback_complete`).
    """
    tenant = state.tenant
    if selling_partner_id and not SELLING_PARTNER_ID_RE.match(selling_partner_id):
        raise CallbackFailed("error", "Amazon's answer named an invalid seller account.", state=state)
    if state.flow == OAuthState.Flow.AMAZON:
        claimed = state.claimed_selling_partner_id
        if claimed and selling_partner_id and claimed != selling_partner_id:
            raise CallbackFailed("account_mismatch", "Amazon named a different account than the one that started.", state=state)
        spid = selling_partner_id or claimed
        if not spid:
            raise CallbackFailed("error", "Amazon did not say which seller account was authorized.", state=state)
        seller = Seller.objects.filter(tenant=tenant, region=state.region, selling_partner_id=spid).first()
        return CallbackTarget(seller, spid, seller)

    seller = state.seller
    if seller is None:
        raise CallbackFailed("error", "This sign-in attempt is not linked to a seller.", state=state)
    if not selling_partner_id:
        if seller.selling_partner_id and Grant.objects.filter(seller=seller).exists():
            # A connected seller's renewal must name the account, or anyone could swap it.
            raise CallbackFailed("account_mismatch", "Amazon's answer did not name the seller account. Please start again.", state=state)
        # The seed's flow names no account: a grant already there is still checked.
        return CallbackTarget(seller, "", seller)
    if seller.selling_partner_id and seller.selling_partner_id != selling_partner_id:
        raise CallbackFailed(
            "account_mismatch",
            "You signed in with a different Amazon account than the one connected before. "
            "Sign in with the original account, or ask the agency for a new invitation.",
            state=state,
        )
    holder = Seller.objects.filter(tenant=tenant, region=seller.region, selling_partner_id=selling_partner_id).first()
    return CallbackTarget(seller, selling_partner_id, holder)


def _record(*, state: OAuthState, seller: Seller | None, **kwargs) -> None:
    if seller is not None:
        event_record(seller=seller, **kwargs)
    else:
        event_record(tenant=state.tenant, **kwargs)


@sensitive_variables("code")
def _exchange(*, state: OAuthState, code: str, target: CallbackTarget) -> amazon.TokenResponse:
    """The authorization code for tokens; a failure is recorded and raised as CallbackFailed."""
    tenant = state.tenant
    try:
        token = tenant_lwa_call(
            tenant=tenant,
            call=lambda secret: amazon.lwa_exchange_code(
                client_id=tenant.client_id,
                client_secret=secret,
                code=code,
                redirect_uri=tenant.effective_redirect_uri,
            ),
        )
        if not token.refresh_token:
            raise amazon.LwaTransient("malformed_response", "LWA answered without a refresh token.")
    except amazon.LwaError as exc:
        _record(
            state=state,
            seller=target.seller,
            kind=Event.Kind.EXCHANGE_FAILED,
            detail=f"{exc.error}: {exc.description}"[:500],
            data={"error": exc.error, "http_status": exc.status_code, "selling_partner_id": target.selling_partner_id},
            actor="amazon",
        )
        logger.warning("Code exchange failed for tenant %s: %s", tenant.pk, exc.error)
        if isinstance(exc, amazon.LwaInvalidClient):
            from sellers.services.tenants import tenant_credentials_failed

            tenant_credentials_failed(tenant=tenant, error=exc)
            message = "The agency's Amazon app credentials were refused. The agency has been told; please try again later."
        elif isinstance(exc, amazon.LwaInvalidGrant):
            message = "Amazon did not accept the authorization (it may have expired after 5 minutes). Please start again."
        else:
            message = "Amazon could not be reached to finish the connection. Please try again in a few minutes."
        raise CallbackFailed("exchange_failed", message, status_code=502 if exc.transient else 400, state=state) from None
    return token


@sensitive_variables("code", "token")
def callback_complete(
    *, state: OAuthState, code: str, selling_partner_id: str = "", mws_auth_token: str = ""
) -> AuthorizationOutcome | HeldForReview:
    """Exchange the code, check whose account it is, and store the grant or hold it for review.

    On any failure, and whenever the account cannot be shown to be the one already connected,
    the stored grant is untouched.
    """
    target = _callback_target(state=state, selling_partner_id=selling_partner_id)
    token = _exchange(state=state, code=code, target=target)
    # Asked in the state's region: a token of another region cannot answer there.
    new = account_fingerprint(region=state.region, access_token=token.access_token)

    verification = ""
    holder = target.holder
    holder_grant = Grant.objects.filter(seller=holder).first() if holder is not None else None
    if holder_grant is not None or (holder is not None and holder != target.seller):
        check = grant_account_check(grant=holder_grant, region=state.region, new=new)
        if not check.same:
            review = identity_review_open(
                seller=target.seller or holder,
                holder=holder,
                invitation=state.invitation,
                selling_partner_id=target.selling_partner_id or (holder.selling_partner_id if holder else ""),
                region=state.region,
                token=token,
                mws_auth_token=mws_auth_token,
                requested_scopes=list(state.requested_scopes),
                check=check,
            )
            return HeldForReview(review=review, seller=review.seller)
        if holder != target.seller:
            # The same account, already connected as another seller: that seller's link renews it.
            raise CallbackFailed("account_in_use", ACCOUNT_IN_USE, state=state)
        verification = check.detail

    try:
        with transaction.atomic():
            seller = target.seller
            if seller is None:
                seller = Seller.objects.create(
                    tenant=state.tenant, region=state.region, selling_partner_id=target.selling_partner_id,
                    name=f"Amazon seller {target.selling_partner_id}",
                )
            outcome = grant_store_authorization(
                seller=seller,
                token=token,
                selling_partner_id=target.selling_partner_id,
                mws_auth_token=mws_auth_token,
                optional_scopes=list(state.requested_scopes),
                verification=verification,
                fingerprint=new,
            )
            if state.invitation_id and not outcome.missing_required:
                Invitation.objects.filter(pk=state.invitation_id, completed_at__isnull=True).update(completed_at=timezone.now())
    except IntegrityError:
        # Two callbacks created the same (tenant, region, selling_partner_id) at once.
        raise CallbackFailed("error", "This account was connected at the same moment in another window. Please start again.", state=state) from None
    return outcome


KNOWN_CONSENT_ERRORS = {
    "access_denied", "invalid_scope", "invalid_request", "unauthorized_client", "server_error",
    "temporarily_unavailable", "unsupported_response_type",
}


def callback_error_record(*, state: OAuthState, error: str, description: str) -> None:
    """Amazon sent the seller back with an error (declined, invalid scope, …).

    Only known error codes are recorded: the parameters come from the browser, not from Amazon.
    """
    code = error if error in KNOWN_CONSENT_ERRORS else "unknown_error"
    kind = Event.Kind.DENIED if code == "access_denied" else Event.Kind.CONSENT_ERROR
    detail = "The seller declined on Amazon's consent page." if kind == Event.Kind.DENIED else f"Amazon returned {code}."
    _record(state=state, seller=state.seller, kind=kind, detail=detail, data={"error": code}, actor="seller")


def amazon_return_record(*, state: OAuthState) -> None:
    """A seller started from Amazon (the Login URI) came back with a valid state.

    Recorded here rather than when the Login URI was opened: that URL is public, and history
    must not grow with every anonymous request.
    """
    spid = state.claimed_selling_partner_id
    seller = Seller.objects.filter(tenant=state.tenant, region=state.region, selling_partner_id=spid).first() if spid else None
    _record(
        state=state,
        seller=seller,
        kind=Event.Kind.CONSENT_STARTED,
        detail=f"Started from Amazon (Login URI) for {spid or 'an unnamed seller'} ({state.region.upper()}); back from Amazon's consent page.",
        data={"flow": OAuthState.Flow.AMAZON.value, "region": state.region, "selling_partner_id": spid},
        actor="amazon",
    )
