"""The sandbox's two modes: the scope model (`seed`) and Amazon's roles (`amazon`).
Set per test, kept in the sandbox's own table, switched by command or by the index page."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from sandbox.models import SandboxAuthorization, SandboxState
from sandbox.modes import mode_current, mode_set
from sellers import amazon
from sellers.roles import AppRole
from sellers.services.invitations import invitation_create

from .conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_tenant, parse_form, read_output
from .flow import consent_form, sandbox_decide

pytestmark = pytest.mark.django_db

ROLES = [AppRole.AMAZON_FULFILLMENT.value, AppRole.INVENTORY_AND_ORDER_TRACKING.value]


def test_a_test_starts_in_seed_mode_whatever_ran_before():
    assert mode_current() == "seed"
    assert not SandboxState.objects.exists()


def test_mode_command_shows_sets_and_refuses_unknown_modes():
    assert "seed mode" in read_output(lambda stdout: call_command("sandbox", "mode", stdout=stdout))
    assert "now in amazon mode" in read_output(lambda stdout: call_command("sandbox", "mode", "amazon", stdout=stdout))
    assert SandboxState.objects.get().mode == "amazon" and mode_current() == "amazon"
    assert "amazon mode" in read_output(lambda stdout: call_command("sandbox", "mode", stdout=stdout))
    with pytest.raises(CommandError):
        call_command("sandbox", "mode", "mws")
    assert mode_current() == "amazon"
    call_command("sandbox", "mode", "seed", stdout=open("/dev/null", "w"))
    assert SandboxState.objects.count() == 1 and mode_current() == "seed"


def test_mode_command_refuses_when_the_sandbox_is_off(settings):
    settings.SPAPI_SANDBOX = False
    with pytest.raises(CommandError, match="sandbox is off"):
        call_command("sandbox", "mode", "amazon")
    assert mode_current() == "seed"


def test_index_shows_the_mode_and_switches_it_with_csrf(db):
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/sandbox/")
    assert 'id="sandbox-mode">seed<' in page.content.decode()
    # Without the CSRF token the switch is refused and nothing changes.
    assert browser.post("/sandbox/mode", {"mode": "amazon"}).status_code == 403
    assert mode_current() == "seed"
    form = parse_form(page.content.decode())
    csrf = [v for n, v, *_ in form["fields"] if n == "csrfmiddlewaretoken"][0]
    switched = browser.post("/sandbox/mode", {"mode": "amazon", "csrfmiddlewaretoken": csrf})
    assert switched.status_code == 303 and switched["Location"] == "/sandbox/"
    assert mode_current() == "amazon"
    assert 'id="sandbox-mode">amazon<' in browser.get("/sandbox/").content.decode()
    bad = browser.post("/sandbox/mode", {"mode": "everything", "csrfmiddlewaretoken": csrf})
    assert bad.status_code == 400 and mode_current() == "amazon"
    assert browser.get("/sandbox/mode").status_code == 405


def test_mode_set_refuses_unknown_values():
    with pytest.raises(ValueError):
        mode_set("")
    assert not SandboxState.objects.exists()


def _exchange(client, tenant, **decide):
    invitation = invitation_create(tenant=tenant, name="Shop")
    consent_path, form = consent_form(client, invitation.url)
    callback = sandbox_decide(client, consent_path, form, spid="A1MODES", **decide)
    code = parse_qs(urlparse(callback).query)["spapi_oauth_code"][0]
    return amazon.lwa_exchange_code(client_id=tenant.client_id, client_secret=tenant.client_secret,
                                    code=code, redirect_uri=tenant.effective_redirect_uri)


def test_amazon_mode_consent_lists_roles_without_checkboxes_and_ignores_scope(client):
    tenant = make_tenant("roles", app_roles=ROLES)
    mode_set("amazon")
    # Even a scope the seed would refuse as invalid_scope is ignored, as Amazon ignores `scope`.
    page = client.get(
        f"/sandbox/na/apps/authorize/consent?application_id={tenant.application_id}&state=s1&scope=sellingpartnerapi::everything"
    )
    html = page.content.decode()
    assert page.status_code == 200
    assert "Amazon Fulfillment" in html and "Inventory and Order Tracking" in html and "Finance and Accounting" not in html
    assert [kind for _, _, kind, _ in parse_form(html)["fields"]].count("checkbox") == 0


def test_seed_mode_consent_still_offers_scopes_and_refuses_unknown_ones(client):
    tenant = make_tenant("seedy", app_roles=ROLES)
    page = client.get(f"/sandbox/na/apps/authorize/consent?application_id={tenant.application_id}&state=s1"
                      "&scope=sellingpartnerapi::orders")
    assert [kind for _, _, kind, _ in parse_form(page.content.decode())["fields"]].count("checkbox") == 1
    bad = client.get(f"/sandbox/na/apps/authorize/consent?application_id={tenant.application_id}&state=s1"
                     "&scope=sellingpartnerapi::everything")
    assert bad.status_code == 302 and "error=invalid_scope" in bad["Location"]


def test_amazon_mode_tokens_name_no_scope_and_spapi_follows_the_roles(client):
    tenant = make_tenant("roles", app_roles=ROLES)
    mode_set("amazon")
    token = _exchange(client, tenant)
    assert token.scopes is None  # no `scope` in the token response
    [authorization] = SandboxAuthorization.objects.all()
    assert authorization.roles == ROLES and authorization.scopes == []

    def call(path):
        return amazon.spapi_send(region="na", method="GET", path=path, access_token=token.access_token)

    assert call("/orders/v0/orders").status_code == 200  # any of the eleven roles
    assert call("/fba/inventory/v1/summaries").status_code == 200  # Amazon Fulfillment
    denied = call("/finances/v0/financialEventGroups")  # Finance and Accounting only
    assert denied.status_code == 403 and denied.error_codes == ["Unauthorized"]
    assert "Finance and Accounting" in denied.body["errors"][0]["details"]
    assert call("/no/such/operation").status_code == 404

    refreshed = amazon.lwa_refresh(client_id=tenant.client_id, client_secret=tenant.client_secret,
                                   refresh_token=token.refresh_token)
    assert refreshed.scopes is None


def test_roles_are_those_at_consent_a_role_added_later_needs_a_new_consent(client):
    tenant = make_tenant("roles", app_roles=ROLES)
    mode_set("amazon")
    token = _exchange(client, tenant)
    tenant.app_roles = ROLES + [AppRole.FINANCE_AND_ACCOUNTING.value]
    tenant.save()
    denied = amazon.spapi_send(region="na", method="GET", path="/finances/v0/financialEventGroups",
                               access_token=token.access_token)
    assert denied.status_code == 403
    again = _exchange(client, tenant)
    ok = amazon.spapi_send(region="na", method="GET", path="/finances/v0/financialEventGroups",
                           access_token=again.access_token)
    assert ok.status_code == 200


def test_seed_mode_echoes_scopes_and_gates_on_them(client):
    tenant = make_tenant("seedy", required=(ORDERS, INVENTORY), optional=(REPORTS, FINANCE), app_roles=ROLES)
    token = _exchange(client, tenant, scopes=[ORDERS, FINANCE])
    assert token.scopes == [ORDERS, FINANCE]
    ok = amazon.spapi_send(region="na", method="GET", path="/finances/v0/financialEventGroups", access_token=token.access_token)
    assert ok.status_code == 200  # the scope decides in seed mode, not the roles
    denied = amazon.spapi_send(region="na", method="GET", path="/fba/inventory/v1/summaries", access_token=token.access_token)
    assert denied.status_code == 403


def test_amazon_initiated_flow_in_amazon_mode_lists_roles_and_grants_what_they_give(client):
    from sellers.models import Grant

    from .test_login_uri import finish, start_from_amazon

    tenant = make_tenant("roles", required=(ORDERS,), optional=(), app_roles=ROLES)
    mode_set("amazon")
    consent_path, form = start_from_amazon(client, tenant, spid="A1APPROLES")
    assert [kind for _, _, kind, _ in form["fields"]].count("checkbox") == 0
    assert "Inventory and Order Tracking" in client.get(consent_path).content.decode()
    page = finish(client, sandbox_decide(client, consent_path, form))
    assert page.status_code == 200 and "From the app's registration" in page.content.decode()
    grant = Grant.objects.get(seller__selling_partner_id="A1APPROLES")
    assert grant.scopes_confirmed is False
    assert grant.granted_scopes == [ORDERS, INVENTORY, REPORTS, "sellingpartnerapi::notifications"]


def test_index_names_each_apps_roles(client):
    make_tenant("roles", app_roles=ROLES)
    make_tenant("bare")
    html = client.get("/sandbox/").content.decode()
    assert "roles Amazon Fulfillment, Inventory and Order Tracking" in html
    assert "no role recorded" in html
