"""Hostile callback input: 4xx pages, escaped, never a 500, never a grant lost."""

from __future__ import annotations

import pytest

from sellers.models import Grant
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create

from .flow import consent_form, run_flow, sandbox_decide

pytestmark = pytest.mark.django_db


@pytest.fixture
def pending_state(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    _, form = consent_form(client, invitation.url)
    return [v for n, v, *_ in form["fields"] if n == "state"][0]


def test_html_in_error_description_is_escaped(client, pending_state):
    response = client.get(
        "/authflow/callback/",
        {"state": pending_state, "error": "server_error", "error_description": "<script>alert(1)</script>"},
    )
    assert response.status_code == 400
    assert b"<script>alert(1)</script>" not in response.content


def test_html_in_error_is_escaped(client, pending_state):
    response = client.get("/authflow/callback/", {"state": pending_state, "error": "<img src=x onerror=alert(1)>"})
    assert response.status_code == 400
    assert b"<img src=x" not in response.content


def test_duplicated_state_parameter_is_rejected(client, pending_state, amazon_calls):
    response = client.get(f"/authflow/callback/?state={pending_state}&state=other&spapi_oauth_code=x")
    assert response.status_code == 400
    assert "more than once" in response.content.decode()
    assert amazon_calls.token_calls == []


def test_duplicated_code_parameter_is_rejected(client, pending_state, amazon_calls):
    response = client.get(f"/authflow/callback/?state={pending_state}&spapi_oauth_code=a&spapi_oauth_code=b")
    assert response.status_code == 400
    assert amazon_calls.token_calls == []


def test_huge_parameter_is_rejected(client, pending_state, amazon_calls):
    response = client.get("/authflow/callback/", {"state": pending_state, "spapi_oauth_code": "A" * 100_000})
    assert response.status_code == 400
    assert amazon_calls.token_calls == []


def test_huge_number_of_parameters_is_a_400_not_a_500(client, pending_state):
    query = "&".join(f"p{i}=1" for i in range(3000))
    response = client.get(f"/authflow/callback/?state={pending_state}&{query}")
    assert response.status_code == 400


def test_non_utf8_bytes_in_query_string(client, pending_state, amazon_calls):
    response = client.get(f"/authflow/callback/?state={pending_state}&spapi_oauth_code=%ff%fe%00&selling_partner_id=%c3%28")
    assert response.status_code in (400, 403)
    assert not Grant.objects.exists()


def test_non_utf8_state(client, db, amazon_calls):
    response = client.get("/authflow/callback/?state=%ff%fe%fd")
    assert response.status_code == 400
    assert amazon_calls.token_calls == []


def test_state_without_code_is_a_clear_400(client, pending_state, amazon_calls):
    response = client.get("/authflow/callback/", {"state": pending_state})
    assert response.status_code == 400
    assert "No authorization code" in response.content.decode()
    assert amazon_calls.token_calls == []


def test_callback_without_any_parameter_is_400(client, db):
    response = client.get("/authflow/callback/")
    assert response.status_code == 400


def test_post_to_callback_is_405(client, db):
    assert client.post("/authflow/callback/").status_code == 405


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 400, "body": {"error": "invalid_grant", "error_description": "The authorization code has expired"}},
        {"status": 401, "body": {"error": "invalid_client", "error_description": "Client authentication failed"}},
        {"status": 503, "body": {"error": "temporarily_unavailable"}},
        {"status": 200, "raw": b"<html>not json</html>"},
        {"status": 200, "body": {"token_type": "bearer"}},
    ],
    ids=["invalid_grant", "invalid_client", "5xx", "html", "no-token"],
)
def test_failed_exchange_shows_error_page_records_event_and_keeps_existing_grant(client, tenant, amazon_calls, failure):
    from sellers.models import Event

    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, spid="A1KEEP")
    grant = Grant.objects.get()
    amazon_calls.script(url_contains="/auth/o2/token", **failure)
    link, _ = reauthorization_link_get_or_create(seller=invitation.seller)
    page = run_flow(client, link.url, spid="A1KEEP")
    assert page.status_code in (400, 502)
    assert "could not be completed" in page.content.decode()
    after = Grant.objects.get()
    assert (after.refresh_token, after.access_token, after.version) == (grant.refresh_token, grant.access_token, grant.version)
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.EXCHANGE_FAILED).count() == 1


def test_exchange_timeout_shows_error_page(client, tenant, amazon_calls):
    import requests

    invitation = invitation_create(tenant=tenant, name="Shop")
    amazon_calls.script(url_contains="/auth/o2/token", exc=requests.Timeout("read timed out"))
    page = run_flow(client, invitation.url)
    assert page.status_code == 502
    assert not Grant.objects.exists()


def test_invalid_client_flags_tenant_not_seller(client, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="Shop")
    amazon_calls.lwa_error("invalid_client", status=401)
    run_flow(client, invitation.url)
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is not None
    invitation.seller.refresh_from_db()
    assert invitation.seller.status == "opened"


def test_exchange_request_carries_form_fields_and_timeout(client, tenant, amazon_calls, monkeypatch):
    from sellers import http as amazon

    seen = {}
    real = amazon._session.request

    def spy(method, url, **kwargs):
        seen.update(kwargs)
        return real(method, url, **kwargs)

    monkeypatch.setattr(amazon._session, "request", spy)
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url)
    call = amazon_calls.token_calls[0]
    assert set(call.data) == {"grant_type", "code", "redirect_uri", "client_id", "client_secret"}
    assert call.data["redirect_uri"] == "http://testserver/authflow/callback/"
    assert seen["timeout"] is not None


def test_other_browser_rejection_does_not_reveal_the_invitation_link(client, tenant):
    from django.test import Client

    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    callback = sandbox_decide(client, consent_path, form)
    page = Client().get(callback)
    assert page.status_code == 403
    assert invitation.token not in page.content.decode()
    assert "/connect/" not in page.content.decode()


def test_unknown_error_codes_are_not_stored_verbatim(client, pending_state):
    from sellers.models import Event

    client.get("/authflow/callback/", {"state": pending_state, "error": "attacker_text_here", "error_description": "spam"})
    event = Event.objects.get(kind=Event.Kind.CONSENT_ERROR)
    assert "attacker_text_here" not in event.detail + str(event.data) and "spam" not in event.detail
