"""End to end over real sockets in both sandbox modes: the whole consent flow, a refresh, a call
inside and outside what was granted, a refusal Amazon teaches at call time, and a revocation.

`seed` plays the scope model (scopes asked and echoed); `amazon` plays Amazon as it really is
(the app's registered roles decide, nothing echoed). The mode is set per test in the sandbox's
table, which the transactional test database empties afterwards."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from sandbox.models import SandboxAuthorization
from sandbox.modes import mode_current, mode_set
from sellers.models import Event, Grant
from sellers.roles import AppRole
from sellers.scopes import NOTIFICATIONS
from sellers.services.invitations import invitation_create
from sellers.services.spapi import ReauthorizationRequired, RoleNotRegistered, ScopeNotGranted, spapi_request
from sellers.services.tokens import RefreshOutcome, access_token_cache_clear, grant_refresh

from .conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_tenant
from .test_e2e_http import browser_flow, export

pytestmark = pytest.mark.django_db(transaction=True)

APP_ROLES = [AppRole.AMAZON_FULFILLMENT.value, AppRole.INVENTORY_AND_ORDER_TRACKING.value]
SPID = "A1MODESHTTP"


@pytest.fixture(params=["seed", "amazon"])
def sandbox_mode(request, live_amazon):
    assert mode_current() == "seed"  # nothing left over from another test
    mode_set(request.param)
    access_token_cache_clear()
    yield request.param
    access_token_cache_clear()


def _connect(tenant):
    invitation = invitation_create(tenant=tenant, name="HTTP Shop")
    page, _ = browser_flow(invitation.url, spid=SPID)
    return invitation.seller, page


def test_whole_lifecycle_in_both_modes(sandbox_mode, live_amazon, amazon_calls):
    tenant = make_tenant("acme", required=(ORDERS, INVENTORY), optional=(REPORTS,), app_roles=APP_ROLES)
    seller, page = _connect(tenant)

    # Consent and code exchange.
    assert page.status_code == 200 and "all set" in page.text
    [record] = export()
    assert record["status"] == "active"
    if sandbox_mode == "seed":
        assert record["granted_scopes"] == [ORDERS, INVENTORY, REPORTS]
        assert record["scopes_confirmed"] is True and record["scopes_source"] == "confirmed by Amazon"
        assert "Confirmed by Amazon" in page.text
    else:
        # Amazon named no scope: what Amazon Fulfillment and Inventory and Order Tracking give.
        assert record["granted_scopes"] == [ORDERS, INVENTORY, REPORTS, NOTIFICATIONS]
        assert record["scopes_confirmed"] is False and record["scopes_source"] == "from the app's registration"
        assert "From the app's registration" in page.text
    assert SandboxAuthorization.objects.get(selling_partner_id=SPID).roles == APP_ROLES

    # A refresh keeps where the scopes came from.
    grant = Grant.objects.get(seller=seller)
    result = grant_refresh(grant=grant, force=True)
    assert result.outcome == RefreshOutcome.REFRESHED
    assert amazon_calls.token_calls[-1].grant_type == "refresh_token"
    assert amazon_calls.token_calls[-1].url.startswith(live_amazon)
    assert Grant.objects.get(pk=grant.pk).scopes_confirmed is (sandbox_mode == "seed")

    # A call inside what was granted.
    sent = len(amazon_calls.spapi_calls)
    answer = spapi_request(seller=seller, method="GET", path="/orders/v0/orders")
    assert answer.status_code == 200 and answer.body["payload"]["Orders"]
    assert len(amazon_calls.spapi_calls) == sent + 1

    # A call outside: refused before anything is sent, saying what is missing.
    sent = len(amazon_calls.spapi_calls)
    with pytest.raises(ScopeNotGranted) as refused:
        spapi_request(seller=seller, method="GET", path="/finances/v0/financialEventGroups")
    assert len(amazon_calls.spapi_calls) == sent
    if sandbox_mode == "amazon":
        assert isinstance(refused.value, RoleNotRegistered)
        assert "Finance and Accounting" in str(refused.value)
    else:
        assert refused.value.scope == FINANCE

    # Revocation at Amazon: the next call finds out, the grant is revoked, a link is offered.
    call_command("sandbox", "revoke", SPID, stdout=open("/dev/null", "w"))
    with pytest.raises(ReauthorizationRequired):
        spapi_request(seller=seller, method="GET", path="/orders/v0/orders")
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.REVOKED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).count() == 1
    [record] = export()
    assert record["status"] == "revoked"


def test_a_refusal_learned_at_call_time_narrows_the_grant_in_both_modes(sandbox_mode, live_amazon, amazon_calls):
    tenant = make_tenant("acme", required=(ORDERS,), optional=(INVENTORY, REPORTS), app_roles=APP_ROLES)
    seller, _ = _connect(tenant)
    if sandbox_mode == "amazon":
        # The agency adds a role to its app; sellers who consented before do not have it yet.
        tenant.app_roles = APP_ROLES + [AppRole.FINANCE_AND_ACCOUNTING.value]
        tenant.save(update_fields=["app_roles"])
        path, scope = "/finances/v0/financialEventGroups", FINANCE
    else:
        # Amazon stops honouring a scope the token response had named.
        SandboxAuthorization.objects.filter(selling_partner_id=SPID).update(scopes=[ORDERS, INVENTORY])
        path, scope = "/reports/2021-06-30/reports", REPORTS
    sent, lwa = len(amazon_calls.spapi_calls), len(amazon_calls.token_calls)
    with pytest.raises(ScopeNotGranted) as refused:
        spapi_request(seller=seller, method="GET", path=path)
    assert refused.value.refused_by_amazon and refused.value.scope == scope
    # Sent, refused, one refresh, sent again with the fresh token, refused again.
    assert len(amazon_calls.spapi_calls) == sent + 2 and len(amazon_calls.token_calls) == lwa + 1
    grant = Grant.objects.get(seller=seller)
    assert grant.refused_scopes == [scope] and grant.status == Grant.Status.ACTIVE
    assert Event.objects.filter(seller=seller, kind=Event.Kind.SCOPE_REFUSED).count() == 1
    # Learned once: the next call is refused before anything is sent.
    sent = len(amazon_calls.spapi_calls)
    with pytest.raises(ScopeNotGranted):
        spapi_request(seller=seller, method="GET", path=path)
    assert len(amazon_calls.spapi_calls) == sent
    # What was granted still works.
    assert spapi_request(seller=seller, method="GET", path="/orders/v0/orders").status_code == 200


def test_amazon_mode_partial_result_names_the_role_a_missing_permission_needs(live_amazon):
    mode_set("amazon")
    # Inventory and Order Tracking alone gives orders, reports, notifications, not inventory.
    tenant = make_tenant("acme", required=(ORDERS, INVENTORY), optional=(), app_roles=[AppRole.INVENTORY_AND_ORDER_TRACKING.value])
    seller, page = _connect(tenant)
    assert "some permissions are missing" in page.text
    assert "Comes with the Amazon role Product Listing or Amazon Fulfillment." in page.text
    # Granting again cannot help: the page does not offer it.
    assert "Try again and grant the missing permissions" not in page.text
    [record] = export()
    assert record["status"] == "partial" and record["missing_scopes"] == [INVENTORY]
    assert record["scopes_source"] == "from the app's registration"
