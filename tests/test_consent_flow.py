"""The seller's path through invitation, Amazon consent and callback, in-process."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from sellers.models import Event, Grant, IdentityReview, Seller
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create

from .conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_tenant, read_output, shows_token
from .flow import consent_form, run_flow, sandbox_decide

pytestmark = pytest.mark.django_db


def test_invite_page_lists_requested_scopes_with_reasons_and_one_post_form(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = client.get(invitation.url.replace("http://testserver", ""))
    html = page.content.decode()
    assert page.status_code == 200
    assert tenant.name in html
    assert "We need sellingpartnerapi::orders." in html and "Nice to have sellingpartnerapi::reports." in html
    assert html.count("<form") == 1 and 'method="post"' in html and "csrfmiddlewaretoken" in html
    assert page["Referrer-Policy"] == "strict-origin"


def test_start_redirects_to_regional_consent_url_with_scopes_and_state(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop", region="eu")
    response = client.post(invitation.url.replace("http://testserver", "") + "start/")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("http://testserver/sandbox/eu/apps/authorize/consent?")
    assert "application_id=amzn1.sellerapps.app.acme" in location
    assert "scope=sellingpartnerapi%3A%3Aorders+sellingpartnerapi%3A%3Ainventory+sellingpartnerapi%3A%3Areports" in location
    assert "redirect_uri=http%3A%2F%2Ftestserver%2Fauthflow%2Fcallback%2F" in location
    assert "version=beta" not in location
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.CONSENT_STARTED).count() == 1


def test_draft_app_adds_version_beta(client, db):
    tenant = make_tenant("drafty", is_draft=True)
    invitation = invitation_create(tenant=tenant, name="Shop")
    response = client.post(invitation.url.replace("http://testserver", "") + "start/")
    assert "version=beta" in response["Location"]


def test_approve_all_makes_seller_active_with_confirmed_scopes(client, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = run_flow(client, invitation.url, spid="A1SHOPSELLER")
    assert page.status_code == 200
    assert "all set" in page.content.decode()
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.ACTIVE
    assert seller.selling_partner_id == "A1SHOPSELLER"
    grant = seller.grant
    assert grant.granted_scopes == [ORDERS, INVENTORY, REPORTS]
    assert grant.scopes_confirmed is True
    assert grant.refresh_token.startswith("Atzr|") and grant.access_token.startswith("Atza|")
    assert [c.grant_type for c in amazon_calls.token_calls] == ["authorization_code"]
    assert Event.objects.filter(seller=seller, kind=Event.Kind.GRANTED).count() == 1


def test_approve_subset_is_partial_and_page_names_missing_required_scope(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = run_flow(client, invitation.url, scopes=[ORDERS])
    html = page.content.decode()
    assert page.status_code == 200
    assert "some permissions are missing" in html and "Inventory" in html
    assert "Try again" in html
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.PARTIAL
    event = Event.objects.get(seller=seller, kind=Event.Kind.PARTIALLY_GRANTED)
    assert event.data["missing_required"] == [INVENTORY]


def test_partial_then_retry_with_all_scopes_becomes_active_and_keeps_history(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, scopes=[ORDERS], spid="A1RETRY")
    first_refresh = Grant.objects.get(seller=invitation.seller).refresh_token
    page = run_flow(client, invitation.url, spid="A1RETRY")
    assert "Re-authorized" in page.content.decode()
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.ACTIVE
    assert Grant.objects.filter(seller=seller).count() == 1
    assert seller.grant.refresh_token != first_refresh
    kinds = list(Event.objects.filter(seller=seller).values_list("kind", flat=True))
    assert Event.Kind.PARTIALLY_GRANTED in kinds and Event.Kind.REAUTHORIZED in kinds


def test_deny_shows_decline_page_with_retry_and_records_event_without_grant(client, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = run_flow(client, invitation.url, decision="deny")
    html = page.content.decode()
    assert page.status_code == 200
    assert "You declined" in html and "Try again" in html
    assert not Grant.objects.exists()
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.DENIED).count() == 1
    assert amazon_calls.token_calls == []


def test_real_amazon_response_without_scope_assumes_registered_scopes_unconfirmed(client, tenant, amazon_calls):
    tenant.registered_scopes = [ORDERS, INVENTORY, FINANCE]
    tenant.save()
    amazon_calls.script(
        url_contains="/auth/o2/token",
        body={"access_token": "Atza|real-shape", "refresh_token": "Atzr|real-shape", "token_type": "bearer", "expires_in": 3600},
    )
    invitation = invitation_create(tenant=tenant, name="Shop")
    page = run_flow(client, invitation.url)
    grant = Grant.objects.get(seller=invitation.seller)
    assert grant.granted_scopes == [ORDERS, INVENTORY, FINANCE]
    assert grant.scopes_confirmed is False
    assert "did not list the granted permissions" in page.content.decode()


def test_scope_outside_catalog_is_refused_before_redirect(client, tenant):
    from sellers.models import ScopeRequirement

    ScopeRequirement.objects.filter(tenant=tenant, scope=REPORTS).update(scope="sellingpartnerapi::teleport")
    invitation = invitation_create(tenant=tenant, name="Shop")
    response = client.post(invitation.url.replace("http://testserver", "") + "start/")
    assert response.status_code == 400
    assert "invalid_scope" in response.content.decode()
    assert "sellingpartnerapi::teleport" in response.content.decode()
    assert not Event.objects.filter(kind=Event.Kind.CONSENT_STARTED).exists()


def test_sandbox_invalid_scope_error_shows_invalid_scope_page(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    state = [v for n, v, *_ in form["fields"] if n == "state"][0]
    response = client.get(f"/authflow/callback/?state={state}&error=invalid_scope&error_description=nope")
    assert response.status_code == 400
    assert "invalid_scope" in response.content.decode()
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.CONSENT_ERROR).count() == 1


def test_expired_invitation_is_refused(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop", ttl_days=1)
    from datetime import timedelta

    from sellers.models import Invitation

    Invitation.objects.filter(pk=invitation.pk).update(expires_at=invitation.expires_at - timedelta(days=2))
    path = invitation.url.replace("http://testserver", "")
    assert client.get(path).status_code == 410
    assert client.post(path + "start/").status_code == 410


def test_unknown_invitation_is_404_page(client, db):
    response = client.get("/connect/not-a-real-token/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_reauthorizing_with_another_amazon_account_is_refused_and_grant_kept(client, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, spid="A1ORIGINAL")
    before = Grant.objects.get(seller=invitation.seller)
    token_calls = len(amazon_calls.token_calls)
    link, _ = reauthorization_link_get_or_create(seller=invitation.seller)
    page = run_flow(client, link.url, spid="A1SOMEONEELSE")
    assert page.status_code == 400
    assert "different Amazon account" in page.content.decode()
    after = Grant.objects.get(seller=invitation.seller)
    assert after.refresh_token == before.refresh_token and after.version == before.version
    assert len(amazon_calls.token_calls) == token_calls  # refused before any exchange


def test_new_invitation_cannot_take_over_a_connected_sellers_account(client, tenant, amazon_calls):
    first = invitation_create(tenant=tenant, name="Victim")
    run_flow(client, first.url, spid="A1VICTIM")
    victim_grant = Grant.objects.get(seller=first.seller)
    second = invitation_create(tenant=tenant, name="Attacker")
    page = run_flow(client, second.url, spid="A1VICTIM")
    assert page.status_code == 400
    assert "already connected" in page.content.decode()
    assert Grant.objects.get(seller=first.seller).refresh_token == victim_grant.refresh_token
    assert not Grant.objects.filter(seller=second.seller).exists()


def test_same_amazon_account_in_two_tenants_never_mixes(client, tenant, other_tenant):
    a = invitation_create(tenant=tenant, name="Shop at A")
    b = invitation_create(tenant=other_tenant, name="Shop at B")
    run_flow(client, a.url, spid="A1SHARED")
    run_flow(client, b.url, spid="A1SHARED", scopes=[ORDERS])
    sa, sb = Seller.objects.get(pk=a.seller.pk), Seller.objects.get(pk=b.seller.pk)
    assert sa.selling_partner_id == sb.selling_partner_id == "A1SHARED"
    assert sa.grant.pk != sb.grant.pk and sa.grant.refresh_token != sb.grant.refresh_token
    assert sa.status == Seller.Status.ACTIVE and sb.status == Seller.Status.PARTIAL


def test_export_grants_shows_active_seller_with_scopes(client, tenant):
    import json

    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, spid="A1EXPORT")
    out = read_output(lambda stdout: call_command("export_grants", "--tenant", "acme", stdout=stdout))
    records = json.loads(out)
    assert records == [
        {
            "tenant": "acme",
            "name": "Shop",
            "region": "na",
            "selling_partner_id": "A1EXPORT",
            "status": "active",
            "granted_scopes": [ORDERS, INVENTORY, REPORTS],
            "missing_scopes": [],
            "scopes_confirmed": True,
            "scopes_source": "confirmed by Amazon",
            "access_token_expires_at": records[0]["access_token_expires_at"],
            "authorized_at": records[0]["authorized_at"],
        }
    ]
    assert records[0]["access_token_expires_at"] and records[0]["authorized_at"]
    assert not shows_token(out)


def test_completed_link_cannot_be_used_again(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, spid="A1ONCE")
    path = invitation.url.replace("http://testserver", "")
    page = client.get(path)
    assert page.status_code == 410 and "already connected" in page.content.decode()
    assert client.post(path + "start/").status_code == 410


def test_reauthorization_by_another_store_claiming_the_same_id_is_held_for_review(client, tenant, amazon_calls):
    """The id in the callback is only a claim: a different store's tokens never replace a working grant."""
    from urllib.parse import parse_qs, urlencode, urlparse

    invitation = invitation_create(tenant=tenant, name="Victim")
    run_flow(client, invitation.url, spid="A1VICTIM")
    before = Grant.objects.get(seller=invitation.seller)
    link, _ = reauthorization_link_get_or_create(seller=invitation.seller)
    consent_path, form = consent_form(client, link.url)
    # The attacker approves with their own account, then edits the id in the redirect.
    back = sandbox_decide(client, consent_path, form, spid="A1ATTACKER")
    query = {k: v[0] for k, v in parse_qs(urlparse(back).query).items()}
    query["selling_partner_id"] = "A1VICTIM"
    page = client.get("/authflow/callback/?" + urlencode(query))
    assert page.status_code == 200
    assert "will confirm" in page.content.decode()
    after = Grant.objects.get(seller=invitation.seller)
    assert (after.refresh_token, after.version) == (before.refresh_token, before.version)
    review = IdentityReview.objects.get(seller=invitation.seller)
    assert (review.status, review.reason) == (IdentityReview.Status.OPEN, IdentityReview.Reason.CONFLICT)
    assert review.new_fingerprint["store_names"] == ["Sandbox store A1ATTACKER"]
    assert review.reference_fingerprint["store_names"] == ["Sandbox store A1VICTIM"]
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.IDENTITY_REVIEW_OPENED).count() == 1


def test_reauthorization_omitting_the_account_id_is_refused(client, tenant):
    from urllib.parse import parse_qs, urlencode, urlparse

    invitation = invitation_create(tenant=tenant, name="Victim")
    run_flow(client, invitation.url, spid="A1VICTIM")
    before = Grant.objects.get(seller=invitation.seller)
    link, _ = reauthorization_link_get_or_create(seller=invitation.seller)
    consent_path, form = consent_form(client, link.url)
    back = sandbox_decide(client, consent_path, form, spid="A1ATTACKER")
    query = {k: v[0] for k, v in parse_qs(urlparse(back).query).items() if k != "selling_partner_id"}
    page = client.get("/authflow/callback/?" + urlencode(query))
    assert page.status_code == 400
    assert Grant.objects.get(seller=invitation.seller).refresh_token == before.refresh_token


def test_callback_with_malformed_account_id_is_refused(client, tenant, amazon_calls):
    from urllib.parse import parse_qs, urlencode, urlparse

    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    back = sandbox_decide(client, consent_path, form, spid="A1FINE")
    query = {k: v[0] for k, v in parse_qs(urlparse(back).query).items()}
    query["selling_partner_id"] = "=HYPERLINK(1)"
    page = client.get("/authflow/callback/?" + urlencode(query))
    assert page.status_code == 400
    assert amazon_calls.token_calls == []
    assert not Grant.objects.exists()
