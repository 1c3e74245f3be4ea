"""spconnect_client (clients/python): the Python client of the agency API.

The first part drives the client against a stub transport (pages, error mapping, retries, the
token cache and its locking, which a live server cannot make deterministic); the second part
runs it against the real API on a live server.
"""

from __future__ import annotations

import io
import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

import spconnect_client
from spconnect_client import (
    AccessToken,
    ApiError,
    AppCredentialsRejected,
    Client,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ReauthorizationRequired,
    SpconnectError,
    TokenCache,
    TokenUnavailable,
    TransportError,
    Unauthorized,
    sp_api_auth,
)

BASE = "https://spconnect.test"
CONNECTION = {
    "id": "3f0c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "name": "Seller One", "selling_partner_id": "A1SELLER", "region": "na",
    "status": "active", "granted_scopes": ["sellingpartnerapi::orders"], "missing_scopes": [], "scopes_confirmed": True,
    "authorized_at": "2025-01-02T03:04:05Z", "renewal_due_at": "2026-01-02T03:04:05+00:00",
    "access_token_expires_at": None, "last_refreshed_at": None, "created_at": "2025-01-01T00:00:00.123456Z",
}


class Stub(BaseAdapter):
    """A stand-in for spconnect: `handler(request) -> (status, body, headers)`; records requests."""

    def __init__(self, handler):
        super().__init__()
        self.handler = handler
        self.requests: list[requests.PreparedRequest] = []
        self._lock = threading.Lock()

    def send(self, request, **kwargs):
        with self._lock:
            self.requests.append(request)
        answer = self.handler(request)
        if isinstance(answer, Exception):
            raise answer
        status, body, headers = answer
        response = requests.Response()
        response.status_code = status
        response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json", **headers})
        response.url = request.url
        response.request = request
        return response

    def close(self):
        pass

    def bodies(self) -> list[dict]:
        return [json.loads(r.body) if r.body else {} for r in self.requests]


def stub_client(handler, **kwargs) -> tuple[Client, Stub]:
    stub = Stub(handler)
    session = requests.Session()
    session.mount(BASE, stub)
    return Client(base_url=BASE, api_key="spk_test_secret", session=session, **kwargs), stub


def token_answer(token: str = "Atza|one", expires_in: int = 3600) -> tuple[int, dict, dict]:
    expires_at = datetime.now(UTC) + timedelta(seconds=expires_in)
    return 200, {"access_token": token, "token_type": "bearer", "expires_at": expires_at.isoformat(),
                 "expires_in": expires_in, "region": "na", "endpoint": "https://sellingpartnerapi-na.amazon.com",
                 "selling_partner_id": "A1SELLER"}, {}


# --- Client: requests and answers ----------------------------------------------------------------


def test_list_connections_follows_cursors_until_null_and_sends_filters():
    def handler(request):
        cursor = parse_qs(urlparse(request.url).query).get("cursor", [None])[0]
        if cursor is None:
            return 200, {"data": [CONNECTION, {**CONNECTION, "id": "second"}], "next_cursor": "c1"}, {}
        return 200, {"data": [{**CONNECTION, "id": "third", "future_field": 1}], "next_cursor": None}, {}

    client, stub = stub_client(handler)
    connections = list(client.list_connections(status="active", region="na", q="One", limit=2))

    assert [c.id for c in connections] == [CONNECTION["id"], "second", "third"]
    first, second = (parse_qs(urlparse(r.url).query) for r in stub.requests)
    assert urlparse(stub.requests[0].url).path == "/api/v1/connections"
    assert first == {"status": ["active"], "region": ["na"], "q": ["One"], "limit": ["2"]}
    assert second == {**first, "cursor": ["c1"]}
    assert all(r.headers["Authorization"] == "Bearer spk_test_secret" for r in stub.requests)
    c = connections[0]
    assert c.authorized_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert c.created_at.microsecond == 123456 and c.access_token_expires_at is None
    assert c.granted_scopes == ["sellingpartnerapi::orders"] and c.scopes_confirmed is True
    assert connections[2].extra == {"future_field": 1}


def test_base_url_may_be_the_site_or_the_api_root_and_ids_stay_one_segment():
    client, stub = stub_client(lambda r: (200, CONNECTION, {}))
    assert Client(base_url=BASE + "/api/v1/", api_key="k").base_url == BASE + "/api/v1"
    client.get_connection("../keys?x=1")
    assert urlparse(stub.requests[0].url).path == "/api/v1/connections/..%2Fkeys%3Fx%3D1"


def test_access_token_posts_its_options_and_keeps_the_token_out_of_repr():
    client, stub = stub_client(lambda r: token_answer("Atza|secret-value"))
    token = client.get_access_token("c1", min_ttl_seconds=600, force_refresh=True)
    assert isinstance(token, AccessToken) and token.access_token == "Atza|secret-value"
    assert token.expires_in == 3600 and token.region == "na" and token.selling_partner_id == "A1SELLER"
    assert stub.requests[0].method == "POST" and urlparse(stub.requests[0].url).path == "/api/v1/connections/c1/access-token"
    assert stub.bodies() == [{"min_ttl_seconds": 600, "force_refresh": True}]
    assert "secret-value" not in repr(token) and "spk_test_secret" not in repr(client)
    client.get_access_token("c1")
    assert stub.bodies()[1] == {}


@pytest.mark.parametrize(
    ("status", "error", "headers", "cls", "attrs"),
    [
        (400, {"code": "invalid_request", "message": "Bad region.", "field": "region"}, {}, InvalidRequest, {"field": "region"}),
        (401, {"code": "unauthorized", "message": "Unknown key."}, {"WWW-Authenticate": "Bearer"}, Unauthorized, {}),
        (403, {"code": "permission_denied", "message": "Needs tokens:read."}, {}, PermissionDenied, {}),
        (404, {"code": "not_found", "message": "No such connection."}, {}, NotFound, {}),
        (409, {"code": "reauthorization_required", "message": "Revoked.", "reauthorization_url": "https://x/connect/t/"},
         {}, ReauthorizationRequired, {"reauthorization_url": "https://x/connect/t/"}),
        (409, {"code": "idempotency_conflict", "message": "Key used with another body."}, {}, IdempotencyConflict, {}),
        (429, {"code": "rate_limited", "message": "Slow down."}, {"Retry-After": "7"}, RateLimited, {"retry_after": 7.0}),
        (502, {"code": "app_credentials_rejected", "message": "Client secret refused."}, {}, AppCredentialsRejected, {}),
        (503, {"code": "token_unavailable", "message": "LWA is failing."}, {"Retry-After": "30"}, TokenUnavailable,
         {"retry_after": 30.0}),
    ],
)
def test_error_codes_raise_their_own_exception(status, error, headers, cls, attrs):
    client, _ = stub_client(lambda r: (status, {"error": error}, headers))
    with pytest.raises(cls) as caught:
        client.get_access_token("c1")
    exc = caught.value
    assert isinstance(exc, ApiError) and isinstance(exc, SpconnectError)
    assert (exc.code, exc.message, exc.status) == (error["code"], error["message"], status)
    for name, value in attrs.items():
        assert getattr(exc, name) == value
    assert exc.code in str(exc)


def test_retry_after_as_an_http_date():
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    client, _ = stub_client(lambda r: (503, {"error": {"code": "token_unavailable", "message": "later"}}, {"Retry-After": when}))
    with pytest.raises(TokenUnavailable) as caught:
        client.get_access_token("c1")
    assert 100 < caught.value.retry_after <= 120


def test_an_unknown_code_keeps_its_status_class_and_a_foreign_error_page_is_not_an_api_error_code():
    client, _ = stub_client(lambda r: (404, {"error": {"code": "connection_archived", "message": "Gone."}}, {}))
    with pytest.raises(NotFound) as caught:
        client.get_connection("c1")
    assert caught.value.code == "connection_archived"

    # 409 means two things (a seller to re-authorize, a reused Idempotency-Key): no guessing by status.
    client, _ = stub_client(lambda r: (409, {"error": {"code": "something_new", "message": "?"}}, {}))
    with pytest.raises(ApiError) as caught:
        client.get_connection("c1")
    assert type(caught.value) is ApiError and caught.value.code == "something_new"

    client, _ = stub_client(lambda r: (502, b"<html>Bad gateway</html>", {"Content-Type": "text/html"}))
    with pytest.raises(ApiError) as caught:
        client.get_connection("c1")
    assert type(caught.value) is ApiError and caught.value.code == "http_502" and caught.value.status == 502

    client, _ = stub_client(lambda r: (200, b"<html>not the API</html>", {"Content-Type": "text/html"}))
    with pytest.raises(TransportError):
        client.get_connection("c1")


def test_create_invitation_retries_a_lost_request_with_the_same_idempotency_key():
    answers = [requests.ConnectionError("reset"), (201, {"connection": CONNECTION, "url": "https://x/connect/abc/",
                                                        "expires_at": "2025-01-08T00:00:00Z"}, {})]
    client, stub = stub_client(lambda r: answers.pop(0))
    client_sleep = []
    import spconnect_client.client as module

    original = module.time.sleep
    module.time.sleep = client_sleep.append
    try:
        invitation = client.create_invitation(name="Seller One", email="s@example.com", region="eu", days=3)
    finally:
        module.time.sleep = original
    assert invitation.url == "https://x/connect/abc/" and invitation.connection.id == CONNECTION["id"]
    keys = [r.headers["Idempotency-Key"] for r in stub.requests]
    assert len(keys) == 2 and keys[0] == keys[1] and len(keys[0]) >= 32
    assert stub.bodies()[0] == {"name": "Seller One", "email": "s@example.com", "region": "eu", "days": 3}

    client, stub = stub_client(lambda r: (201, {"connection": CONNECTION, "url": "u", "expires_at": None}, {}))
    client.create_invitation(name="Seller Two", idempotency_key="order-sync-42")
    client.create_invitation(name="Seller Two")
    assert stub.requests[0].headers["Idempotency-Key"] == "order-sync-42"
    assert stub.requests[1].headers["Idempotency-Key"] not in ("order-sync-42", keys[0])


def test_unreachable_spconnect_is_a_transport_error_after_the_retries():
    client, stub = stub_client(lambda r: requests.ConnectionError("refused"), max_retries=0)
    with pytest.raises(TransportError):
        client.list_connections_page()
    assert len(stub.requests) == 1


# --- sp_api_auth: cache, single flight, errors -------------------------------------------------------


class Clock:
    """time.monotonic for the adapter, moved by hand."""

    def __init__(self, monkeypatch):
        self.now = 1000.0
        monkeypatch.setattr(spconnect_client.sp_api.time, "monotonic", lambda: self.now)


def test_sp_api_auth_caches_the_token_until_min_ttl_before_it_expires(monkeypatch):
    clock = Clock(monkeypatch)
    tokens = iter(["Atza|first", "Atza|second"])
    client, stub = stub_client(lambda r: token_answer(next(tokens), expires_in=3600))
    auth = sp_api_auth(client=client, connection_id="c1", min_ttl=300, cache=TokenCache())
    token_client = auth(refresh_token=None, credentials=object(), proxies=None, verify=True)

    first = [token_client.get_auth() for _ in range(50)]
    assert {r.access_token for r in first} == {"Atza|first"} and len(stub.requests) == 1
    assert stub.bodies()[0] == {"min_ttl_seconds": 300}
    assert first[0].expires_in == 3600 and first[0].token_type == "bearer" and first[0].refresh_token is None

    clock.now += 3600 - 301  # 301 s left: still good
    assert token_client.get_auth().access_token == "Atza|first" and len(stub.requests) == 1
    clock.now += 1  # 300 s left: no longer
    assert token_client.get_auth().access_token == "Atza|second" and len(stub.requests) == 2


def test_sp_api_auth_shares_its_cache_between_clients_and_callables_of_one_connection():
    cache = TokenCache()
    client, stub = stub_client(lambda r: token_answer())
    one = sp_api_auth(client=client, connection_id="c1", cache=cache)
    two = sp_api_auth(client=client, connection_id="c1", cache=cache)
    other = sp_api_auth(client=client, connection_id="c2", cache=cache)
    for factory in (one, two, one, two):
        factory(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth()
    assert len(stub.requests) == 1
    other(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth()
    assert [urlparse(r.url).path for r in stub.requests] == ["/api/v1/connections/c1/access-token",
                                                              "/api/v1/connections/c2/access-token"]
    one.invalidate()  # SP-API refused the token: the next ask forces a refresh, once
    two(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth()
    two(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth()
    assert len(stub.requests) == 3 and stub.bodies()[2] == {"min_ttl_seconds": 300, "force_refresh": True}


def test_sp_api_auth_asks_once_for_many_threads_and_does_not_serialize_connections():
    gate = threading.Event()

    def handler(request):
        if "/connections/slow/" in request.url:
            # Answers only once the other connection has been served: serialized fetches would hang here.
            if not gate.wait(timeout=10):
                return 500, {"error": {"code": "stuck", "message": "other connection never asked"}}, {}
            time.sleep(0.05)  # let every thread pile up behind this fetch
            return token_answer("Atza|slow")
        gate.set()
        return token_answer("Atza|fast")

    cache = TokenCache()
    client, stub = stub_client(handler)
    slow = sp_api_auth(client=client, connection_id="slow", cache=cache)
    fast = sp_api_auth(client=client, connection_id="fast", cache=cache)
    results, errors = [], []
    start = threading.Barrier(33)

    def ask(factory):
        try:
            start.wait()
            results.append(factory(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth().access_token)
        except SpconnectError as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(slow,)) for _ in range(32)]
    for t in threads:
        t.start()
    start.wait()
    time.sleep(0.01)
    ask_fast = threading.Thread(target=lambda: results.append(
        fast(refresh_token=None, credentials=None, proxies=None, verify=True).get_auth().access_token))
    ask_fast.start()
    for t in threads + [ask_fast]:
        t.join(timeout=20)

    assert errors == []
    assert sorted(results) == ["Atza|fast"] + ["Atza|slow"] * 32
    paths = [urlparse(r.url).path for r in stub.requests]
    assert paths.count("/api/v1/connections/slow/access-token") == 1
    assert paths.count("/api/v1/connections/fast/access-token") == 1


def test_sp_api_auth_passes_errors_through_and_caches_nothing_on_failure():
    answers = [(409, {"error": {"code": "reauthorization_required", "message": "Revoked.",
                                "reauthorization_url": "https://x/connect/again/"}}, {}),
               token_answer("Atza|after")]
    client, stub = stub_client(lambda r: answers.pop(0))
    token_client = sp_api_auth(client=client, connection_id="c1", cache=TokenCache())(
        refresh_token=None, credentials=None, proxies=None, verify=True)
    with pytest.raises(ReauthorizationRequired) as caught:
        token_client.get_auth()
    assert caught.value.reauthorization_url == "https://x/connect/again/"
    assert token_client.get_auth().access_token == "Atza|after" and len(stub.requests) == 2


def test_grantless_auth_asks_spconnect_once_per_scope_while_the_token_lasts():
    def handler(request):
        scope = json.loads(request.body)["scope"]
        return 200, {"access_token": f"Atc|{scope[-5:]}-{len(stub.requests)}", "expires_in": 3600}, {}

    client, stub = stub_client(handler)
    token_client = sp_api_auth(client=client, connection_id="c1", cache=TokenCache())(
        refresh_token=None, credentials=None, proxies=None, verify=True)
    first = token_client.get_grantless_auth("sellingpartnerapi::notifications")
    again = token_client.get_grantless_auth("sellingpartnerapi::notifications")
    rotation = token_client.get_grantless_auth("sellingpartnerapi::client_credential:rotation")
    assert first.access_token == again.access_token == "Atc|tions-1"
    assert rotation.access_token == "Atc|ation-2"
    assert [urlparse(r.url).path for r in stub.requests] == ["/api/v1/grantless-token"] * 2
    assert stub.bodies() == [{"scope": "sellingpartnerapi::notifications"},
                             {"scope": "sellingpartnerapi::client_credential:rotation"}]
    assert 3500 < first.expires_in <= 3600


def test_python_amazon_sp_api_builds_its_client_with_sp_api_auth_and_reads_its_token():
    from sp_api.api import Orders
    from sp_api.auth import AccessTokenResponse
    from sp_api.base import Marketplaces

    client, stub = stub_client(lambda r: token_answer("Atza|for-orders"))
    orders = Orders(marketplace=Marketplaces.US, credentials=spconnect_client.SP_API_CREDENTIALS,
                    auth_token_client_class=sp_api_auth(client=client, connection_id="c1", cache=TokenCache()))
    assert isinstance(orders.auth, AccessTokenResponse)
    assert orders.headers["x-amz-access-token"] == "Atza|for-orders"
    assert orders.auth.access_token == "Atza|for-orders" and len(stub.requests) == 1


# --- Against the real API on a live server ------------------------------------------------------------


def live_key(tenant, *permissions: str, name: str = "client-test") -> str:
    from django.core.management import call_command

    from .conftest import read_output

    output = read_output(lambda stdout: call_command(
        "api_key", "create", "--tenant", tenant.slug, "--name", name, "--permissions", ",".join(permissions), stdout=stdout))
    return output.strip().splitlines()[-1]


@pytest.fixture
def live(live_amazon, tenant):
    """A Client on the live server with every permission of this part of the API."""
    return Client(base_url=live_amazon, api_key=live_key(tenant, "connections:read", "tokens:read", "invitations:write"))


@pytest.mark.django_db(transaction=True)
def test_live_list_connections_walks_every_page_and_filters(live, tenant):
    from .conftest import make_grant, make_seller

    sellers = [make_seller(tenant, f"Shop {i}", spid=f"A1SHOP{i}", region="eu" if i % 2 else "na") for i in range(5)]
    for seller in sellers[:3]:
        make_grant(seller)

    everyone = list(live.list_connections(limit=2))
    assert sorted(c.id for c in everyone) == sorted(str(s.public_id) for s in sellers)
    assert len({c.id for c in everyone}) == 5
    assert live.list_connections_page(limit=2).next_cursor
    assert {c.selling_partner_id for c in live.list_connections(region="eu")} == {"A1SHOP1", "A1SHOP3"}
    assert {c.name for c in live.list_connections(status="invited")} == {"Shop 3", "Shop 4"}
    [one] = live.list_connections(selling_partner_id="A1SHOP2")
    assert one.status == "active" and one.access_token_expires_at is not None and one.authorized_at is not None
    assert live.get_connection(one.id) == one


@pytest.mark.django_db(transaction=True)
def test_live_keys_and_permissions_map_to_their_exceptions(live_amazon, live, tenant, other_tenant):
    from django.core.management import call_command

    from .conftest import make_seller

    theirs = make_seller(other_tenant, "Their Shop", spid="A1THEIRS")
    with pytest.raises(NotFound) as caught:
        live.get_connection(str(theirs.public_id))
    assert caught.value.code == "not_found" and caught.value.status == 404

    read_only = Client(base_url=live_amazon, api_key=live_key(tenant, "connections:read", name="read-only"))
    mine = make_seller(tenant, "My Shop", spid="A1MINE")
    with pytest.raises(PermissionDenied) as caught:
        read_only.get_access_token(str(mine.public_id))
    assert caught.value.status == 403

    call_command("api_key", "revoke", "--tenant", tenant.slug, "--name", "read-only", stdout=io.StringIO())
    with pytest.raises(Unauthorized) as caught:
        list(read_only.list_connections())
    assert caught.value.status == 401
    with pytest.raises(Unauthorized):
        Client(base_url=live_amazon, api_key="spc_nothere0_" + "x" * 43).get_connection(str(mine.public_id))

    with pytest.raises(InvalidRequest) as caught:
        live.create_invitation(name="Bad Region", region="xx")
    assert caught.value.field == "region" and caught.value.status == 400


@pytest.mark.django_db(transaction=True)
def test_live_invitations_are_idempotent_and_links_come_back(live, tenant):
    from sellers.models import Seller

    first = live.create_invitation(name="Idem Shop", email="idem@example.com", region="eu", days=3,
                                   idempotency_key="crm-lead-1")
    again = live.create_invitation(name="Idem Shop", email="idem@example.com", region="eu", days=3,
                                   idempotency_key="crm-lead-1")
    assert again.connection.id == first.connection.id and again.url == first.url
    assert Seller.objects.filter(tenant=tenant, name="Idem Shop").count() == 1
    with pytest.raises(IdempotencyConflict) as caught:
        live.create_invitation(name="Another Shop", idempotency_key="crm-lead-1")
    assert caught.value.status == 409 and not isinstance(caught.value, ReauthorizationRequired)
    assert first.connection.status == "invited" and first.connection.region == "eu"
    assert first.expires_at - datetime.now(UTC) <= timedelta(days=3)

    link = live.create_reauthorization_link(first.connection.id)
    assert link.url.startswith("http") and link.expires_at is not None


@pytest.mark.django_db(transaction=True)
def test_live_access_tokens_and_their_errors(live, tenant, amazon_calls):
    from .conftest import make_grant, make_seller

    valid = make_seller(tenant, "Valid Shop", spid="A1VALID")
    make_grant(valid, access_token="Atza|stored-and-valid-0123456789")
    token = live.get_access_token(str(valid.public_id), min_ttl_seconds=600)
    assert token.access_token == "Atza|stored-and-valid-0123456789" and token.selling_partner_id == "A1VALID"
    assert 600 < token.expires_in <= 3600 and amazon_calls.token_calls == []

    pending = make_seller(tenant, "Pending Shop")
    with pytest.raises(ReauthorizationRequired) as caught:
        live.get_access_token(str(pending.public_id))
    assert caught.value.reauthorization_url

    expired = make_seller(tenant, "Expired Token Shop", spid="A1EXPIRED")
    make_grant(expired, expires_in=-60)
    amazon_calls.lwa_error("server_error", status=500, times=None)
    with pytest.raises(TokenUnavailable) as caught:
        live.get_access_token(str(expired.public_id))
    assert caught.value.retry_after and caught.value.retry_after > 0

    amazon_calls.scripted.clear()  # spconnect now backs off on that grant; another one meets a refused app secret
    other = make_seller(tenant, "Other Expired Shop", spid="A1EXPIRED2")
    make_grant(other, expires_in=-60)
    amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed")
    with pytest.raises(AppCredentialsRejected) as caught:
        live.get_access_token(str(other.public_id))
    assert caught.value.status == 502


@pytest.mark.django_db(transaction=True)
def test_live_rate_limit_carries_retry_after(live, settings, rate_window_held):
    settings.SPCONNECT_API_RATE_LIMIT_REQUESTS = 2
    live.list_connections_page()
    live.list_connections_page()
    with pytest.raises(RateLimited) as caught:
        live.list_connections_page()
    assert caught.value.status == 429 and caught.value.retry_after and caught.value.retry_after > 0


# --- The SP-API proxy, restricted data tokens and grantless tokens, live -------------------------


@pytest.mark.django_db(transaction=True)
def test_live_proxy_returns_amazons_answers_and_raises_spconnects_refusals(live_amazon, tenant, other_tenant, amazon_calls):
    from spconnect_client import PathNotAllowed, ProxyResponse, ScopeNotGranted

    from .test_api_proxy import connected

    seller, _ = connected(tenant)
    client = Client(base_url=live_amazon, api_key=live_key(tenant, "proxy", "rdt:create", name="proxy-client"))
    limited = Client(base_url=live_amazon, api_key=live_key(tenant, "proxy", name="orders-only"))
    from api.models import ApiKey

    ApiKey.objects.filter(name="orders-only").update(paths=["/orders/"])

    orders = client.proxy(str(seller.public_id), "GET", "/orders/v0/orders", params={"CreatedAfter": "2025-01-01T00:00:00Z"})
    assert isinstance(orders, ProxyResponse) and orders.ok
    assert orders.json()["payload"]["CreatedAfter"] == "2025-01-01T00:00:00Z"
    assert orders.request_id and orders.rate_limit == pytest.approx(0.0167)

    missing = client.proxy(str(seller.public_id), "POST", "/orders/v0/orders/902-1234567-7654321/shipment",
                           json={"shipmentStatus": "ReadyForPickup"})
    assert missing.status == 404 and missing.json()["errors"][0]["code"] == "NotFound"  # Amazon's, not raised

    address = client.proxy(str(seller.public_id), "GET", "/orders/v0/orders/902-1234567-7654321/address",
                           data_elements=["shippingAddress"])
    assert address.status == 200 and address.json()["payload"]["ShippingAddress"]["CountryCode"] == "US"

    with pytest.raises(ScopeNotGranted):
        client.proxy(str(seller.public_id), "GET", "/reports/2021-06-30/reports")
    with pytest.raises(PathNotAllowed):
        limited.proxy(str(seller.public_id), "GET", "/fba/inventory/v1/summaries")
    theirs, _ = connected(other_tenant, spid="A1THEIRS")
    with pytest.raises(NotFound):
        client.proxy(str(theirs.public_id), "GET", "/orders/v0/orders")
    with pytest.raises(PermissionDenied):
        limited.proxy(str(seller.public_id), "GET", "/orders/v0/orders/1/address", data_elements=["buyerInfo"])


@pytest.mark.django_db(transaction=True)
def test_live_restricted_data_and_grantless_tokens(live_amazon, tenant, amazon_calls):
    from .test_api_proxy import connected

    seller, _ = connected(tenant)
    client = Client(base_url=live_amazon, api_key=live_key(tenant, "rdt:create", "grantless", name="tokens-client"))
    path = "/orders/v0/orders/902-1234567-7654321/buyerInfo"
    rdt = client.get_restricted_data_token(str(seller.public_id), [{"method": "GET", "path": path}])
    assert rdt.restricted_data_token not in repr(rdt) and rdt.expires_in == 3600
    answer = requests.get(f"{live_amazon}/sandbox/spapi/na{path}", headers={"x-amz-access-token": rdt.restricted_data_token},
                          timeout=10)
    assert answer.status_code == 200 and "BuyerInfo" in answer.json()["payload"]

    grantless = client.get_grantless_token("sellingpartnerapi::notifications")
    assert grantless.access_token not in repr(grantless) and grantless.expires_in > 3000
    with pytest.raises(InvalidRequest) as caught:
        client.get_grantless_token("sellingpartnerapi::orders")
    assert caught.value.field == "scope"
