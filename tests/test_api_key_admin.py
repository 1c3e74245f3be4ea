"""API keys in the admin, with personas: owners create (the key shown once) and revoke; managers
and viewers see the list without a key; another tenant's staff see nothing of it (404)."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from api.keys import api_key_create, api_key_find
from api.models import ApiKey
from sellers.hashing import token_hash
from sellers.models import Event, TenantMembership
from tests.conftest import make_tenant

Role = TenantMembership.Role
ADD = "/admin/api/apikey/add/"
LIST = "/admin/api/apikey/"
KEY = re.compile(r"spc_[a-z0-9]{8}_[A-Za-z0-9_-]{32,}")


@pytest.fixture
def world(db, make_user):
    a, b = make_tenant("acme", name="Acme Agency"), make_tenant("globex", name="Globex Agency")
    key_a, full_a = api_key_create(tenant=a, name="repricer", permissions=["tokens:read"], actor="test")
    key_b, _ = api_key_create(tenant=b, name="globex-sync", permissions=["connections:read"], actor="test")
    return {
        "a": a, "b": b, "key_a": key_a, "full_a": full_a, "key_b": key_b,
        "owner_a": make_user("olivia", tenant=a, role=Role.OWNER),
        "manager_a": make_user("manon", tenant=a, role=Role.MANAGER),
        "viewer_a": make_user("victor", tenant=a, role=Role.VIEWER),
        "owner_b": make_user("bob", tenant=b, role=Role.OWNER),
    }


def as_user(client, user):
    client.force_login(user)
    return client


def change_url(key):
    return reverse("admin:api_apikey_change", args=[key.pk])


def revoke_url(key):
    return reverse("admin:api_apikey_revoke", args=[key.pk])


def test_owner_creates_a_key_shown_once(world, client):
    owner = as_user(client, world["owner_a"])
    form = owner.get(ADD)
    assert form.status_code == 200
    assert "Acme Agency" in form.text and "Globex Agency" not in form.text  # only tenants they own
    response = owner.post(ADD, {
        "tenant": world["a"].pk, "name": "order-sync", "permissions": ["connections:read", "tokens:read"],
        "paths": "/orders/v0/\n/reports/2021-06-30/", "expires_days": "90",
    })
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [full] = set(KEY.findall(response.text))
    created = ApiKey.objects.get(name="order-sync")
    assert created.key_hash == token_hash(full) and created.tenant == world["a"]
    assert created.paths == ["/orders/v0/", "/reports/2021-06-30/"] and created.created_by == "staff:olivia"
    assert Event.objects.get(kind=Event.Kind.API_KEY_CREATED, data__key="order-sync").actor == "staff:olivia"
    assert api_key_find(full) == created
    # Never again: not on its page, not in the list.
    for url in (change_url(created), LIST):
        page = owner.get(url)
        assert page.status_code == 200 and full not in page.text and created.display_prefix in page.text


def test_owner_cannot_create_for_a_tenant_they_do_not_own(world, client):
    owner = as_user(client, world["owner_a"])
    response = owner.post(ADD, {"tenant": world["b"].pk, "name": "sneaky", "permissions": ["tokens:read"]})
    assert response.status_code == 200 and "Select a valid choice" in response.text
    assert not KEY.search(response.text)
    assert not ApiKey.objects.filter(name="sneaky").exists()


def test_a_taken_name_is_reported_on_the_form(world, client):
    owner = as_user(client, world["owner_a"])
    response = owner.post(ADD, {"tenant": world["a"].pk, "name": "repricer", "permissions": ["proxy"]})
    assert "already has a key named" in response.text and not KEY.search(response.text)
    assert ApiKey.objects.filter(tenant=world["a"]).count() == 1


@pytest.mark.parametrize("persona", ["manager_a", "viewer_a"])
def test_managers_and_viewers_see_the_list_but_cannot_create_or_revoke(world, client, persona):
    staff = as_user(client, world[persona])
    listing = staff.get(LIST)
    assert listing.status_code == 200
    assert "repricer" in listing.text and "globex-sync" not in listing.text
    assert world["full_a"] not in listing.text
    assert staff.get(ADD).status_code == 403
    page = staff.get(change_url(world["key_a"]))
    assert page.status_code == 200 and "Revoke this key" not in page.text and world["full_a"] not in page.text
    assert staff.post(revoke_url(world["key_a"])).status_code == 404
    staff.post(LIST, {"action": "revoke_keys", ACTION_CHECKBOX_NAME: [world["key_a"].pk]})
    world["key_a"].refresh_from_db()
    assert world["key_a"].revoked_at is None


def test_another_tenants_owner_gets_404(world, client):
    other = as_user(client, world["owner_b"])
    assert other.get(change_url(world["key_a"])).status_code == 404
    assert other.post(revoke_url(world["key_a"])).status_code == 404
    assert "repricer" not in other.get(LIST).text
    other.post(LIST, {"action": "revoke_keys", ACTION_CHECKBOX_NAME: [world["key_a"].pk]})
    world["key_a"].refresh_from_db()
    assert world["key_a"].revoked_at is None


def test_owner_revokes_from_the_page_and_from_the_list(world, client, make_user):
    owner = as_user(client, world["owner_a"])
    page = owner.get(change_url(world["key_a"]))
    assert "Revoke this key" in page.text
    response = owner.post(revoke_url(world["key_a"]))
    assert response.status_code == 302
    world["key_a"].refresh_from_db()
    assert world["key_a"].revoked_by == "staff:olivia" and api_key_find(world["full_a"]) is None
    assert Event.objects.get(kind=Event.Kind.API_KEY_REVOKED).actor == "staff:olivia"
    assert "Revoke this key" not in owner.get(change_url(world["key_a"])).text

    second, _ = api_key_create(tenant=world["a"], name="second", permissions=["proxy"], actor="test")
    owner.post(LIST, {"action": "revoke_keys", ACTION_CHECKBOX_NAME: [second.pk, world["key_b"].pk]})
    second.refresh_from_db()
    world["key_b"].refresh_from_db()
    assert second.revoked_at is not None
    assert world["key_b"].revoked_at is None  # another tenant's key in the POST is ignored
    assert owner.get(reverse("admin:api_apikey_delete", args=[second.pk])).status_code == 403  # revoked, never deleted
