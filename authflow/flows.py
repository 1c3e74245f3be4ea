"""The consent flow: send the seller to Amazon's consent page, and complete the callback.

Two starts, one finish. An invitation's start (`consent_start`) and Amazon's Login URI
(`login_uri_start`) each create a state bound to the browser (`authflow.state`). The callback
(`callback_complete`) exchanges the code, checks whose account the tokens belong to
(`sellers/services/identity.py`), and stores the grant or holds it for an identity review.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.models import TOKEN_FIELDS, Event, Grant, Invitation, Seller, Tenant
from sellers.selectors import grant_version, requested_scopes
from sellers.services.credentials import tenant_lwa_call
from sellers.services.events import event_record
from sellers.services.grants import AuthorizationOutcome, grant_store_authorization
from sellers.services.identity import AccountCheck, AccountFingerprint, account_fingerprint, grant_account_check
from sellers.services.reviews import HeldForReview, identity_review_open
from sellers.services.status import seller_status_transition
from sellers.services.tenants import tenant_credentials_failed

from .models import OAuthState
from .state import state_create

logger = logging.getLogger(__name__)

CONSENT_PATH = "/apps/authorize/consent"
SELLING_PARTNER_ID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


# --- Starting ---------------------------------------------------------------------------------


def consent_url_build(*, tenant: Tenant, region: str, state: str, scopes: list[str]) -> str:
    """Seller Central's consent page for `state`; `scopes` are already checked against the catalog."""
    params = {
        "application_id": tenant.application_id,
        "state": state,
        "redirect_uri": tenant.effective_redirect_uri,
    }
    if scopes:
        params["scope"] = " ".join(scopes)
    if tenant.is_draft:
        params["version"] = "beta"
    host = settings.SPAPI_CONSENT_HOSTS[region].rstrip("/")
    return f"{host}{CONSENT_PATH}?{urlencode(params)}"


def consent_start(*, invitation: Invitation, session) -> str:
    """Begin consent for an invitation; returns the Seller Central consent URL to redirect to."""
    tenant = invitation.tenant
    scopes = requested_scopes(tenant_id=tenant.pk)
    seller = invitation.seller
    state = state_create(
        session=session,
        tenant=tenant,
        region=seller.region,
        scopes=scopes,
        seller=seller,
        invitation=invitation,
    )
    seller_status_transition(
        seller=seller,
        grant=None,
        kind=Event.Kind.CONSENT_STARTED,
        detail="Sent to Amazon's consent page.",
        data={"scopes": scopes},
        actor="seller",
        step=Seller.Status.AT_AMAZON,
    )
    return consent_url_build(tenant=tenant, region=seller.region, state=state, scopes=scopes)


def _url_with(uri: str, params: dict[str, str]) -> str:
    """`uri` with `params` set in its query (replacing any of the same name), without fragment."""
    parts = urlsplit(uri)
    kept = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in params]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(kept + list(params.items())), ""))


def login_uri_start(
    *,
    session,
    tenant: Tenant,
    region: str,
    amazon_callback_uri: str,
    amazon_state: str,
    selling_partner_id: str,
    beta: bool,
) -> str:
    """Begin an Amazon-initiated consent; returns the address on Amazon's side to go back to.

    The caller has checked `amazon_callback_uri` (`login_uri.amazon_callback_region`) and the
    shape of `selling_partner_id`. Nothing is recorded: anyone can open the Login URI, so its
    history starts when the seller comes back (`amazon_return_record`). Raises InvalidScope.
    """
    state = state_create(
        session=session,
        tenant=tenant,
        region=region,
        scopes=requested_scopes(tenant_id=tenant.pk),
        flow=OAuthState.Flow.AMAZON,
        claimed_selling_partner_id=selling_partner_id,
    )
    back = {"amazon_state": amazon_state, "state": state, "redirect_uri": tenant.effective_redirect_uri}
    if tenant.is_draft or beta:
        back["version"] = "beta"
    return _url_with(amazon_callback_uri, back)


# --- Completing -------------------------------------------------------------------------------


class CallbackFailed(Exception):
    """The callback could not complete; `kind` names its page in `authflow.pages.CALLBACK_PROBLEMS`."""

    def __init__(self, kind: str):
        self.kind = kind
        super().__init__(kind)


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


def _callback_target(*, state: OAuthState, selling_partner_id: str) -> CallbackTarget:
    """Refuse what can be refused before the code exchange; nothing is written here.

    `selling_partner_id` is not signed by Amazon: it is a claim, checked against the account
    behind the tokens once they exist (`callback_complete`).
    """
    tenant = state.tenant
    if selling_partner_id and not SELLING_PARTNER_ID_RE.match(selling_partner_id):
        raise CallbackFailed("invalid_account_id")
    if state.flow == OAuthState.Flow.AMAZON:
        claimed = state.claimed_selling_partner_id
        if claimed and selling_partner_id and claimed != selling_partner_id:
            raise CallbackFailed("account_not_the_claimed_one")
        spid = selling_partner_id or claimed
        if not spid:
            raise CallbackFailed("account_not_named")
        seller = Seller.objects.filter(tenant=tenant, region=state.region, selling_partner_id=spid).first()
        return CallbackTarget(seller, spid, seller)

    seller = state.seller
    if seller is None:
        raise CallbackFailed("no_seller")
    if not selling_partner_id:
        if seller.selling_partner_id and Grant.objects.filter(seller=seller).exists():
            # A connected seller's renewal must name the account, or anyone could swap it.
            raise CallbackFailed("renewal_account_not_named")
        # The seed's flow names no account: a grant already there is still checked.
        return CallbackTarget(seller, "", seller)
    if seller.selling_partner_id and seller.selling_partner_id != selling_partner_id:
        raise CallbackFailed("account_mismatch")
    holder = Seller.objects.filter(tenant=tenant, region=seller.region, selling_partner_id=selling_partner_id).first()
    return CallbackTarget(seller, selling_partner_id, holder)


def _record(*, state: OAuthState, seller: Seller | None, **kwargs) -> None:
    if seller is not None:
        event_record(seller=seller, **kwargs)
    else:
        event_record(tenant=state.tenant, **kwargs)


@sensitive_variables("code")
def _code_exchange(*, state: OAuthState, code: str, target: CallbackTarget) -> amazon.TokenResponse:
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
        detail = f"{exc.error}: {exc.description}"[:500]
        data = {"error": exc.error, "http_status": exc.status_code, "selling_partner_id": target.selling_partner_id}
        if target.seller is None:
            _record(state=state, seller=None, kind=Event.Kind.EXCHANGE_FAILED, detail=detail, data=data, actor="amazon")
        else:  # back from Amazon, not connected: the seller may try the link again
            seller_status_transition(
                seller=target.seller, grant=None, kind=Event.Kind.EXCHANGE_FAILED, detail=detail, data=data,
                actor="amazon", step=Seller.Status.OPENED,
            )
        logger.warning("Code exchange failed for tenant %s: %s", tenant.pk, exc.error)
        if isinstance(exc, amazon.LwaInvalidClient):
            tenant_credentials_failed(tenant=tenant, error=exc)
            raise CallbackFailed("credentials_refused") from None
        if isinstance(exc, amazon.LwaInvalidGrant):
            raise CallbackFailed("code_refused") from None
        raise CallbackFailed("amazon_unavailable" if exc.transient else "amazon_refused") from None
    return token


def _grant_of(seller: Seller | None) -> Grant | None:
    # Tokens deferred: a grant that no longer decrypts is still compared (by its recorded
    # fingerprint) and replaced, never a 500 for the seller trying to reconnect.
    if seller is None:
        return None
    return Grant.objects.defer(*TOKEN_FIELDS).filter(seller=seller).first()


def _account_check(*, state: OAuthState, target: CallbackTarget, new: AccountFingerprint | None) -> AccountCheck | None:
    """Whether the new tokens are of the account behind every grant they would overwrite, and
    of the account of another seller already holding the id; None: nothing to compare with.

    Only a first binding (no grant on the seller, nobody else holding the id) has nothing to be
    compared with. The seller's own grant is compared even when the callback names another id
    or none (the scope model's flow), and another holder even when it has no grant.
    """
    checks = []
    own = _grant_of(target.seller)
    if own is not None:
        checks.append(grant_account_check(grant=own, region=state.region, new=new))
    holder = target.holder
    if holder is not None and holder != target.seller:
        checks.append(grant_account_check(grant=_grant_of(holder), region=state.region, new=new))
    if not checks:
        return None
    return next((check for check in checks if not check.same), checks[-1])


@sensitive_variables("token", "mws_auth_token")
def _review_hold(
    *, state: OAuthState, target: CallbackTarget, token: amazon.TokenResponse, mws_auth_token: str, check: AccountCheck
) -> HeldForReview:
    """Keep the new authorization unused until staff say whose account it is."""
    holder = target.holder
    seller = target.seller or holder
    assert seller is not None  # _account_check compares nothing without a seller or a holder
    review = identity_review_open(
        seller=seller,
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


@sensitive_variables("token", "mws_auth_token")
def _authorization_store(
    *,
    state: OAuthState,
    target: CallbackTarget,
    token: amazon.TokenResponse,
    mws_auth_token: str,
    verification: str,
    fingerprint: AccountFingerprint | None,
    checked_version: int | None,
) -> AuthorizationOutcome:
    """Store the grant (creating the seller in the Amazon-initiated flow); a full one completes the link.

    `checked_version`: the seller's grant as the account check saw it (None: no grant). Another
    callback may have stored one since; under the seller's lock, anything else fails closed.
    """
    try:
        with transaction.atomic():
            seller = target.seller
            if seller is not None:
                Seller.objects.select_for_update().filter(pk=seller.pk).exists()
                if grant_version(seller=seller) != checked_version:
                    raise CallbackFailed("connected_concurrently")
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
                requested_scopes=list(state.requested_scopes),
                verification=verification,
                fingerprint=fingerprint,
            )
            if state.invitation_id and not outcome.missing_required:
                Invitation.objects.filter(pk=state.invitation_id, completed_at__isnull=True).update(completed_at=timezone.now())
    except IntegrityError:
        # Two callbacks created the same (tenant, region, selling_partner_id) at once.
        raise CallbackFailed("connected_concurrently") from None
    return outcome


@sensitive_variables("code", "token", "mws_auth_token")
def callback_complete(
    *, state: OAuthState, code: str, selling_partner_id: str = "", mws_auth_token: str = ""
) -> AuthorizationOutcome | HeldForReview:
    """Exchange the code, check whose account it is, and store the grant or hold it for review.

    On any failure, and whenever the account cannot be shown to be the one already connected,
    the stored grant is untouched.
    """
    target = _callback_target(state=state, selling_partner_id=selling_partner_id)
    token = _code_exchange(state=state, code=code, target=target)
    # Asked in the state's region: a token of another region cannot answer there.
    new = account_fingerprint(region=state.region, access_token=token.access_token)
    checked_version = grant_version(seller=target.seller)
    check = _account_check(state=state, target=target, new=new)
    verification = ""
    if check is not None:
        if not check.same:
            return _review_hold(state=state, target=target, token=token, mws_auth_token=mws_auth_token, check=check)
        if target.holder is not None and target.holder != target.seller:
            # The same account, already connected as another seller: that seller's link renews it.
            raise CallbackFailed("account_in_use")
        verification = check.detail
    return _authorization_store(
        state=state, target=target, token=token, mws_auth_token=mws_auth_token, verification=verification,
        fingerprint=new, checked_version=checked_version,
    )


# --- What the callback records besides a grant ------------------------------------------------

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
    if state.seller is None:
        _record(state=state, seller=None, kind=kind, detail=detail, data={"error": code}, actor="seller")
        return
    # Back from Amazon without a grant: declined, or an error that leaves the link to try again.
    step = Seller.Status.DECLINED if kind == Event.Kind.DENIED else Seller.Status.OPENED
    seller_status_transition(
        seller=state.seller, grant=None, kind=kind, detail=detail, data={"error": code}, actor="seller", step=step
    )


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
        detail=f"Started from Amazon (Login URI) for {spid or 'an unnamed seller'} ({state.region.upper()}); "
        "back from Amazon's consent page.",
        data={"flow": OAuthState.Flow.AMAZON.value, "region": state.region, "selling_partner_id": spid},
        actor="amazon",
    )
