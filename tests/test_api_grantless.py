"""Grantless tokens over real sockets: LWA's client_credentials grant at the sandbox, one call
per tenant and scope while the token lasts, for both scopes."""

from __future__ import annotations

import threading

import pytest
import requests

from sellers.services.tokens.grantless import grantless_cache_clear

from .test_api_proxy import new_key

pytestmark = pytest.mark.django_db(transaction=True)

NOTIFICATIONS = "sellingpartnerapi::notifications"
ROTATION = "sellingpartnerapi::client_credential:rotation"


@pytest.fixture(autouse=True)
def _fresh_cache():
    grantless_cache_clear()
    yield
    grantless_cache_clear()


def grantless(base, key, scope):
    return requests.post(f"{base}/api/v1/grantless-token", json={"scope": scope},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)


def client_credentials_calls(amazon_calls):
    return [c for c in amazon_calls.token_calls if c.grant_type == "client_credentials"]


def test_both_scopes_get_a_token_that_opens_their_grantless_operations(live_amazon, tenant, amazon_calls):
    key = new_key(tenant, permissions=["grantless"])
    sandbox = f"{live_amazon}/sandbox/spapi/na"

    notifications = grantless(live_amazon, key, NOTIFICATIONS)
    rotation = grantless(live_amazon, key, ROTATION)

    assert notifications.status_code == 200, notifications.text
    assert rotation.status_code == 200, rotation.text
    assert notifications.headers["Cache-Control"] == "no-store"
    assert 3000 < notifications.json()["expires_in"] <= 3600
    n_token, r_token = notifications.json()["access_token"], rotation.json()["access_token"]
    calls = client_credentials_calls(amazon_calls)
    assert [(c.data["scope"], c.data["client_id"]) for c in calls] == [(NOTIFICATIONS, tenant.client_id), (ROTATION, tenant.client_id)]

    destinations = requests.get(sandbox + "/notifications/v1/destinations", headers={"x-amz-access-token": n_token}, timeout=30)
    assert destinations.status_code == 200
    rotated = requests.post(sandbox + "/applications/2023-11-30/clientSecret", headers={"x-amz-access-token": r_token}, timeout=30)
    assert rotated.status_code == 204
    wrong = requests.post(sandbox + "/applications/2023-11-30/clientSecret", headers={"x-amz-access-token": n_token}, timeout=30)
    assert wrong.status_code == 403


def test_a_token_is_reused_while_it_lasts_and_fetched_once_under_concurrency(live_amazon, tenant, other_tenant, amazon_calls):
    key = new_key(tenant, permissions=["grantless"])
    answers: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(grantless(live_amazon, key, NOTIFICATIONS))) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status_code for a in answers] == [200] * 6
    assert len({a.json()["access_token"] for a in answers}) == 1
    assert len(client_credentials_calls(amazon_calls)) == 1
    assert grantless(live_amazon, key, NOTIFICATIONS).json()["access_token"] == answers[0].json()["access_token"]
    assert len(client_credentials_calls(amazon_calls)) == 1

    # Another tenant's app gets its own token.
    theirs = grantless(live_amazon, new_key(other_tenant, permissions=["grantless"]), NOTIFICATIONS)
    assert theirs.json()["access_token"] != answers[0].json()["access_token"]
    assert len(client_credentials_calls(amazon_calls)) == 2


def test_refusals(live_amazon, tenant, amazon_calls):
    assert grantless(live_amazon, new_key(tenant, permissions=["tokens:read"]), NOTIFICATIONS).status_code == 403
    bad_scope = grantless(live_amazon, new_key(tenant, permissions=["grantless"]), "sellingpartnerapi::migration")
    assert bad_scope.status_code == 400
    assert bad_scope.json()["error"]["field"] == "scope"
    assert amazon_calls.calls == []

    # LWA refusing the app's client secret (the sandbox shares the tenant table, so it is scripted).
    amazon_calls.lwa_error("invalid_client", status=401, grant_type="client_credentials")
    response = grantless(live_amazon, new_key(tenant, permissions=["grantless"]), ROTATION)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "app_credentials_rejected"
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is not None
    assert str(tenant.client_secret) not in response.text
