"""OAuth state: single use, short lived, bound to the browser. Rejections touch nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from authflow.models import OAuthState
from sellers.models import Event, Grant
from sellers.services.invitations import invitation_create

from .flow import consent_form, sandbox_decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def approved_callback(client, tenant):
    """A genuine callback path (state + fresh code) from the sandbox, not yet visited."""
    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    return sandbox_decide(client, consent_path, form, spid="A1STATE"), invitation


def _no_side_effects(amazon_calls, token_calls_before=0):
    assert not Grant.objects.exists()
    assert len(amazon_calls.token_calls) == token_calls_before


def test_state_is_stored_hashed_with_tenant_scopes_region_and_ten_minute_expiry(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop", region="fe")
    _, form = consent_form(client, invitation.url)
    value = [v for n, v, *_ in form["fields"] if n == "state"][0]
    assert len(value) >= 22  # ≥ 128 bits in URL-safe base64
    state = OAuthState.objects.get()
    assert state.state_hash == hashlib.sha256(value.encode()).hexdigest()
    assert value not in str(OAuthState.objects.values_list()[0])
    assert state.tenant == tenant and state.seller == invitation.seller and state.region == "fe"
    assert state.requested_scopes == ["sellingpartnerapi::orders", "sellingpartnerapi::inventory", "sellingpartnerapi::reports"]
    ttl = (state.expires_at - state.created_at).total_seconds()
    assert 590 <= ttl <= 610


def test_replayed_state_is_rejected_and_first_grant_kept(client, approved_callback, amazon_calls):
    path, _ = approved_callback
    assert client.get(path).status_code == 302
    grant = Grant.objects.get()
    calls = len(amazon_calls.token_calls)
    replay = client.get(path)
    # The same browser again (a reload, Back and Confirm on Amazon's page): the page the state
    # ended on, and nothing exchanged or stored again.
    assert replay.status_code == 302 and replay["Location"] == "/authflow/result/"
    assert len(amazon_calls.token_calls) == calls
    assert Grant.objects.get().refresh_token == grant.refresh_token


def test_missing_state_is_rejected(client, approved_callback, amazon_calls):
    path, _ = approved_callback
    without_state = "&".join(p for p in path.split("?", 1)[1].split("&") if not p.startswith("state="))
    response = client.get("/authflow/callback/?" + without_state)
    assert response.status_code == 400
    _no_side_effects(amazon_calls)


def test_forged_state_is_rejected(client, approved_callback, amazon_calls):
    path, _ = approved_callback
    import re

    forged = re.sub(r"state=[^&]+", "state=forged-by-attacker-0123456789abcdef", path)
    response = client.get(forged)
    assert response.status_code == 400
    assert "not one we started" in response.content.decode()
    _no_side_effects(amazon_calls)


def test_expired_state_is_rejected(client, approved_callback, amazon_calls):
    path, _ = approved_callback
    OAuthState.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(path)
    assert response.status_code == 400
    assert "expired" in response.content.decode()
    _no_side_effects(amazon_calls)


def test_state_from_another_browser_is_rejected_and_not_burned(client, approved_callback, amazon_calls):
    path, _ = approved_callback
    stranger = Client()
    response = stranger.get(path)
    assert response.status_code == 403
    assert "different browser" in response.content.decode()
    _no_side_effects(amazon_calls)
    assert OAuthState.objects.get().used_at is None
    # The genuine browser can still finish.
    assert client.get(path).status_code == 302
    assert Grant.objects.count() == 1


def test_state_of_one_seller_cannot_complete_with_no_session_at_all(approved_callback, amazon_calls):
    path, _ = approved_callback
    response = Client().get(path)
    assert response.status_code == 403
    _no_side_effects(amazon_calls)


def test_rejections_write_no_grant_events(client, approved_callback):
    path, invitation = approved_callback
    Client().get(path)
    kinds = set(Event.objects.filter(seller=invitation.seller).values_list("kind", flat=True))
    assert kinds == {Event.Kind.INVITED, Event.Kind.LINK_OPENED, Event.Kind.CONSENT_STARTED}
