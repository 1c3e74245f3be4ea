"""The local Amazon stand-in keeps Amazon's rules: registration checks, 5-minute single-use
codes, invalid_grant after revocation, scope-enforced SP-API."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from sandbox.models import SandboxAuthorization
from sellers import amazon
from sellers.services.invitations import invitation_create

from .conftest import make_tenant
from .flow import consent_form, sandbox_decide

pytestmark = pytest.mark.django_db


def test_draft_app_without_version_beta_gets_md1000(client, db):
    tenant = make_tenant("drafty", is_draft=True)
    response = client.get(f"/sandbox/na/apps/authorize/consent?application_id={tenant.application_id}&state=x")
    assert response.status_code == 400 and "MD1000" in response.content.decode()


def test_unregistered_redirect_uri_gets_md5101(client, tenant):
    response = client.get(
        f"/sandbox/na/apps/authorize/consent?application_id={tenant.application_id}&state=x&redirect_uri=https://evil.example/cb"
    )
    assert response.status_code == 400 and "MD5101" in response.content.decode()


def test_pages_say_they_are_a_local_stand_in(client, tenant):
    assert "not Amazon" in client.get("/sandbox/").content.decode()
    invitation = invitation_create(tenant=tenant, name="Shop")
    start = client.post(invitation.url.replace("http://testserver", "") + "start/")
    assert "It is not Amazon" in client.get(start["Location"].replace("http://testserver", "")).content.decode()


def _code_for(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    callback = sandbox_decide(client, consent_path, form, spid="A1SANDBOX")
    from urllib.parse import parse_qs, urlparse

    return parse_qs(urlparse(callback).query)["spapi_oauth_code"][0]


def exchange(tenant, code, secret=None):
    return amazon.lwa_exchange_code(client_id=tenant.client_id, client_secret=secret or tenant.client_secret,
                                    code=code, redirect_uri=tenant.effective_redirect_uri)


def test_code_expires_after_five_minutes(client, tenant):
    code = _code_for(client, tenant)
    SandboxAuthorization.objects.update(code_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(amazon.LwaInvalidGrant):
        exchange(tenant, code)


def test_wrong_client_secret_is_invalid_client(client, tenant):
    code = _code_for(client, tenant)
    with pytest.raises(amazon.LwaInvalidClient):
        exchange(tenant, code, secret="wrong")


def test_tokens_scopes_and_revocation(client, tenant):
    code = _code_for(client, tenant)
    token = exchange(tenant, code)
    assert token.scopes == ["sellingpartnerapi::orders", "sellingpartnerapi::inventory", "sellingpartnerapi::reports"]
    ok = amazon.spapi_send(region="na", method="GET", path="/orders/v0/orders", access_token=token.access_token)
    assert ok.status_code == 200 and ok.body["payload"]["Orders"]
    denied = amazon.spapi_send(region="na", method="GET", path="/finances/v0/financialEventGroups", access_token=token.access_token)
    assert denied.status_code == 403 and denied.error_codes == ["Unauthorized"]
    other_region = amazon.spapi_send(region="eu", method="GET", path="/orders/v0/orders", access_token=token.access_token)
    assert other_region.status_code == 403

    refreshed = amazon.lwa_refresh(client_id=tenant.client_id, client_secret=tenant.client_secret, refresh_token=token.refresh_token)
    assert refreshed.access_token != token.access_token

    call_command("sandbox", "revoke", "A1SANDBOX", stdout=open("/dev/null", "w"))
    with pytest.raises(amazon.LwaInvalidGrant) as info:
        amazon.lwa_refresh(client_id=tenant.client_id, client_secret=tenant.client_secret, refresh_token=token.refresh_token)
    assert "revoked" in info.value.description
    gone = amazon.spapi_send(region="na", method="GET", path="/sellers/v1/marketplaceParticipations", access_token=refreshed.access_token)
    assert gone.status_code == 403


def test_missing_access_token_is_403(client, db):
    response = client.get("/sandbox/spapi/na/sellers/v1/marketplaceParticipations")
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "Unauthorized"
