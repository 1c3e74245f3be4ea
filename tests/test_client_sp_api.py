"""python-amazon-sp-api itself, through `spconnect_client.sp_api_auth`, against a live server:
the agency API hands out the token and the local sandbox plays SP-API, over real sockets.

python-amazon-sp-api sends `host: endpoint[8:]` (it assumes https:// and no path), so the sandbox
endpoint (plain http, under /sandbox/spapi/na) needs that header set right: `on_sandbox` does.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest
import requests
from django.core.management import call_command
from sp_api.api import Orders, Sellers
from sp_api.base import Marketplaces, SellingApiForbiddenException

from sellers.models import Grant
from spconnect_client import (
    SP_API_CREDENTIALS,
    Client,
    ReauthorizationRequired,
    TokenCache,
    sp_api_auth,
)

from .conftest import parse_form, read_output

pytestmark = pytest.mark.django_db(transaction=True)


def api_key(tenant, *permissions: str) -> str:
    output = read_output(lambda stdout: call_command(
        "api_key", "create", "--tenant", tenant.slug, "--name", "sp-api-test", "--permissions", ",".join(permissions),
        stdout=stdout))
    return output.strip().splitlines()[-1]


def connect_seller(invite_url: str, spid: str) -> None:
    """The seller opens the invitation and approves every scope on the sandbox's consent page."""
    browser = requests.Session()
    page = browser.get(invite_url, timeout=10)
    csrf = next(v for n, v, *_ in parse_form(page.text)["fields"] if n == "csrfmiddlewaretoken")
    start = browser.post(invite_url + "start/", data={"csrfmiddlewaretoken": csrf}, allow_redirects=False, timeout=10)
    consent = browser.get(start.headers["Location"], timeout=10)
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    data.update(selling_partner_id=spid, decision="approve",
                scope=[v for n, v, kind, _ in form["fields"] if kind == "checkbox"])
    back = browser.post(start.headers["Location"].split("?")[0], data=data, allow_redirects=False, timeout=10)
    assert browser.get(back.headers["Location"], timeout=20).status_code == 200


def on_sandbox(api, endpoint: str):
    """Point a python-amazon-sp-api client at the sandbox's SP-API, with a host header that fits."""
    api.endpoint = endpoint
    send = api._transport.request

    def request(method, url, *, headers=None, **kwargs):
        return send(method, url, headers={**(headers or {}), "host": urlparse(url).netloc}, **kwargs)

    api._transport.request = request
    return api


@pytest.fixture
def counted_client(live_amazon, tenant):
    """A Client with every permission of this part, counting its requests by path."""
    client = Client(base_url=live_amazon, api_key=api_key(tenant, "connections:read", "tokens:read", "invitations:write"))
    client.paths = []
    client._session.hooks["response"].append(lambda r, *a, **k: client.paths.append(urlparse(r.url).path))
    return client


def test_orders_and_sellers_run_as_the_seller_with_one_token_request(live_amazon, counted_client, amazon_calls):
    invitation = counted_client.create_invitation(name="SP-API Shop", region="na")
    connect_seller(invitation.url, "A1SPAPISHOP")
    auth = sp_api_auth(client=counted_client, connection_id=invitation.connection.id, cache=TokenCache())
    token = counted_client.get_access_token(invitation.connection.id)
    assert token.endpoint == f"{live_amazon}/sandbox/spapi/na"

    orders = on_sandbox(Orders(version="v0", marketplace=Marketplaces.US, credentials=SP_API_CREDENTIALS,
                               auth_token_client_class=auth), token.endpoint)
    sellers = on_sandbox(Sellers(marketplace=Marketplaces.US, credentials=SP_API_CREDENTIALS,
                                 auth_token_client_class=auth), token.endpoint)
    counted_client.paths.clear()
    found = [orders.get_orders(CreatedAfter="2025-01-01T00:00:00Z") for _ in range(3)]
    participations = sellers.get_marketplace_participation()

    assert [len(r.payload["Orders"]) for r in found] == [3, 3, 3]
    assert participations.payload[0]["storeName"] == "Sandbox store A1SPAPISHOP"
    # One token request for both clients and all four calls; spconnect needed no LWA refresh.
    assert counted_client.paths == [f"/api/v1/connections/{invitation.connection.id}/access-token"]
    assert [c.grant_type for c in amazon_calls.token_calls] == ["authorization_code"]


def test_a_revoked_seller_surfaces_as_reauthorization_required_after_invalidate(live_amazon, counted_client, amazon_calls):
    invitation = counted_client.create_invitation(name="Revoking Shop", region="na")
    connect_seller(invitation.url, "A1REVOKING")
    auth = sp_api_auth(client=counted_client, connection_id=invitation.connection.id, cache=TokenCache())
    sellers = on_sandbox(Sellers(marketplace=Marketplaces.US, credentials=SP_API_CREDENTIALS,
                                 auth_token_client_class=auth), f"{live_amazon}/sandbox/spapi/na")
    assert sellers.get_marketplace_participation().payload

    call_command("sandbox", "revoke", "A1REVOKING")  # as Seller Central would
    with pytest.raises(SellingApiForbiddenException):
        sellers.get_marketplace_participation()  # the cached token, refused by SP-API
    auth.invalidate()
    with pytest.raises(ReauthorizationRequired) as caught:
        sellers.get_marketplace_participation()

    assert caught.value.reauthorization_url.startswith(live_amazon)
    assert amazon_calls.token_calls[-1].grant_type == "refresh_token"  # spconnect asked LWA, which refused
    assert Grant.objects.get(seller__selling_partner_id="A1REVOKING").status == Grant.Status.REVOKED


def test_a_pending_connection_has_no_token_to_give(live_amazon, counted_client, amazon_calls):
    invitation = counted_client.create_invitation(name="Not Yet Shop", region="eu")
    sellers = Sellers(marketplace=Marketplaces.DE, credentials=SP_API_CREDENTIALS,
                      auth_token_client_class=sp_api_auth(client=counted_client, connection_id=invitation.connection.id,
                                                          cache=TokenCache()))
    with pytest.raises(ReauthorizationRequired) as caught:
        sellers.get_marketplace_participation()
    assert caught.value.status == 409 and caught.value.reauthorization_url
    assert amazon_calls.token_calls == [] and amazon_calls.spapi_calls == []


def test_grantless_operations_get_the_apps_token_from_spconnect(live_amazon, tenant, amazon_calls):
    from sp_api.api import Notifications

    from sellers.services.tokens.grantless import grantless_cache_clear

    grantless_cache_clear()
    client = Client(base_url=live_amazon, api_key=api_key(tenant, "grantless"))
    notifications = on_sandbox(
        Notifications(credentials=SP_API_CREDENTIALS, auth_token_client_class=sp_api_auth(
            client=client, connection_id="unused-for-grantless", cache=TokenCache())),
        f"{live_amazon}/sandbox/spapi/na",
    )

    first = notifications.get_destinations()
    second = notifications.get_destinations()

    # The sandbox lists its destination only to a grantless notifications token.
    assert first.payload[0]["name"] == second.payload[0]["name"] == "sandbox-queue"
    grantless = [c for c in amazon_calls.token_calls if c.grant_type == "client_credentials"]
    assert [c.data["scope"] for c in grantless] == ["sellingpartnerapi::notifications"]
