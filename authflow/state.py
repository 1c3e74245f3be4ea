"""OAuth state: created bound to the starting browser, consumed once by the callback."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from sellers.hashing import token_hash
from sellers.models import Invitation, Seller, Tenant

from .models import OAuthState

SESSION_BINDING_KEY = "spconnect_browser"


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
    assert binding is not None  # create=True always makes one
    OAuthState.objects.create(
        state_hash=token_hash(value),
        browser_hash=token_hash(binding),
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


class StateRejected(Exception):
    """The callback's state cannot be used.

    `reason` is one of REASONS; the page each one gets is in `authflow.pages.CALLBACK_PROBLEMS`.
    `state` is the state found, when one was (its invitation offers a fresh start).
    """

    REASONS = ("missing", "unknown", "expired", "used", "other_browser")

    def __init__(self, reason: str, state: OAuthState | None = None):
        self.reason = reason
        self.state = state
        super().__init__(reason)


def state_consume(*, value: str | None, session) -> OAuthState:
    """Check and burn a state: exists, same browser, not used, not expired. Single use."""
    if not value:
        raise StateRejected("missing")
    if len(value) > 256:
        raise StateRejected("unknown")
    state = OAuthState.objects.select_related("tenant", "seller", "invitation").filter(state_hash=token_hash(value)).first()
    if state is None:
        raise StateRejected("unknown")
    binding = browser_binding(session, create=False)
    # Check the browser before burning the state: a replay from elsewhere must not spoil the
    # genuine seller's attempt.
    if binding is None or not secrets.compare_digest(token_hash(binding), state.browser_hash):
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
