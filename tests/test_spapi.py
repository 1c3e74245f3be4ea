"""Scope-gated SP-API calls and the `spapi` command, in-process and over real HTTP."""

from __future__ import annotations

import json
import os

import pytest
from django.core import mail
from django.core.management import CommandError, call_command

from sellers.models import Event, Grant, Seller
from sellers.services.spapi import (
    ReauthorizationRequired,
    ScopeNotGranted,
    SpapiError,
    spapi_request,
)
from sellers.services.tokens import access_token_cache_clear

from .conftest import INVENTORY, ORDERS, REPORTS, make_seller, read_output, shows_token
from .test_tokens import connected, staff

pytestmark = pytest.mark.django_db

MARKETPLACES = "/sellers/v1/marketplaceParticipations"


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()
    yield
    access_token_cache_clear()


def devnull():
    return open(os.devnull, "w")


def test_call_outside_granted_scopes_fails_before_any_network_call(tenant, amazon_calls):
    seller, _ = connected(tenant, scopes=(ORDERS,))
    with pytest.raises(ScopeNotGranted) as caught:
        spapi_request(seller=seller, method="GET", path="/reports/2021-06-30/reports")
    assert caught.value.scope == REPORTS and REPORTS in str(caught.value) and "No request was sent" in str(caught.value)
    assert amazon_calls.calls == []


def test_call_sends_the_token_to_the_regional_host_and_returns_the_answer(tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=-1)
    response = spapi_request(seller=seller, method="GET", path="/orders/v0/orders", params={"CreatedAfter": "2024-01-01"})
    assert response.status_code == 200 and len(response.body["payload"]["Orders"]) == 3
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    [call] = amazon_calls.spapi_calls
    assert call.url.startswith("http://testserver/sandbox/spapi/na/orders/v0/orders")
    assert call.headers["x-amz-access-token"] == Grant.objects.get(pk=grant.pk).access_token
    # A second call reuses the token: no LWA call.
    spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert len(amazon_calls.token_calls) == 1


def test_second_call_costs_one_small_query(tenant, amazon_calls, django_assert_num_queries):
    seller, _ = connected(tenant, expires_in=-1)
    spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    amazon_calls.script(url_contains="/spapi/", body={"payload": []}, times=None)  # keep the sandbox's own queries out
    with django_assert_num_queries(1):
        spapi_request(seller=seller, method="GET", path=MARKETPLACES)


def test_sandbox_revoke_then_call_marks_revoked_and_raises_with_link(
    tenant, amazon_calls, make_user, django_capture_on_commit_callbacks
):
    staff(make_user, tenant, "owner")
    seller, _ = connected(tenant, expires_in=-1)
    spapi_request(seller=seller, method="GET", path=MARKETPLACES)  # a token the sandbox issued
    call_command("sandbox", "revoke", seller.selling_partner_id, stdout=devnull())
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ReauthorizationRequired) as caught:
        spapi_request(seller=seller, method="GET", path="/orders/v0/orders")
    assert caught.value.link.url.startswith("http://testserver/connect/")
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).count() == 1
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_CREATED).count() == 1
    assert len(mail.outbox) == 1 and "revoked" in mail.outbox[0].subject
    # 403 → one refresh (invalid_grant) → no retry of the call.
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token", "refresh_token"]
    assert len(amazon_calls.spapi_calls) == 2
    with pytest.raises(ReauthorizationRequired):
        spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert len(amazon_calls.spapi_calls) == 2


def test_scope_refused_by_amazon_with_a_fresh_token_is_recorded(tenant, amazon_calls, django_capture_on_commit_callbacks, make_user):
    staff(make_user, tenant, "manager", role="manager")
    # The grant lists inventory (e.g. assumed from the app's registration); Amazon disagrees.
    seller, grant = connected(tenant, scopes=(ORDERS, INVENTORY), sandbox_scopes=(ORDERS,), expires_in=-1)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ScopeNotGranted) as caught:
        spapi_request(seller=seller, method="GET", path="/fba/inventory/v1/summaries")
    assert caught.value.scope == INVENTORY and caught.value.refused_by_amazon
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.refused_scopes == [INVENTORY] and INVENTORY not in stored.effective_scopes
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.PARTIAL  # inventory is required
    event = Event.objects.get(seller=seller, kind=Event.Kind.SCOPE_REFUSED)
    assert event.data["scope"] == INVENTORY and event.data["to"] == "partial"
    assert len(mail.outbox) == 1 and "refused" in mail.outbox[0].subject
    spapi_calls = len(amazon_calls.spapi_calls)
    with pytest.raises(ScopeNotGranted):
        spapi_request(seller=seller, method="GET", path="/fba/inventory/v1/summaries")
    assert len(amazon_calls.spapi_calls) == spapi_calls  # refused before the network now
    assert spapi_request(seller=seller, method="GET", path="/orders/v0/orders").status_code == 200


def test_expired_token_at_amazon_is_refreshed_once_and_the_call_retried(tenant, amazon_calls):
    seller, grant = connected(tenant)  # locally "valid", unknown to the sandbox: Amazon says 403
    response = spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert response.status_code == 200
    assert len(amazon_calls.token_calls) == 1 and len(amazon_calls.spapi_calls) == 2
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.ACTIVE


def test_throttled_call_honours_retry_after_then_succeeds(tenant, amazon_calls):
    seller, _ = connected(tenant, expires_in=-1)
    amazon_calls.script(url_contains="/spapi/", status=429, body={"errors": [{"code": "QuotaExceeded"}]},
                        headers={"Retry-After": "0"}, times=2)
    response = spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert response.status_code == 200 and len(amazon_calls.spapi_calls) == 3


def test_throttling_is_retried_a_bounded_number_of_times(tenant, amazon_calls):
    seller, _ = connected(tenant, expires_in=-1)
    amazon_calls.script(url_contains="/spapi/", status=429, body={"errors": [{"code": "QuotaExceeded"}]},
                        headers={"Retry-After": "0"}, times=None)
    response = spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert response.status_code == 429 and len(amazon_calls.spapi_calls) == 4


def test_pending_seller_gets_an_onboarding_link(tenant, amazon_calls):
    seller = make_seller(tenant, "Not Yet")
    with pytest.raises(ReauthorizationRequired) as caught:
        spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert caught.value.link.purpose == "onboarding" and amazon_calls.calls == []


@pytest.mark.parametrize("method,path", [("TRACE", MARKETPLACES), ("GET", "https://evil.example/x"), ("GET", "//evil.example/x"),
                                         ("GET", "/orders/../reports/x"), ("GET", "/orders/v0/orders?x=1"), ("GET", ""),
                                         ("GET", "/orders/v0/%2e%2e/%2E%2E/finances/v0/financialEvents"),
                                         ("GET", "/orders/v0/%2F%2Fevil.example/x"),
                                         ("POST", "/tokens/2021-03-01/restrictedDataToken")])
def test_bad_method_or_path_is_refused_without_network(tenant, amazon_calls, method, path):
    seller, _ = connected(tenant)
    with pytest.raises(SpapiError):
        spapi_request(seller=seller, method=method, path=path)
    assert amazon_calls.calls == []


# --- The command ------------------------------------------------------------------------------


def test_spapi_command_prints_json(tenant, amazon_calls):
    seller, _ = connected(tenant, spid="A1CMDSELLER", expires_in=-1)
    out = read_output(lambda stdout: call_command("spapi", "A1CMDSELLER", "GET", "/orders/v0/orders",
                                                  "--param", "CreatedAfter=2024-01-01", stdout=stdout))
    body = json.loads(out)
    assert body["payload"]["CreatedAfter"] == "2024-01-01"
    assert not shows_token(out)


def test_spapi_command_output_is_redacted(tenant, amazon_calls, monkeypatch):
    """An answer holding a token (here a restricted data token echoed back) never reaches the terminal."""
    import dataclasses

    from sellers import amazon

    connected(tenant, spid="A1CMDREDACT", expires_in=-1)
    real = amazon.spapi_send

    def echoing(**kwargs):
        response = real(**kwargs)
        return dataclasses.replace(response, body={"payload": response.body, "restrictedDataToken": "Atz.sprdt|" + "x" * 40})

    monkeypatch.setattr(amazon, "spapi_send", echoing)
    out = read_output(lambda stdout: call_command("spapi", "A1CMDREDACT", "GET", "/orders/v0/orders", stdout=stdout))
    assert "Atz.sprdt|" not in out and "restrictedDataToken" in out


def test_spapi_command_names_the_missing_scope_and_fails(tenant, amazon_calls):
    connected(tenant, spid="A1NOREPORTS", scopes=(ORDERS,))
    with pytest.raises(CommandError) as caught:
        call_command("spapi", "A1NOREPORTS", "GET", "/reports/2021-06-30/reports", stdout=devnull())
    assert "Missing scope sellingpartnerapi::reports" in str(caught.value)
    assert amazon_calls.calls == []


def test_spapi_command_gives_the_reauthorization_link_for_a_revoked_seller(tenant, amazon_calls):
    seller, _ = connected(tenant, spid="A1GONE", expires_in=-1)
    call_command("sandbox", "revoke", "A1GONE", stdout=devnull())
    with pytest.raises(CommandError) as caught:
        call_command("spapi", "A1GONE", "GET", MARKETPLACES, "--tenant", "acme", stdout=devnull())
    message = str(caught.value)
    assert "Re-authorization needed" in message and "http://testserver/connect/" in message
    assert not shows_token(message)


def test_spapi_command_asks_to_disambiguate_and_rejects_unknown_sellers(tenant, other_tenant, amazon_calls):
    connected(tenant, spid="A1TWICE")
    connected(other_tenant, spid="A1TWICE")
    with pytest.raises(CommandError, match="pass --tenant"):
        call_command("spapi", "A1TWICE", "GET", MARKETPLACES, stdout=devnull())
    with pytest.raises(CommandError, match="No seller"):
        call_command("spapi", "A1NOBODY", "GET", MARKETPLACES, stdout=devnull())
    with pytest.raises(CommandError, match="key=value"):
        call_command("spapi", "A1TWICE", "GET", MARKETPLACES, "--tenant", "acme", "--param", "novalue", stdout=devnull())


# --- Over real HTTP -----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_refresh_call_and_revocation_over_real_http(live_amazon, tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=-1)
    response = spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert response.status_code == 200 and response.body["payload"][0]["marketplace"]["countryCode"] == "US"
    assert amazon_calls.token_calls[0].url.startswith(live_amazon)
    call_command("sandbox", "revoke", seller.selling_partner_id, stdout=devnull())
    with pytest.raises(ReauthorizationRequired):
        spapi_request(seller=seller, method="GET", path=MARKETPLACES)
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).count() == 1
