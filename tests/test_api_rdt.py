"""Restricted data tokens over real sockets: from the endpoint, and obtained by the proxy for
`X-Spconnect-Data-Elements`; the sandbox answers buyers' data only to an RDT."""

from __future__ import annotations

import pytest
import requests

from sellers.models import Event

from .test_api_proxy import Proxy, capture_sent, connected, new_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sent(monkeypatch):
    return capture_sent(monkeypatch)

ORDER = "902-1234567-7654321"
ADDRESS = f"/orders/v0/orders/{ORDER}/address"
BUYER_INFO = f"/orders/v0/orders/{ORDER}/buyerInfo"


def rdt(base, key, connection_id, body):
    return requests.post(f"{base}/api/v1/connections/{connection_id}/restricted-data-token", json=body,
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def test_the_endpoint_returns_an_rdt_that_opens_the_named_operation_only(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant)
    key = new_key(tenant, permissions=["rdt:create"])

    response = rdt(live_amazon, key, seller.public_id, {"restricted_resources": [{"method": "GET", "path": ADDRESS}]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expires_in"] == 3600
    assert response.headers["Cache-Control"] == "no-store"
    token = body["restricted_data_token"]
    [call] = amazon_calls.spapi_calls
    assert call.url.endswith("/tokens/2021-03-01/restrictedDataToken")
    assert call.headers["x-amz-access-token"] == grant.access_token

    sandbox = f"{live_amazon}/sandbox/spapi/na"
    with_rdt = requests.get(sandbox + ADDRESS, headers={"x-amz-access-token": token}, timeout=30)
    assert with_rdt.status_code == 200
    assert with_rdt.json()["payload"]["ShippingAddress"]["City"] == "Seattle"
    assert requests.get(sandbox + BUYER_INFO, headers={"x-amz-access-token": token}, timeout=30).status_code == 403
    assert requests.get(sandbox + ADDRESS, headers={"x-amz-access-token": grant.access_token}, timeout=30).status_code == 403

    event = Event.objects.get(seller=seller, kind=Event.Kind.RDT_CREATED)
    assert event.actor.startswith("api:key-")
    assert event.data["resources"] == [{"method": "GET", "path": ADDRESS, "data_elements": []}]
    assert event.data["api_key"].startswith("spc_")
    assert token not in event.detail and token not in str(event.data)


def test_the_proxy_obtains_an_rdt_for_the_data_elements_header(live_amazon, tenant, amazon_calls, sent):
    seller, grant = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant, permissions=["proxy", "rdt:create"]), seller.public_id)

    response = proxy("GET", BUYER_INFO, headers={"X-Spconnect-Data-Elements": "buyerInfo"})

    assert response.status_code == 200, response.text
    assert response.json()["payload"]["BuyerInfo"]["BuyerEmail"].endswith("@marketplace.example")
    tokens_call, operation_call = amazon_calls.spapi_calls
    assert tokens_call.url.endswith("/tokens/2021-03-01/restrictedDataToken")
    assert operation_call.headers["x-amz-access-token"].startswith("Atz.sprdt|")
    [rdt_request] = [c for c in sent if c["url"].endswith("/restrictedDataToken")]
    assert rdt_request["json"] == {"restrictedResources": [{"method": "GET", "path": BUYER_INFO}]}
    event = Event.objects.get(seller=seller, kind=Event.Kind.RDT_CREATED)
    assert event.data["via"] == "proxy"
    assert event.data["resources"] == [{"method": "GET", "path": BUYER_INFO, "data_elements": []}]

    orders = proxy("GET", "/orders/v0/orders", params={"dataElements": "buyerInfo,shippingAddress"},
                   headers={"X-Spconnect-Data-Elements": "buyerInfo, shippingAddress"})
    assert orders.status_code == 200, orders.text
    first = orders.json()["payload"]["Orders"][0]
    assert "BuyerInfo" in first and "ShippingAddress" in first
    assert sent[-2]["json"]["restrictedResources"] == [
        {"method": "GET", "path": "/orders/v0/orders", "dataElements": ["buyerInfo", "shippingAddress"]}
    ]


def test_without_the_header_amazons_refusal_is_handed_on_and_no_scope_is_marked_refused(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", ADDRESS)

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "Unauthorized"
    assert len(amazon_calls.spapi_calls) == 1 and amazon_calls.token_calls == []  # no refresh: the token is fine
    grant.refresh_from_db()
    assert grant.refused_scopes == []
    assert not Event.objects.filter(seller=seller, kind=Event.Kind.SCOPE_REFUSED).exists()


def test_the_header_needs_rdt_create_and_valid_elements(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    only_proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    response = only_proxy("GET", ADDRESS, headers={"X-Spconnect-Data-Elements": "buyerInfo"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"

    both = Proxy(live_amazon, new_key(tenant, permissions=["proxy", "rdt:create"]), seller.public_id)
    response = both("GET", ADDRESS, headers={"X-Spconnect-Data-Elements": "creditCard"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "X-Spconnect-Data-Elements"
    assert amazon_calls.calls == []


def test_refusals_of_the_endpoint(live_amazon, tenant, other_tenant, amazon_calls):
    seller, _ = connected(tenant)
    theirs, _ = connected(other_tenant, spid="A1THEIRS")
    one = {"restricted_resources": [{"method": "GET", "path": ADDRESS}]}

    assert rdt(live_amazon, new_key(tenant, permissions=["rdt:create"]), theirs.public_id, one).status_code == 404
    assert rdt(live_amazon, new_key(tenant, permissions=["proxy"]), seller.public_id, one).status_code == 403
    limited = new_key(tenant, permissions=["rdt:create"], paths=["/fba/inventory/"])
    response = rdt(live_amazon, limited, seller.public_id, one)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "path_not_allowed"
    bad = rdt(live_amazon, new_key(tenant, permissions=["rdt:create"]), seller.public_id,
              {"restricted_resources": [{"method": "GET", "path": ADDRESS, "data_elements": ["creditCard"]}]})
    assert bad.status_code == 400
    assert amazon_calls.calls == []

    # Amazon refuses a path that is not a restricted operation: its 400, in the API's error shape.
    response = rdt(live_amazon, new_key(tenant, permissions=["rdt:create"]), seller.public_id,
                   {"restricted_resources": [{"method": "GET", "path": "/fba/inventory/v1/summaries"}]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "rdt_refused"
    assert "InvalidInput" in response.json()["error"]["message"]
    assert not Event.objects.filter(kind=Event.Kind.RDT_CREATED).exists()


def test_no_restricted_data_grantless_or_access_token_reaches_a_log(live_amazon, tenant, amazon_calls):
    from sellers.redaction import redact
    from sellers.services.tokens.grantless import grantless_cache_clear

    from .test_no_secrets_in_logs import capture_everything

    grantless_cache_clear()
    seller, grant = connected(tenant)
    key = new_key(tenant, permissions=["proxy", "rdt:create", "grantless"])
    proxy = Proxy(live_amazon, key, seller.public_id)
    with capture_everything() as capture:
        token = rdt(live_amazon, key, seller.public_id,
                    {"restricted_resources": [{"method": "GET", "path": ADDRESS}]}).json()["restricted_data_token"]
        assert proxy("GET", BUYER_INFO, headers={"X-Spconnect-Data-Elements": "buyerInfo"}).status_code == 200
        assert proxy("GET", ADDRESS).status_code == 403  # Amazon's refusal, logged as a 4xx
        grantless = requests.post(f"{live_amazon}/api/v1/grantless-token", json={"scope": "sellingpartnerapi::notifications"},
                                  headers={"Authorization": f"Bearer {key}"}, timeout=30).json()["access_token"]
    texts = "\n".join(text for _, text in capture.texts())
    assert texts  # the requests were logged at DEBUG
    for secret in (token, grantless, grant.access_token, key):
        assert secret not in texts
    # And the last line of defence recognises both new token shapes.
    assert redact(f"{token} {grantless}") == "[redacted] [redacted]"
