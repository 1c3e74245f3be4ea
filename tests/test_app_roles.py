"""A tenant records its app's SP-API roles: the admin and seed_demo set them; when Amazon names no
scope, "granted" means "the app's roles give it"; calls are gated path by path on those roles;
paths outside spconnect's map fail closed; exports say where the scopes came from."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command

from sellers.amazon import TokenResponse
from sellers.models import Tenant, TenantMembership
from sellers.roles import AppRole
from sellers.scopes import NOTIFICATIONS
from sellers.services.grants import granted_scopes_from
from sellers.services.spapi import PathNotMapped, RoleNotRegistered, spapi_request
from sellers.services.tokens import access_token_cache_clear

from .conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_grant, make_seller, make_tenant, read_output
from .test_admin_tenant import change_url, post_data, saved
from .test_tokens import connected

pytestmark = pytest.mark.django_db

FA, AF, BA = AppRole.FINANCE_AND_ACCOUNTING.value, AppRole.AMAZON_FULFILLMENT.value, AppRole.BRAND_ANALYTICS.value


@pytest.fixture
def acme(db):
    return make_tenant("acme", name="Acme Agency")


@pytest.fixture
def owner(acme, make_user, client):
    user = make_user("olga", tenant=acme, role=TenantMembership.Role.OWNER)
    client.force_login(user)
    return user


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()
    yield
    access_token_cache_clear()


def _token(scopes):
    return TokenResponse(access_token="Atza|x", refresh_token="Atzr|x", token_type="bearer", expires_in=3600, scopes=scopes)


def test_granted_means_what_the_roles_give_when_amazon_names_no_scope(tenant):
    tenant.app_roles = [FA]
    assert granted_scopes_from(tenant=tenant, token=_token(None)) == ([ORDERS, REPORTS, FINANCE, NOTIFICATIONS], False)
    # Amazon's answer wins whenever it names scopes.
    assert granted_scopes_from(tenant=tenant, token=_token([INVENTORY])) == ([INVENTORY], True)
    # No role recorded: the registered scopes, as before roles were recorded.
    tenant.app_roles = []
    assert granted_scopes_from(tenant=tenant, token=_token(None)) == ([ORDERS, INVENTORY, REPORTS], False)


def test_unmapped_and_grantless_paths_are_refused_before_any_call(tenant, amazon_calls):
    seller, _ = connected(tenant)
    with pytest.raises(PathNotMapped, match="refused rather than assumed open"):
        spapi_request(seller=seller, method="GET", path="/ordersX/v0/orders")
    with pytest.raises(PathNotMapped, match="grantless"):
        spapi_request(seller=seller, method="GET", path="/notifications/v1/destinations")
    assert amazon_calls.calls == []


def test_unconfirmed_grant_is_gated_path_by_path_on_the_apps_roles(db, amazon_calls):
    tenant = make_tenant("roles", app_roles=[BA])
    seller, grant = connected(tenant, scopes=(REPORTS,))
    grant.scopes_confirmed = False
    grant.save(update_fields=["scopes_confirmed"])
    # getMarketplaceParticipations needs any authorized seller's grant, and one of eight roles:
    # Brand Analytics is not one of them, so nothing is sent.
    with pytest.raises(RoleNotRegistered) as refused:
        spapi_request(seller=seller, method="GET", path="/sellers/v1/marketplaceParticipations")
    assert BA not in refused.value.roles and AppRole.PRODUCT_LISTING.value in refused.value.roles
    assert "Product Listing" in str(refused.value) and "No request was sent" in str(refused.value)
    assert amazon_calls.calls == []


def test_confirmed_grant_is_gated_on_the_scopes_amazon_named(tenant, amazon_calls):
    tenant.app_roles = [BA]  # would refuse orders; Amazon's echoed scopes decide instead
    tenant.save()
    seller, _ = connected(tenant, scopes=(ORDERS,))
    assert spapi_request(seller=seller, method="GET", path="/orders/v0/orders").status_code == 200


def test_owner_records_the_apps_roles_and_sees_the_scopes_they_give(owner, client, acme):
    page = client.get(change_url(acme))
    assert "App roles" in page.content.decode() and "Amazon Warehousing and Distribution" in page.content.decode()
    saved(client.post(change_url(acme), post_data(acme, app_roles=[FA, AF])))
    acme.refresh_from_db()
    assert acme.app_roles == [AF, FA]  # catalog order
    html = client.get(change_url(acme)).content.decode()
    assert "Orders, Inventory, Reports, Finance, Notifications." in html
    assert "Products (needs Product Listing)" in html


def test_unknown_role_is_refused_by_the_form(owner, client, acme):
    response = client.post(change_url(acme), post_data(acme, app_roles=["everything"]))
    assert response.status_code == 200
    acme.refresh_from_db()
    assert acme.app_roles == []


def test_viewer_cannot_see_or_change_the_tenant_page(acme, make_user, client):
    client.force_login(make_user("vic", tenant=acme, role=TenantMembership.Role.VIEWER))
    assert client.get(change_url(acme)).status_code in (302, 403, 404)
    client.post(change_url(acme), post_data(acme, app_roles=[FA]))
    acme.refresh_from_db()
    assert acme.app_roles == []


def test_seed_demo_records_roles_that_give_the_demo_requirements(db):
    call_command("seed_demo", stdout=io.StringIO())
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.app_roles == [AF, FA, AppRole.INVENTORY_AND_ORDER_TRACKING.value]
    Tenant.objects.filter(pk=tenant.pk).update(app_roles=[])
    call_command("seed_demo", stdout=io.StringIO())
    tenant.refresh_from_db()
    assert tenant.app_roles == [AF, FA, AppRole.INVENTORY_AND_ORDER_TRACKING.value]
    given = set(granted_scopes_from(tenant=tenant, token=_token(None))[0])
    assert {s.scope for s in tenant.scope_requirements.all()} <= given


def test_export_says_where_the_scopes_came_from(tenant):
    confirmed = make_seller(tenant, "Confirmed Shop", spid="A1CONF")
    make_grant(confirmed)
    assumed = make_seller(tenant, "Assumed Shop", spid="A1ASSU")
    make_grant(assumed, confirmed=False)
    make_seller(tenant, "Never Shop")
    out = read_output(lambda stdout: call_command("export_grants", "--format", "csv", stdout=stdout))
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out))}
    assert rows["Confirmed Shop"]["scopes_source"] == "confirmed by Amazon"
    assert rows["Assumed Shop"]["scopes_source"] == "from the app's registration"
    assert rows["Never Shop"]["scopes_source"] == ""
