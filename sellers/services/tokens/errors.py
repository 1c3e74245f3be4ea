"""What `grant_access_token` and `spapi_request` raise when no token can be had. Messages never
carry a token."""

from __future__ import annotations

from datetime import datetime

from sellers.models import Grant, Invitation, Seller

from ..invitations import reauthorization_link_get_or_create


class TokenError(Exception):
    """Base of the errors `grant_access_token` raises. Messages never carry a token."""


class ReauthorizationRequired(TokenError):
    """The seller revoked access (or never authorized): only a new consent helps.

    `.link` is the seller's current re-authorization Invitation (`.link.url` to send it).
    `.never_authorized`: the seller has no grant at all (its link is the onboarding one).
    Raise `reauthorization_required(...)`, which finds or creates that link.
    """

    def __init__(self, *, seller: Seller, link: Invitation, reason: str = "", never_authorized: bool = False):
        self.seller = seller
        self.link = link
        self.reason = reason
        self.never_authorized = never_authorized
        if never_authorized:
            # Not "must re-authorize": nothing was ever authorized.
            message = f"{seller.name} has not connected yet: the seller must authorize the app with their link."
        else:
            named = f"{seller.name} ({seller.selling_partner_id})" if seller.selling_partner_id else seller.name
            message = f"{named} must re-authorize the app" + (f": {reason}" if reason else ".")
        super().__init__(message)


def reauthorization_required(*, seller: Seller, reason: str) -> ReauthorizationRequired:
    """The error to raise for a seller who must consent again, carrying their current link
    (an open one is reused; a seller never connected gets an onboarding link)."""
    # The link is named in the error; nobody has sent it yet, so the status says what the seller did.
    link, _ = reauthorization_link_get_or_create(seller=seller, actor="system", invite_again=False)
    never = not Grant.objects.filter(seller_id=seller.pk).exists()
    return ReauthorizationRequired(seller=seller, link=link, reason=reason, never_authorized=never)


class TokenUnavailable(TokenError):
    """LWA failed for a transient reason (or we are backing off) and no valid token is stored."""

    def __init__(self, message: str, *, retry_at: datetime | None = None):
        self.retry_at = retry_at
        super().__init__(message)


class AppCredentialsRejected(TokenError):
    """LWA rejected the tenant's client id/secret: an app problem, not the seller's."""
