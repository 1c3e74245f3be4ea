"""The agency API over real sockets: pytest-django's live server, whose Login with Amazon is the
local sandbox (so refreshes are real HTTP requests too), driven with `requests` as a program of
an agency would."""

from __future__ import annotations

import re
import secrets
import uuid
from datetime import datetime, timedelta

import pytest
import requests
from django.utils import timezone

from api.keys import api_key_create, api_key_revoke
from api.models import ApiKey, IdempotencyRecord
from sandbox.models import SandboxAuthorization
from sellers.hashing import token_hash
from sellers.models import Event, Grant, Invitation, Seller
from sellers.services.grants import grant_mark_revoked

from .conftest import INVENTORY, ORDERS, make_grant, make_seller, shows_token

pytestmark = pytest.mark.django_db(transaction=True)

ALL = ["connections:read", "tokens:read", "invitations:write"]


class Api:
    """A tiny client: one key, JSON in and out."""

    def __init__(self, base: str, key: str | None):
        self.base = f"{base}/api/v1"
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def get(self, path: str, **params):
        return requests.get(self.base + path, params=params, headers=self.headers, timeout=20)

    def post(self, path: str, body=None, *, headers=None, data=None):
        return requests.post(
            self.base + path, json=body, data=data, headers={**self.headers, **(headers or {})}, timeout=20
        )


def new_key(tenant, permissions=ALL, name=None, **kwargs) -> str:
    return api_key_create(tenant=tenant, name=name or f"key-{secrets.token_hex(3)}", permissions=permissions, actor="test", **kwargs)[1]


def connected(tenant, name="Shop One", spid="A1SHOPONE", **grant_kwargs) -> tuple[Seller, Grant]:
    """A seller whose refresh token the sandbox's LWA knows, as after a real consent."""
    seller = make_seller(tenant, name, spid=spid)
    grant = make_grant(seller, **grant_kwargs)
    now = timezone.now()
    SandboxAuthorization.objects.create(
        client_id=tenant.client_id, selling_partner_id=spid, region=seller.region, scopes=list(grant.granted_scopes),
        redirect_uri="", code_hash=secrets.token_hex(32), code_expires_at=now, code_used_at=now,
        refresh_token_hash=token_hash(grant.refresh_token),
    )
    return seller, grant


def error(response) -> dict:
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:200]
    return response.json()["error"]


# --- Keys and permissions ------------------------------------------------------------------------


def test_missing_unknown_malformed_revoked_and_expired_keys_are_401(live_amazon, tenant):
    good = new_key(tenant)
    revoked = new_key(tenant, name="old")
    api_key_revoke(api_key=ApiKey.objects.get(name="old"), actor="test")
    expired = new_key(tenant, name="short", expires_days=1)
    ApiKey.objects.filter(name="short").update(expires_at=timezone.now() - timedelta(seconds=1))
    prefix = good[: len("spc_12345678_")]
    cases = {
        "none": None,
        "unknown": prefix + secrets.token_urlsafe(32),
        "malformed": "not-a-key",
        "revoked": revoked,
        "expired": expired,
    }
    for what, key in cases.items():
        response = Api(live_amazon, key).get("/connections")
        assert response.status_code == 401, what
        assert response.headers["WWW-Authenticate"] == "Bearer", what
        assert error(response)["code"] == "unauthorized", what
    basic = requests.get(f"{live_amazon}/api/v1/connections", headers={"Authorization": f"Basic {good}"}, timeout=10)
    assert basic.status_code == 401
    assert Api(live_amazon, good).get("/connections").status_code == 200


def test_each_endpoint_needs_its_permission(live_amazon, tenant):
    seller, _ = connected(tenant)
    sid = seller.public_id
    endpoints = {
        "connections:read": [("get", "/connections"), ("get", f"/connections/{sid}")],
        "tokens:read": [("post", f"/connections/{sid}/access-token")],
        "invitations:write": [("post", "/invitations"), ("post", f"/connections/{sid}/reauthorization-link")],
    }
    # The proxy's, RDT and grantless permissions open none of these endpoints.
    keys = {p: new_key(tenant, [p]) for p in [*endpoints, "proxy", "rdt:create", "grantless"]}
    for permission, key in keys.items():
        api = Api(live_amazon, key)
        for needed, calls in endpoints.items():
            for method, path in calls:
                body = {"name": "Via API"} if path == "/invitations" else None
                response = api.get(path) if method == "get" else api.post(path, body)
                if permission == needed:
                    assert response.status_code in (200, 201), (permission, path, response.text)
                else:
                    assert response.status_code == 403, (permission, path)
                    assert error(response) == {"code": "permission_denied", "message": f"This key lacks the {needed} permission."}


def test_another_tenants_key_sees_nothing_of_this_tenant(live_amazon, tenant, other_tenant):
    seller, _ = connected(tenant)
    outsider = Api(live_amazon, new_key(other_tenant))
    unknown = uuid.uuid4()
    for path in (f"/connections/{seller.public_id}", f"/connections/{unknown}"):
        response = outsider.get(path)
        assert response.status_code == 404 and error(response)["code"] == "not_found"
    for path in (f"/connections/{seller.public_id}/access-token", f"/connections/{seller.public_id}/reauthorization-link"):
        response = outsider.post(path)
        assert response.status_code == 404
        assert error(response) == {"code": "not_found", "message": "No such connection."}
    assert outsider.get("/connections").json() == {"data": [], "next_cursor": None}
    assert outsider.get("/connections", selling_partner_id=seller.selling_partner_id).json()["data"] == []
    assert not Invitation.objects.filter(seller=seller).exists()  # the outsider's link request created nothing


def test_key_use_is_recorded_at_most_once_a_minute(live_amazon, tenant):
    key = new_key(tenant)
    api = Api(live_amazon, key)
    api.get("/connections")
    first = ApiKey.objects.get().last_used_at
    assert first is not None
    api.get("/connections")
    assert ApiKey.objects.get().last_used_at == first
    ApiKey.objects.update(last_used_at=first - timedelta(minutes=2))
    api.get("/connections")
    assert ApiKey.objects.get().last_used_at > first


def test_rate_limit_per_key_answers_429_with_retry_after(live_amazon, tenant, settings, rate_window_held):
    settings.SPCONNECT_API_RATE_LIMIT_REQUESTS = 3
    settings.SPCONNECT_API_RATE_LIMIT_WINDOW_SECONDS = 60
    busy, calm = Api(live_amazon, new_key(tenant, name="busy")), Api(live_amazon, new_key(tenant, name="calm"))
    assert [busy.get("/connections").status_code for _ in range(3)] == [200, 200, 200]
    limited = busy.get("/connections")
    assert limited.status_code == 429
    assert error(limited)["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert calm.get("/connections").status_code == 200  # counted per key


# --- Connections -----------------------------------------------------------------------------------


def test_connection_shows_grant_state_and_never_a_token(live_amazon, tenant):
    seller, grant = connected(tenant, scopes=[ORDERS])
    body = Api(live_amazon, new_key(tenant)).get(f"/connections/{seller.public_id}").json()
    assert body["id"] == str(seller.public_id)
    assert body["selling_partner_id"] == "A1SHOPONE" and body["region"] == "na" and body["name"] == "Shop One"
    assert body["status"] == "partial"
    assert body["granted_scopes"] == [ORDERS] and body["missing_scopes"] == [INVENTORY]
    assert body["scopes_confirmed"] is True
    for field in ("authorized_at", "renewal_due_at", "access_token_expires_at", "last_refreshed_at", "created_at"):
        assert datetime.fromisoformat(body[field]).tzinfo is not None, field  # ISO 8601 with its offset
    renewal = grant.authorized_at + timedelta(days=365)
    assert abs(datetime.fromisoformat(body["renewal_due_at"]) - renewal) < timedelta(milliseconds=1)
    assert not shows_token(str(body)) and grant.refresh_token not in str(body)
    assert set(body) == {
        "id", "name", "selling_partner_id", "region", "status", "granted_scopes", "missing_scopes", "scopes_confirmed",
        "authorized_at", "renewal_due_at", "access_token_expires_at", "last_refreshed_at", "created_at",
    }
    pending = make_seller(tenant, "Pending Shop")
    body = Api(live_amazon, new_key(tenant)).get(f"/connections/{pending.public_id}").json()
    assert body["status"] == "invited" and body["selling_partner_id"] is None and body["authorized_at"] is None
    assert body["missing_scopes"] == [ORDERS, INVENTORY]


def test_list_pages_with_a_cursor_in_a_stable_order_and_filters(live_amazon, tenant, other_tenant):
    sellers = [make_seller(tenant, f"Shop {i}", spid=f"A1SHOP{i}", region="eu" if i % 2 else "na") for i in range(5)]
    make_grant(sellers[0])
    make_seller(other_tenant, "Not Theirs")
    api = Api(live_amazon, new_key(tenant))
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/connections", **params).json()
        pages += 1
        seen += [c["id"] for c in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Created meanwhile: it sorts after everything seen, so paging goes on without a gap or repeat.
        if pages == 1:
            sellers.append(make_seller(tenant, "Shop late", spid="A1LATE"))
    assert pages == 3
    assert seen == [str(s.public_id) for s in sellers]
    assert [c["name"] for c in api.get("/connections", region="eu").json()["data"]] == ["Shop 1", "Shop 3"]
    assert [c["name"] for c in api.get("/connections", status="active").json()["data"]] == ["Shop 0"]
    assert [c["name"] for c in api.get("/connections", selling_partner_id="A1SHOP4").json()["data"]] == ["Shop 4"]
    assert [c["name"] for c in api.get("/connections", q="LATE").json()["data"]] == ["Shop late"]
    assert len(api.get("/connections", limit=200).json()["data"]) == 6


def test_bad_input_is_400_or_404_never_500(live_amazon, tenant):
    seller, _ = connected(tenant)
    api = Api(live_amazon, new_key(tenant))
    for params, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "9" * 40}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"region": "mars"}, "region"),
        ({"cursor": "made-up"}, "cursor"),
        ({"q": "x" * 201}, "q"),
        ({"q": "nul\x00byte"}, "q"),  # PostgreSQL refuses NUL in text: caught before the database
        ({"selling_partner_id": "A1\x00"}, "selling_partner_id"),
    ]:
        response = api.get("/connections", **params)
        assert response.status_code == 400, params
        assert error(response)["code"] == "invalid_request" and error(response)["field"] == field, params
    for path in ("/connections/not-a-uuid", "/connections/" + "9" * 60, f"/connections/{uuid.uuid4()}"):
        assert api.get(path).status_code == 404
        assert api.post(path + "/access-token").status_code == 404
    token_path = f"/connections/{seller.public_id}/access-token"
    for body, field in [
        ({"min_ttl_seconds": "300"}, "min_ttl_seconds"),
        ({"min_ttl_seconds": 3301}, "min_ttl_seconds"),
        ({"min_ttl_seconds": -1}, "min_ttl_seconds"),
        ({"min_ttl_seconds": 10**30}, "min_ttl_seconds"),
        ({"force_refresh": "yes"}, "force_refresh"),
        ({"min_tll_seconds": 60}, "min_tll_seconds"),
        ([1, 2], "body"),
    ]:
        response = api.post(token_path, body)
        assert response.status_code == 400, body
        assert error(response)["field"] == field, body
    not_json = api.post(token_path, data=b"{not json", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400 and error(not_json)["field"] == "body"
    for body, field in [
        ({}, "name"),
        ({"name": "  "}, "name"),
        ({"name": 5}, "name"),
        ({"name": "Shop", "region": "mars"}, "region"),
        ({"name": "Shop", "days": 91}, "days"),
        ({"name": "Shop", "days": "7"}, "days"),
        ({"name": "Shop", "email": "not-an-address"}, "email"),
        ({"name": "x" * 201}, "name"),
        ({"name": "Shop\x00"}, "name"),
        ({"name": "Shop", "email": "shop\x00@example.com"}, "email"),
    ]:
        response = api.post("/invitations", body)
        assert response.status_code == 400, body
        assert error(response)["field"] == field, body
    assert Seller.objects.count() == 1  # nothing was created by any of these
    unknown_path = api.get("/nothing-here")
    assert unknown_path.status_code == 404 and error(unknown_path)["code"] == "not_found"
    wrong_method = requests.delete(f"{live_amazon}/api/v1/connections", headers=api.headers, timeout=10)
    assert wrong_method.status_code == 405 and error(wrong_method)["code"] == "method_not_allowed"


# --- Access tokens -------------------------------------------------------------------------------


def test_a_valid_stored_token_is_returned_without_calling_amazon(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=3000)
    response = Api(live_amazon, new_key(tenant, ["tokens:read"])).post(f"/connections/{seller.public_id}/access-token")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    assert body["access_token"] == grant.access_token
    assert body["token_type"] == "bearer"
    assert 2990 <= body["expires_in"] <= 3000
    assert body["region"] == "na" and body["selling_partner_id"] == "A1SHOPONE"
    assert body["endpoint"] == f"{live_amazon}/sandbox/spapi/na"
    assert "refresh_token" not in body and grant.refresh_token not in response.text
    assert amazon_calls.token_calls == []


def test_a_token_shorter_than_min_ttl_is_refreshed_at_lwa_over_http(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=1000)
    api = Api(live_amazon, new_key(tenant, ["tokens:read"]))
    same = api.post(f"/connections/{seller.public_id}/access-token", {"min_ttl_seconds": 900}).json()
    assert same["access_token"] == grant.access_token and amazon_calls.token_calls == []

    fresh = api.post(f"/connections/{seller.public_id}/access-token", {"min_ttl_seconds": 1200}).json()
    assert fresh["access_token"] != grant.access_token and fresh["access_token"].startswith("Atza|sandbox")
    assert fresh["expires_in"] > 1200
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    assert amazon_calls.token_calls[0].url.startswith(live_amazon)
    grant.refresh_from_db()
    assert grant.access_token == fresh["access_token"]

    forced = api.post(f"/connections/{seller.public_id}/access-token", {"force_refresh": True}).json()
    assert forced["access_token"] not in (fresh["access_token"], grant.refresh_token)
    assert len(amazon_calls.token_calls) == 2
    again = api.post(f"/connections/{seller.public_id}/access-token", {"min_ttl_seconds": 0}).json()
    assert again["access_token"] == forced["access_token"] and len(amazon_calls.token_calls) == 2


def test_pending_revoked_and_expired_connections_answer_409_with_their_link(live_amazon, tenant, amazon_calls):
    pending = make_seller(tenant, "Never Connected")
    revoked, _ = connected(tenant, "Revoked Shop", spid="A1REVOKED")
    grant_mark_revoked(seller=revoked, reason="test", actor="test")
    expired, _ = connected(tenant, "Old Shop", spid="A1OLD", authorized_days_ago=366)
    api = Api(live_amazon, new_key(tenant, ["tokens:read"]))
    for seller in (pending, revoked, expired):
        response = api.post(f"/connections/{seller.public_id}/access-token")
        assert response.status_code == 409, seller.name
        body = error(response)
        assert body["code"] == "reauthorization_required"
        link = Invitation.objects.filter(seller=seller).get()
        assert body["reauthorization_url"] == link.url
        assert requests.get(body["reauthorization_url"], timeout=10).status_code == 200  # the hosted page opens
        # A second call hands out the same open link, it does not pile up new ones.
        assert error(api.post(f"/connections/{seller.public_id}/access-token"))["reauthorization_url"] == link.url
    assert amazon_calls.token_calls == []


def test_lwa_revoking_during_the_call_answers_409(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant, expires_in=10)
    amazon_calls.lwa_error("invalid_grant", description="revoked by the seller")
    response = Api(live_amazon, new_key(tenant, ["tokens:read"])).post(f"/connections/{seller.public_id}/access-token")
    assert response.status_code == 409
    assert error(response)["code"] == "reauthorization_required" and "/connect/" in error(response)["reauthorization_url"]
    assert Grant.objects.get().status == Grant.Status.REVOKED


def test_lwa_failing_transiently_answers_503_with_retry_after(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=60)
    amazon_calls.lwa_error("server_error", status=503, description="LWA is down")
    api = Api(live_amazon, new_key(tenant, ["tokens:read"]))
    response = api.post(f"/connections/{seller.public_id}/access-token")
    assert response.status_code == 503
    assert error(response)["code"] == "token_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert grant.access_token not in response.text
    # Backing off: a retry before Retry-After does not call LWA again.
    assert api.post(f"/connections/{seller.public_id}/access-token").status_code == 503
    assert len(amazon_calls.token_calls) == 1
    # The stored token still works for a minute: a caller who accepts that gets it.
    ok = api.post(f"/connections/{seller.public_id}/access-token", {"min_ttl_seconds": 0})
    assert ok.status_code == 200 and ok.json()["access_token"] == grant.access_token


def test_rejected_app_credentials_answer_502(live_amazon, tenant, amazon_calls):
    seller, _ = connected(tenant, expires_in=10)
    amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed")
    response = Api(live_amazon, new_key(tenant, ["tokens:read"])).post(f"/connections/{seller.public_id}/access-token")
    assert response.status_code == 502
    assert error(response)["code"] == "app_credentials_rejected"
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is not None
    assert Grant.objects.get().status == Grant.Status.ACTIVE  # the seller is not blamed


# --- Invitations ---------------------------------------------------------------------------------


def test_invitation_is_created_and_its_link_opens(live_amazon, tenant):
    api = Api(live_amazon, new_key(tenant, ["invitations:write", "connections:read"], name="onboarding"))
    response = api.post("/invitations", {"name": "New Shop", "email": "shop@example.com", "region": "eu", "days": 3})
    assert response.status_code == 201
    body = response.json()
    assert body["connection"]["name"] == "New Shop" and body["connection"]["region"] == "eu"
    assert body["connection"]["status"] == "invited"
    seller = Seller.objects.get(public_id=body["connection"]["id"])
    assert seller.email == "shop@example.com" and seller.tenant == tenant
    invitation = Invitation.objects.get(seller=seller)
    assert body["url"] == invitation.url
    assert timedelta(days=2, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=3)
    assert requests.get(body["url"], timeout=10).status_code == 200
    assert Event.objects.get(seller=seller, kind=Event.Kind.INVITED).actor == "api:onboarding"
    assert api.get(f"/connections/{seller.public_id}").json()["name"] == "New Shop"

    link = api.post(f"/connections/{seller.public_id}/reauthorization-link")
    assert link.status_code == 200
    assert link.json()["url"] == invitation.url  # the open link is reused


def test_idempotency_key_replays_the_first_answer_and_refuses_another_body(live_amazon, tenant, other_tenant):
    key = new_key(tenant, ["invitations:write"])
    api = Api(live_amazon, key)
    first = api.post("/invitations", {"name": "Once"}, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = api.post("/invitations", {"name": "Once"}, headers={"Idempotency-Key": "order-42"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Seller.objects.count() == 1

    conflict = api.post("/invitations", {"name": "Twice"}, headers={"Idempotency-Key": "order-42"})
    assert conflict.status_code == 409 and error(conflict)["code"] == "idempotency_conflict"
    # Another key's (another tenant's) identical Idempotency-Key is its own.
    other = Api(live_amazon, new_key(other_tenant, ["invitations:write"])).post(
        "/invitations", {"name": "Once"}, headers={"Idempotency-Key": "order-42"}
    )
    assert other.status_code == 201 and other.json()["connection"]["id"] != first.json()["connection"]["id"]
    # Without the header every call creates.
    api.post("/invitations", {"name": "Once"})
    assert Seller.objects.filter(tenant=tenant).count() == 2
    # After 24 hours the key is forgotten.
    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(hours=24, seconds=1))
    late = api.post("/invitations", {"name": "Once"}, headers={"Idempotency-Key": "order-42"})
    assert late.status_code == 201 and "Idempotent-Replayed" not in late.headers
    assert Seller.objects.filter(tenant=tenant).count() == 3
    bad = api.post("/invitations", {"name": "Once"}, headers={"Idempotency-Key": "x" * 256})
    assert bad.status_code == 400 and error(bad)["field"] == "Idempotency-Key"


# --- Description and docs ------------------------------------------------------------------------


def test_openapi_and_docs_need_no_key_and_work_offline(live_amazon):
    spec = requests.get(f"{live_amazon}/api/v1/openapi.json", timeout=10)
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    assert set(paths) == {
        "/api/v1/connections",
        "/api/v1/connections/{id}",
        "/api/v1/connections/{id}/access-token",
        "/api/v1/connections/{id}/reauthorization-link",
        "/api/v1/connections/{id}/restricted-data-token",
        "/api/v1/connections/{id}/proxy/{path}",
        "/api/v1/grantless-token",
        "/api/v1/invitations",
    }
    assert set(paths["/api/v1/connections/{id}/proxy/{path}"]) == {"get", "post", "put", "patch", "delete"}
    assert spec.json()["components"]["securitySchemes"] == {"KeyAuth": {"type": "http", "scheme": "bearer"}}
    docs = requests.get(f"{live_amazon}/api/v1/docs", timeout=10)
    assert docs.status_code == 200
    policy = docs.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "http" not in policy
    # Every asset the page loads is ours, served from static files: nothing from a CDN.
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert assets and all(a.startswith("/static/") for a in assets), assets
    for asset in assets:
        assert requests.get(live_amazon + asset, timeout=10).status_code == 200, asset
