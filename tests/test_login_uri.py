"""The Login URI (Amazon-initiated authorization): allow-listed callback hosts only, a state bound
to the browser, and the whole flow played by the sandbox's "start from Amazon"."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from authflow.login_uri import login_uri_url
from authflow.models import OAuthState
from sellers.models import Event, Grant, Seller

from .conftest import INVENTORY, ORDERS, REPORTS, make_grant, make_seller, make_tenant, parse_form
from .flow import sandbox_decide

pytestmark = pytest.mark.django_db

GENUINE = "https://sellercentral.amazon.com/apps/authorize/confirm"


def path_of(url: str) -> str:
    parsed = urlparse(url)
    return parsed.path + (f"?{parsed.query}" if parsed.query else "")


def open_login_uri(client, tenant, **params):
    base = login_uri_url(tenant).replace("http://testserver", "")
    params.setdefault("amazon_state", "amz-state-123")
    params.setdefault("selling_partner_id", "A1FROMAMAZON")
    return client.get(base, params)


def query(location: str) -> dict[str, list[str]]:
    return parse_qs(urlparse(location).query)


def test_login_uri_url_is_per_tenant_and_unguessable(tenant, other_tenant):
    assert login_uri_url(tenant) == f"http://testserver/authflow/login/{tenant.public_id}/"
    assert login_uri_url(tenant) != login_uri_url(other_tenant)


@pytest.mark.parametrize(
    "callback",
    [
        "https://evil.example/",
        "//evil.example",
        "//sellercentral.amazon.com/",
        "https://sellercentral.amazon.com.evil.example/",
        "javascript:alert(document.cookie)",
        "JavaScript://sellercentral.amazon.com/%0aalert(1)",
        "http://sellercentral.amazon.com/apps/authorize/confirm",
        "https://sellercentral.amazon.com@evil.example/",
        "https://user:pw@sellercentral.amazon.com/",
        "https://evil.example\\@sellercentral.amazon.com/",
        "https://sellercentral.amazon.com\\evil.example/",
        "https:\\\\evil.example/",
        "https://sellercentral.amazon.com:8443/",
        "https://sellercentral.amazon.com./",
        "https:/sellercentral.amazon.com/",
        "https://sellercentral.amazon.com%2eevil.example/",
        " https://sellercentral.amazon.com/",
        "https://sellercentral.amazon.com/\n.evil.example",
        "https://sellercentral.amazon.com/#fragment",
        "https://amazon.com/",
        "https://sellercentral.amazon.cn/",
        "data:text/html,<script>alert(1)</script>",
        "http://testserver.evil.example/sandbox/na/apps/authorize/amazon-callback",
        "https://testserver/sandbox/na/apps/authorize/amazon-callback",
        "",
    ],
)
def test_login_uri_refuses_callbacks_outside_amazon_with_a_400_page(client, tenant, callback):
    response = open_login_uri(client, tenant, amazon_callback_uri=callback)
    assert response.status_code == 400
    assert "Location" not in response
    assert "not an Amazon Seller Central or Vendor Central page" in response.content.decode()
    assert OAuthState.objects.count() == 0


def test_sandbox_host_is_only_allowed_while_the_sandbox_is_on(client, tenant, settings):
    sandbox_callback = "http://testserver/sandbox/na/apps/authorize/amazon-callback"
    assert open_login_uri(client, tenant, amazon_callback_uri=sandbox_callback).status_code == 302
    settings.SPAPI_SANDBOX = False
    assert open_login_uri(client, tenant, amazon_callback_uri=sandbox_callback).status_code == 400


def test_genuine_seller_central_gets_amazon_state_state_and_redirect_uri_back(client, tenant):
    response = open_login_uri(client, tenant, amazon_callback_uri=GENUINE + "?lang=en_US")
    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith(GENUINE + "?")
    q = query(location)
    assert q["amazon_state"] == ["amz-state-123"]
    assert q["redirect_uri"] == ["http://testserver/authflow/callback/"]
    assert q["lang"] == ["en_US"]  # Amazon's own parameters are kept
    assert "version" not in q
    assert response["Referrer-Policy"] == "strict-origin"
    state = OAuthState.objects.get()
    assert state.flow == OAuthState.Flow.AMAZON
    assert state.claimed_selling_partner_id == "A1FROMAMAZON"
    assert state.region == "na" and state.tenant == tenant and state.seller is None
    assert state.requested_scopes == [ORDERS, INVENTORY, REPORTS]
    assert q["state"][0] not in state.state_hash  # only the hash is stored
    assert not Event.objects.exists()  # history waits until the seller comes back from Amazon


def test_anonymous_login_uri_starts_write_no_history(db, tenant):
    from django.test import Client

    for n in range(5):
        assert open_login_uri(Client(), tenant, amazon_callback_uri=GENUINE, selling_partner_id=f"A1ANON{n}").status_code == 302
    assert OAuthState.objects.count() == 5  # removed after expiry by authflow.cleanup
    assert not Event.objects.exists()


@pytest.mark.parametrize(
    "host, region",
    [("sellercentral-europe.amazon.com", "eu"), ("vendorcentral.amazon.de", "eu"), ("SellerCentral.Amazon.co.jp", "fe"),
     ("sellercentral.amazon.com.br", "na")],
)
def test_region_follows_the_seller_central_host(client, tenant, host, region):
    assert open_login_uri(client, tenant, amazon_callback_uri=f"https://{host}/apps/authorize/confirm").status_code == 302
    assert OAuthState.objects.get().region == region


def test_draft_app_gets_version_beta(client, db):
    draft = make_tenant("drafty", is_draft=True)
    response = open_login_uri(client, draft, amazon_callback_uri=GENUINE)
    assert query(response["Location"])["version"] == ["beta"]


def test_amazon_asking_for_beta_is_answered_with_beta(client, tenant):
    response = open_login_uri(client, tenant, amazon_callback_uri=GENUINE, version="beta")
    assert query(response["Location"])["version"] == ["beta"]


@pytest.mark.parametrize(
    "params, status",
    [
        ({"amazon_state": ""}, 400),
        ({"selling_partner_id": "A1<script>"}, 400),
        ({"amazon_state": "x" * 2000}, 400),
    ],
)
def test_incomplete_or_malformed_requests_are_refused(client, tenant, params, status):
    assert open_login_uri(client, tenant, amazon_callback_uri=GENUINE, **params).status_code == status
    assert OAuthState.objects.count() == 0


def test_repeated_callback_parameter_is_refused(client, tenant):
    base = login_uri_url(tenant).replace("http://testserver", "")
    response = client.get(f"{base}?amazon_callback_uri={GENUINE}&amazon_callback_uri=https://evil.example/&amazon_state=s")
    assert response.status_code == 400 and "Location" not in response


def test_unknown_tenant_is_a_404_page(client, db):
    response = client.get("/authflow/login/00000000-0000-4000-8000-000000000000/", {"amazon_callback_uri": GENUINE, "amazon_state": "s"})
    assert response.status_code == 404 and "Location" not in response
    assert client.get("/authflow/login/42/").status_code == 404


# --- The whole flow, played by the sandbox -------------------------------------------------------


def start_from_amazon(client, tenant, *, spid: str, region: str = "na"):
    """Sandbox Seller Central → Login URI → back to the sandbox → its consent form."""
    start = client.get("/sandbox/start-from-amazon/", {"tenant": str(tenant.public_id), "region": region, "selling_partner_id": spid})
    assert start.status_code == 302
    assert start["Location"].startswith(login_uri_url(tenant) + "?")
    assert query(start["Location"])["amazon_callback_uri"] == [f"http://testserver/sandbox/{region}/apps/authorize/amazon-callback"]
    login = client.get(path_of(start["Location"]))
    assert login.status_code == 302, login.content[:300]
    consent_path = path_of(login["Location"])
    consent = client.get(consent_path)
    assert consent.status_code == 200, consent.content[:300]
    return consent_path, parse_form(consent.content.decode())


def finish(client, callback_path: str):
    response = client.get(callback_path)
    if response.status_code == 302:
        response = client.get(path_of(response["Location"]))
    return response


def test_start_from_amazon_page_lists_apps(client, tenant):
    page = client.get("/sandbox/start-from-amazon/")
    assert page.status_code == 200 and str(tenant.public_id) in page.content.decode()
    assert 'href="/sandbox/start-from-amazon/"' in client.get("/sandbox/").content.decode()


def test_amazon_initiated_flow_creates_a_connected_seller(client, tenant, amazon_calls):
    consent_path, form = start_from_amazon(client, tenant, spid="A1APPSTORE")
    fields = {name: value for name, value, _, _ in form["fields"]}
    assert fields["selling_partner_id"] == "A1APPSTORE"  # Amazon knows who is signed in
    callback = sandbox_decide(client, consent_path, form)
    assert callback.startswith("/authflow/callback/?")
    assert "spapi_oauth_code" in callback and "selling_partner_id=A1APPSTORE" in callback
    page = finish(client, callback)
    assert page.status_code == 200
    seller = Seller.objects.get(tenant=tenant, selling_partner_id="A1APPSTORE")
    assert seller.region == "na" and seller.status == Seller.Status.ACTIVE
    assert seller.grant.granted_scopes == [ORDERS, INVENTORY, REPORTS]
    assert Event.objects.filter(seller=seller, kind=Event.Kind.GRANTED).exists()
    started = Event.objects.get(kind=Event.Kind.CONSENT_STARTED)  # recorded on the way back, before the seller existed
    assert (started.tenant, started.seller, started.actor) == (tenant, None, "amazon")
    assert started.data == {"flow": "amazon", "region": "na", "selling_partner_id": "A1APPSTORE"}
    assert [c.grant_type for c in amazon_calls.token_calls] == ["authorization_code"]


def test_renewal_from_manage_your_apps_attaches_to_the_existing_seller(client, tenant):
    seller = make_seller(tenant, "Old Friend", spid="A1RENEW", region="eu")
    old = make_grant(seller, authorized_days_ago=350)
    # What SP-API said about this account when it was last checked: the renewal must match it.
    old.account_fingerprint = {
        "region": "eu", "store_names": ["Sandbox store A1RENEW"], "marketplaces": ["A1F83G8C2ARO7P", "A1PA6795UKMFR9"],
    }
    old.save(update_fields=["account_fingerprint"])
    consent_path, form = start_from_amazon(client, tenant, spid="A1RENEW", region="eu")
    page = finish(client, sandbox_decide(client, consent_path, form))
    assert page.status_code == 200
    assert Seller.objects.filter(tenant=tenant).count() == 1
    grant = Grant.objects.get(seller=seller)
    assert grant.authorized_at > old.authorized_at and grant.refresh_token != old.refresh_token
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTHORIZED).count() == 1
    assert Event.objects.filter(seller=seller, kind=Event.Kind.CONSENT_STARTED, actor="amazon").count() == 1


def test_a_different_account_than_amazon_named_is_refused(client, tenant):
    consent_path, form = start_from_amazon(client, tenant, spid="A1CLAIMED")
    page = finish(client, sandbox_decide(client, consent_path, form, spid="A1SOMEONEELSE"))
    assert page.status_code == 400
    assert "different account" in page.content.decode()
    assert not Seller.objects.filter(tenant=tenant).exists()


def test_state_from_the_login_uri_only_works_in_the_same_browser(client, tenant, django_user_model):
    from django.test import Client

    consent_path, form = start_from_amazon(client, tenant, spid="A1BOUND")
    callback = sandbox_decide(client, consent_path, form)
    other = Client()
    assert other.get(callback).status_code == 403
    assert not Seller.objects.filter(selling_partner_id="A1BOUND").exists()


def test_sandbox_callback_page_refuses_a_forged_amazon_state(client, tenant):
    response = client.get(
        "/sandbox/na/apps/authorize/amazon-callback",
        {"amazon_state": "forged", "state": "s", "redirect_uri": "http://testserver/authflow/callback/"},
    )
    assert response.status_code == 400 and "MD9300" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_amazon_initiated_flow_over_real_http(live_amazon, tenant, amazon_calls):
    import requests

    browser = requests.Session()
    consent = browser.get(
        f"{live_amazon}/sandbox/start-from-amazon/",
        params={"tenant": str(tenant.public_id), "region": "eu", "selling_partner_id": "A1LIVEHTTP"},
        timeout=10,
    )
    hops = [r.url.split("?")[0] for r in consent.history]
    assert hops == [f"{live_amazon}/sandbox/start-from-amazon/", f"{live_amazon}/authflow/login/{tenant.public_id}/"]
    assert consent.status_code == 200 and "Local sandbox" in consent.text
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    data["scope"] = [v for n, v, kind, _ in form["fields"] if kind == "checkbox"]
    data["decision"] = "approve"
    back = browser.post(consent.url.split("?")[0], data=data, allow_redirects=False, timeout=10)
    assert back.status_code == 302 and back.headers["Location"].startswith(f"{live_amazon}/authflow/callback/?")
    final = browser.get(back.headers["Location"], timeout=20)
    assert final.status_code == 200 and final.url == f"{live_amazon}/authflow/result/"
    seller = Seller.objects.get(tenant=tenant, selling_partner_id="A1LIVEHTTP")
    assert seller.region == "eu" and seller.status == Seller.Status.ACTIVE
    assert [c.grant_type for c in amazon_calls.token_calls] == ["authorization_code"]
    assert amazon_calls.token_calls[0].url.startswith(live_amazon)
