"""The SP-API proxy over real sockets: the live server is both spconnect and the sandbox's
SP-API, and every request the proxy sends to Amazon goes through `sellers.http.send` (recorded by
`amazon_calls`)."""

from __future__ import annotations

import json
import secrets
import uuid
from datetime import timedelta

import pytest
import requests
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from api.keys import api_key_create
from sandbox import restricted
from sandbox.models import SandboxAccessToken, SandboxAuthorization
from sandbox.services import sandbox_revoke
from sellers import http
from sellers.hashing import token_hash
from sellers.models import Event, Grant, Seller

from .conftest import INVENTORY, ORDERS, make_grant, make_seller

pytestmark = pytest.mark.django_db(transaction=True)

PROXY = ["proxy"]


def new_key(tenant, permissions=PROXY, **kwargs) -> str:
    return api_key_create(tenant=tenant, name=f"key-{secrets.token_hex(3)}", permissions=permissions, actor="test", **kwargs)[1]


def connected(tenant, name="Shop One", spid="A1SHOPONE", *, known_access_token=True, **grant_kwargs) -> tuple[Seller, Grant]:
    """A seller whose tokens the sandbox knows, as after a real consent."""
    seller = make_seller(tenant, name, spid=spid)
    grant = make_grant(seller, **grant_kwargs)
    now = timezone.now()
    authorization = SandboxAuthorization.objects.create(
        client_id=tenant.client_id, selling_partner_id=spid, region=seller.region, scopes=list(grant.granted_scopes),
        redirect_uri="", code_hash=secrets.token_hex(32), code_expires_at=now, code_used_at=now,
        refresh_token_hash=token_hash(grant.refresh_token),
    )
    if known_access_token:
        SandboxAccessToken.objects.create(
            authorization=authorization, token_hash=token_hash(grant.access_token), expires_at=now + timedelta(hours=1)
        )
    return seller, grant


class Proxy:
    def __init__(self, base: str, key: str, seller_id):
        self.base = f"{base}/api/v1/connections/{seller_id}/proxy"
        self.headers = {"Authorization": f"Bearer {key}"}

    def __call__(self, method: str, path: str, *, headers=None, **kwargs) -> requests.Response:
        return requests.request(method, self.base + path, headers={**self.headers, **(headers or {})}, timeout=30, **kwargs)


@pytest.fixture
def sent(monkeypatch):
    """Every request the server sends out, with its body and headers as given to `requests`."""
    return capture_sent(monkeypatch)


def capture_sent(monkeypatch) -> list[dict]:
    calls: list[dict] = []
    inner = http.send

    def capture(method, url, **kwargs):
        calls.append({"method": method, "url": url, **kwargs})
        return inner(method, url, **kwargs)

    monkeypatch.setattr(http, "send", capture)
    return calls


@pytest.fixture(autouse=True)
def _no_faults():
    restricted.faults_clear()
    yield
    restricted.faults_clear()


def spapi(calls):
    return [c for c in calls if "/sandbox/spapi/" in c["url"]]


# --- Forwarding -----------------------------------------------------------------------------------


def test_get_forwards_the_query_and_returns_amazons_status_body_and_headers(live_amazon, tenant, sent):
    seller, grant = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/orders/v0/orders", params=[("CreatedAfter", "2024-01-01T00:00:00Z"), ("MarketplaceIds", "ATVPDKIKX0DER")])

    assert response.status_code == 200, response.text
    assert response.json()["payload"]["CreatedAfter"] == "2024-01-01T00:00:00Z"
    assert len(response.json()["payload"]["Orders"]) == 3
    assert response.headers["x-amzn-RateLimit-Limit"] == "0.0167"
    assert uuid.UUID(response.headers["x-amzn-RequestId"])
    assert response.headers["Content-Type"].startswith("application/json")
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert "Transfer-Encoding" not in response.headers
    assert response.headers["Cache-Control"] == "no-store"
    [call] = spapi(sent)
    assert call["method"] == "GET"
    query = "CreatedAfter=2024-01-01T00%3A00%3A00Z&MarketplaceIds=ATVPDKIKX0DER"
    assert call["url"] == f"{live_amazon}/sandbox/spapi/na/orders/v0/orders?{query}"
    assert call["headers"]["x-amz-access-token"] == grant.access_token


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_method_body_and_content_type_are_forwarded_and_nothing_else(live_amazon, tenant, sent, method):
    seller, grant = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    body = json.dumps({"marketplaceId": "ATVPDKIKX0DER", "shipmentStatus": "ReadyForPickup"}).encode()

    response = proxy(
        method,
        "/orders/v0/orders/902-1234567-7654321/shipment",
        data=body,
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Connection": "keep-alive, X-Hop",
            "X-Hop": "dropped",
            "Cookie": "sessionid=abc",
            "Host-Override": "evil.example",
            "X-Forwarded-Host": "evil.example",
        },
    )

    assert response.status_code == 404  # the sandbox does not play updateShipmentStatus: Amazon's answer, as is
    assert response.json()["errors"][0]["code"] == "NotFound"
    [call] = spapi(sent)
    assert call["method"] == method
    assert call["url"] == f"{live_amazon}/sandbox/spapi/na/orders/v0/orders/902-1234567-7654321/shipment"
    assert call["data"] == body
    assert call["headers"] == {
        "x-amz-access-token": grant.access_token,
        "Accept": "application/json",
        "Content-Type": "application/json; charset=utf-8",
    }


def test_hop_by_hop_and_other_headers_of_amazons_answer_stay_behind(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    # Scripted at the seam: a WSGI server (the sandbox's) may not send hop-by-hop headers itself.
    amazon_calls.script(
        url_contains="/spapi/na/fba/inventory/", status=400,
        headers={"Connection": "close", "Keep-Alive": "timeout=5", "Transfer-Encoding": "chunked", "Content-Length": "999",
                 "Set-Cookie": "amazon=1", "X-Amz-Internal": "x", "x-amzn-RequestId": "req-1"},
        body={"errors": [{"code": "InvalidInput", "message": "bad"}]},
    )

    response = proxy("GET", "/fba/inventory/v1/summaries", params={"granularityType": "Marketplace"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "InvalidInput"
    for name in ("Set-Cookie", "Keep-Alive", "X-Amz-Internal", "Transfer-Encoding"):
        assert name not in response.headers
    assert response.headers.get("Connection", "").lower() != "close"
    assert response.headers["x-amzn-RequestId"] == "req-1"
    assert int(response.headers["Content-Length"]) == len(response.content)


# --- Refused before any network call ----------------------------------------------------------------


def test_a_path_whose_scope_was_not_granted_is_refused_without_a_call(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, scopes=(ORDERS, INVENTORY))
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/reports/2021-06-30/reports")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_not_granted"
    assert amazon_calls.calls == []


def test_a_path_outside_the_keys_prefixes_is_refused_without_a_call(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant, paths=["/orders/v0/orders"]), seller.public_id)

    for path in ("/fba/inventory/v1/summaries", "/orders/v0/ordersX", "/orders/v0"):
        response = proxy("GET", path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "path_not_allowed"
    assert amazon_calls.calls == []

    assert proxy("GET", "/orders/v0/orders/902-1234567-7654321").status_code == 404  # allowed: Amazon's 404
    assert len(amazon_calls.spapi_calls) == 1


def test_the_tokens_api_is_never_proxied(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant, permissions=["proxy", "rdt:create"]), seller.public_id)
    response = proxy("POST", "/tokens/2021-03-01/restrictedDataToken", json={"restrictedResources": []})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "path_not_allowed"
    assert amazon_calls.calls == []


@pytest.mark.parametrize(
    "path", ["/orders/%2e%2e/tokens/2021-03-01/restrictedDataToken", "/orders//v0", "/orders/%2e/v0", "/orders%2F..%2Ffba"]
)
def test_dot_and_empty_segments_are_400(live_amazon, tenant, amazon_calls, path):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    response = requests.get(proxy.base + path, headers=proxy.headers, timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_path"
    assert amazon_calls.calls == []


def test_another_tenants_connection_is_404_and_a_key_without_proxy_403(live_amazon, tenant, other_tenant, amazon_calls):
    theirs, _ = connected(other_tenant, spid="A1THEIRS")
    response = Proxy(live_amazon, new_key(tenant), theirs.public_id)("GET", "/orders/v0/orders")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"

    mine, _ = connected(tenant)
    response = Proxy(live_amazon, new_key(tenant, permissions=["tokens:read"]), mine.public_id)("GET", "/orders/v0/orders")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert amazon_calls.calls == []


def test_revoked_and_never_connected_connections_are_409_with_the_link(live_amazon, tenant, amazon_calls):
    from sellers.services.grants import grant_mark_revoked

    seller, _ = connected(tenant)
    grant_mark_revoked(seller=seller, reason="test", actor="system")
    pending = make_seller(tenant, "Pending Shop")
    key = new_key(tenant)
    for target in (seller, pending):
        response = Proxy(live_amazon, key, target.public_id)("GET", "/orders/v0/orders")
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "reauthorization_required"
        assert error["reauthorization_url"].startswith(live_amazon)
    assert amazon_calls.spapi_calls == []
    assert amazon_calls.token_calls == []


# --- Retries ------------------------------------------------------------------------------------------


def test_a_write_answered_500_is_sent_exactly_once(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    restricted.fault_push(path_prefix="/orders/v0/orders/", method="POST", status=500, times=5)

    response = proxy("POST", "/orders/v0/orders/902-1234567-7654321/shipment", json={"shipmentStatus": "ReadyForPickup"})

    assert response.status_code == 500
    assert response.json()["errors"][0]["code"] == "InternalFailure"
    assert [c.method for c in amazon_calls.spapi_calls] == ["POST"]


def test_a_get_answered_429_then_200_is_retried(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    restricted.fault_push(path_prefix="/orders/v0/orders", status=429, times=1, headers={"Retry-After": "0"})

    response = proxy("GET", "/orders/v0/orders")

    assert response.status_code == 200
    assert len(response.json()["payload"]["Orders"]) == 3
    assert [c.method for c in amazon_calls.spapi_calls] == ["GET", "GET"]


def test_get_retries_are_bounded_and_a_long_retry_after_is_handed_back(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    restricted.fault_push(path_prefix="/orders/", status=503, times=10, headers={"Retry-After": "0"})
    response = proxy("GET", "/orders/v0/orders")
    assert response.status_code == 503
    assert len(amazon_calls.spapi_calls) == 4  # the request and 3 retries

    restricted.faults_clear()
    amazon_calls.calls.clear()
    restricted.fault_push(path_prefix="/orders/", status=429, times=2, headers={"Retry-After": "60"})
    response = proxy("GET", "/orders/v0/orders")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert len(amazon_calls.spapi_calls) == 1


# --- Amazon refusing the token -----------------------------------------------------------------------


def test_a_refused_token_is_refreshed_once_and_the_request_sent_again(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, known_access_token=False)  # the stored token is one the sandbox never issued
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/orders/v0/orders")

    assert response.status_code == 200
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    assert len(amazon_calls.spapi_calls) == 2
    grant.refresh_from_db()
    assert grant.access_token != amazon_calls.spapi_calls[0].headers["x-amz-access-token"]
    assert amazon_calls.spapi_calls[1].headers["x-amz-access-token"] == grant.access_token


def test_a_seller_who_revoked_at_amazon_is_detected_and_answered_409(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant)
    sandbox_revoke(selling_partner_id=seller.selling_partner_id)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/orders/v0/orders")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "reauthorization_required"
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).exists()
    assert len(amazon_calls.spapi_calls) == 1


def test_amazons_refusal_of_a_fresh_token_is_handed_back_and_the_grant_left_alone(live_amazon, tenant, amazon_calls):
    """A path-limited key must not narrow the seller's grant for every program: Amazon's 403 with
    a fresh token may mean a missing role or another region's marketplace, not a missing scope."""
    seller, grant = connected(tenant, scopes=(ORDERS, INVENTORY))
    SandboxAuthorization.objects.filter(selling_partner_id=seller.selling_partner_id).update(scopes=[ORDERS])
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/fba/inventory/v1/summaries")

    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "Unauthorized"
    assert [c.method for c in amazon_calls.spapi_calls] == ["GET", "GET"]  # refreshed once, sent again once
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    grant.refresh_from_db()
    assert grant.refused_scopes == [] and grant.status == Grant.Status.ACTIVE
    assert not Event.objects.filter(seller=seller, kind=Event.Kind.SCOPE_REFUSED).exists()
    assert proxy("GET", "/orders/v0/orders").status_code == 200  # the seller's other scopes untouched


def test_a_write_whose_token_amazon_refuses_is_sent_once_and_the_token_refreshed(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    restricted.fault_push(
        path_prefix="/orders/v0/orders/", method="POST", status=403,
        body={"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied."}]},
    )
    stale = grant.access_token

    response = proxy("POST", "/orders/v0/orders/902-1234567-7654321/shipment", json={"shipmentStatus": "ReadyForPickup"})

    assert response.status_code == 403
    assert [c.method for c in amazon_calls.spapi_calls] == ["POST"]
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    grant.refresh_from_db()
    assert grant.access_token != stale and grant.status == Grant.Status.ACTIVE


def test_a_403_about_the_request_is_handed_back_without_a_refresh(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    restricted.fault_push(path_prefix="/orders/v0/orders", method="GET", status=403, body={"errors": []})

    response = proxy("GET", "/orders/v0/orders")

    assert response.status_code == 403
    assert len(amazon_calls.spapi_calls) == 1 and amazon_calls.token_calls == []


# --- Cost -----------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=False)
def test_a_proxied_call_costs_at_most_two_queries(client, tenant, amazon_calls, settings):
    """In-process, with Amazon's answer scripted, so that only the proxy's own queries count."""
    settings.SPCONNECT_API_RATE_LIMIT_REQUESTS = 100
    seller, _ = connected(tenant)
    key = new_key(tenant)
    amazon_calls.script(url_contains="/spapi/na/orders/v0/orders", body={"payload": {"Orders": []}},
                        headers={"x-amzn-RequestId": "r-1", "x-amzn-RateLimit-Limit": "0.0167"}, times=None)
    url = f"/api/v1/connections/{seller.public_id}/proxy/orders/v0/orders"
    assert client.get(url, HTTP_AUTHORIZATION=f"Bearer {key}").status_code == 200  # first use: last_used_at written

    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, {"MarketplaceIds": "ATVPDKIKX0DER"}, HTTP_AUTHORIZATION=f"Bearer {key}")

    assert response.status_code == 200
    assert response["x-amzn-RequestId"] == "r-1"
    assert len(queries) <= 2, [q["sql"] for q in queries]
    assert len(amazon_calls.spapi_calls) == 2


def test_no_answer_from_amazon_is_502_and_a_write_is_not_repeated(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    amazon_calls.script(url_contains="/spapi/na/orders/", exc=requests.ConnectionError("reset"), times=None)

    response = proxy("POST", "/orders/v0/orders/902-1234567-7654321/shipment", json={"shipmentStatus": "ReadyForPickup"})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "spapi_unreachable"
    assert "may have been applied" in response.json()["error"]["message"]
    assert len(amazon_calls.spapi_calls) == 1


def test_an_answer_longer_than_the_limit_is_not_read_into_memory(live_amazon, tenant, amazon_calls, monkeypatch):
    from api import proxy as proxy_module

    monkeypatch.setattr(proxy_module, "MAX_RESPONSE_BYTES", 100)  # the sandbox's orders page is longer
    seller, _ = connected(tenant)

    response = Proxy(live_amazon, new_key(tenant), seller.public_id)("GET", "/orders/v0/orders")

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "spapi_response_too_large"


def test_unconfirmed_scopes_are_gated_by_the_apps_recorded_roles_without_a_call(live_amazon, tenant, amazon_calls):
    """As spapi_request: Amazon named no scopes, so the app's roles decide (Finance opens no inventory path)."""
    seller, _ = connected(tenant, confirmed=False)
    tenant.app_roles = ["finance_and_accounting"]
    tenant.save(update_fields=["app_roles"])
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)

    response = proxy("GET", "/fba/inventory/v1/summaries")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "scope_not_granted"
    assert "is registered for none of them" in response.json()["error"]["message"]
    assert amazon_calls.calls == []


def test_paths_outside_spconnects_map_and_grantless_paths_are_refused(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant)
    proxy = Proxy(live_amazon, new_key(tenant), seller.public_id)
    for path in ("/unknown/v1/thing", "/notifications/v1/destinations", "/applications/2023-11-30/clientSecret"):
        response = proxy("GET", path)
        assert response.status_code == 403, path
        assert response.json()["error"]["code"] == "path_not_allowed"
    assert amazon_calls.calls == []
