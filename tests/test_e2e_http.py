"""End to end over real sockets: a seller's browser (a requests.Session with cookies) against
Django's live server, whose consent page, LWA and SP-API are the local sandbox."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.core.management import call_command

from sellers.models import Event, Grant, Seller
from sellers.services.invitations import invitation_create

from .conftest import INVENTORY, ORDERS, REPORTS, parse_form, read_output

pytestmark = pytest.mark.django_db(transaction=True)


def browser_flow(invite_url: str, *, decision: str = "approve", scopes=None, spid: str = "A1HTTPSELLER"):
    browser = requests.Session()
    page = browser.get(invite_url, timeout=10)
    assert page.status_code == 200
    form = parse_form(page.text)
    csrf = [v for n, v, *_ in form["fields"] if n == "csrfmiddlewaretoken"][0]
    start = browser.post(invite_url + "start/", data={"csrfmiddlewaretoken": csrf}, allow_redirects=False, timeout=10)
    assert start.status_code == 302
    consent_url = start.headers["Location"]
    consent = browser.get(consent_url, timeout=10)
    assert consent.status_code == 200 and "Local sandbox" in consent.text
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    offered = [v for n, v, kind, _ in form["fields"] if kind == "checkbox"]
    data["selling_partner_id"] = spid
    data["decision"] = decision
    data["scope"] = offered if scopes is None else scopes
    back = browser.post(consent_url.split("?")[0], data=data, allow_redirects=False, timeout=10)
    assert back.status_code == 302
    final = browser.get(back.headers["Location"], timeout=20)  # follows to the result page
    return final, back.headers["Location"]


def export(tenant_slug="acme"):
    return json.loads(read_output(lambda stdout: call_command("export_grants", "--tenant", tenant_slug, stdout=stdout)))


def test_approve_over_http_makes_seller_active(live_amazon, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    page, callback_url = browser_flow(invitation.url)
    assert page.status_code == 200 and "all set" in page.text
    assert page.headers["Referrer-Policy"] == "strict-origin"
    assert set(parse_qs(urlparse(callback_url).query)) == {"state", "selling_partner_id", "spapi_oauth_code"}
    [record] = export()
    assert record["status"] == "active"
    assert record["selling_partner_id"] == "A1HTTPSELLER"
    assert record["granted_scopes"] == [ORDERS, INVENTORY, REPORTS]
    assert record["scopes_confirmed"] is True
    assert [c.grant_type for c in amazon_calls.token_calls] == ["authorization_code"]
    assert amazon_calls.token_calls[0].url.startswith(live_amazon)


def test_approve_subset_over_http_is_partial_with_missing_required(live_amazon, tenant):
    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    page, _ = browser_flow(invitation.url, scopes=[ORDERS, REPORTS])
    assert "some permissions are missing" in page.text and "Inventory" in page.text
    [record] = export()
    assert record["status"] == "partial"
    assert record["missing_scopes"] == [INVENTORY]
    assert record["granted_scopes"] == [ORDERS, REPORTS]


def test_deny_over_http_writes_no_grant_and_a_denied_event(live_amazon, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    page, _ = browser_flow(invitation.url, decision="deny")
    assert "You declined" in page.text
    assert not Grant.objects.exists()
    assert Event.objects.filter(seller=invitation.seller, kind=Event.Kind.DENIED).count() == 1
    assert amazon_calls.token_calls == []
    [record] = export()
    assert record["status"] == Seller.Status.DECLINED


def test_code_cannot_be_exchanged_twice_at_the_sandbox_lwa(live_amazon, tenant):
    """The sandbox holds Amazon's rule: a code is single use (invalid_grant the second time)."""
    from sellers import amazon

    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    _, callback_url = browser_flow(invitation.url)
    code = parse_qs(urlparse(callback_url).query)["spapi_oauth_code"][0]
    with pytest.raises(amazon.LwaInvalidGrant):
        amazon.lwa_exchange_code(
            client_id=tenant.client_id, client_secret=tenant.client_secret, code=code,
            redirect_uri=tenant.effective_redirect_uri,
        )
