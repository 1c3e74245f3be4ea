"""Tenant isolation in the admin, tried with personas on every admin URL.

Owner of tenant A, viewer of tenant A, manager of tenant B and a superuser. Staff here have no
django.contrib.auth permissions at all (like the demo's), so everything comes from memberships.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from sellers.models import Event, Grant, Seller, TenantMembership
from sellers.services.events import event_record
from sellers.services.invitations import reauthorization_link_get_or_create
from sellers.tenancy import tenant_access
from tests.conftest import make_grant, make_seller, make_tenant

Role = TenantMembership.Role
ADMIN_ACTIONS = ["send_reauthorization_link", "refresh_now", "test_connection", "mark_revoked", "export_csv"]


@pytest.fixture
def world(db, make_user, client):
    a = make_tenant("acme", name="Acme Agency")
    b = make_tenant("globex", name="Globex Agency")
    a1 = make_seller(a, "Alpha Widgets", spid="A1SPIDALPHA")
    a2 = make_seller(a, "Apex Pending")
    b1 = make_seller(b, "Bravo Goods", spid="B1SPIDBRAVO")
    ga1, gb1 = make_grant(a1), make_grant(b1)
    for seller in (a1, a2, b1):
        event_record(seller=seller, kind=Event.Kind.INVITED, detail=f"Invited {seller.name}.")
    return {
        "a": a, "b": b, "a1": a1, "a2": a2, "b1": b1, "ga1": ga1, "gb1": gb1,
        "owner_a": make_user("olivia", tenant=a, role=Role.OWNER),
        "viewer_a": make_user("victor", tenant=a, role=Role.VIEWER),
        "manager_b": make_user("mallory", tenant=b, role=Role.MANAGER),
        "superuser": make_user("root", superuser=True),
    }


def login(client, user):
    client.force_login(user)
    return client


def seller_urls(seller):
    return {
        "change": reverse("admin:sellers_seller_change", args=[seller.pk]),
        "history": reverse("admin:sellers_seller_history", args=[seller.pk]),
        "delete": reverse("admin:sellers_seller_delete", args=[seller.pk]),
        "link": reverse("admin:sellers_seller_reauthorization_link", args=[seller.pk]),
    }


def event_urls(event):
    return {
        "change": reverse("admin:sellers_event_change", args=[event.pk]),
        "history": reverse("admin:sellers_event_history", args=[event.pk]),
        "delete": reverse("admin:sellers_event_delete", args=[event.pk]),
    }


def tenant_urls(tenant):
    return {
        "change": reverse("admin:sellers_tenant_change", args=[tenant.pk]),
        "history": reverse("admin:sellers_tenant_history", args=[tenant.pk]),
        "delete": reverse("admin:sellers_tenant_delete", args=[tenant.pk]),
    }


# --- The helper ----------------------------------------------------------------------------------


def test_tenant_access_reads_roles_once_per_user(world, django_assert_num_queries):
    user = world["owner_a"]
    with django_assert_num_queries(1):
        access = tenant_access(user)
        assert tenant_access(user) is access
    assert access.can(world["a"].pk, Role.OWNER)
    assert not access.can(world["b"].pk, Role.VIEWER)
    assert access.tenant_ids(Role.MANAGER) == {world["a"].pk}


def test_tenant_access_of_superuser_is_every_tenant(world):
    access = tenant_access(world["superuser"])
    assert access.tenant_ids() is None
    assert access.can(world["b"].pk, Role.OWNER)
    assert set(access.tenants().values_list("slug", flat=True)) == {"acme", "globex"}


def test_non_staff_and_inactive_users_have_no_access(world, django_user_model):
    user = world["owner_a"]
    user.is_staff = False
    assert not tenant_access(user).can_anywhere()
    plain = django_user_model.objects.create_user("plain", password="x")
    TenantMembership.objects.create(tenant=world["a"], user=plain, role=Role.OWNER)
    assert not tenant_access(plain).can_anywhere()


# --- Lists ---------------------------------------------------------------------------------------


def test_seller_changelist_lists_only_the_users_tenants(world, client):
    login(client, world["manager_b"])
    html = client.get(reverse("admin:sellers_seller_changelist")).content.decode()
    assert "Bravo Goods" in html
    assert "Alpha Widgets" not in html and "Apex Pending" not in html and "Acme Agency" not in html


def test_superuser_sees_all_tenants_with_a_tenant_filter(world, client):
    login(client, world["superuser"])
    url = reverse("admin:sellers_seller_changelist")
    html = client.get(url).content.decode()
    assert "Alpha Widgets" in html and "Bravo Goods" in html
    filtered = client.get(url, {"tenant": world["b"].pk}).content.decode()
    assert "Bravo Goods" in filtered and "Alpha Widgets" not in filtered


def test_tenant_filter_cannot_reach_another_tenant(world, client):
    login(client, world["manager_b"])
    response = client.get(reverse("admin:sellers_seller_changelist"), {"tenant": world["a"].pk})
    html = response.content.decode()
    assert "Alpha Widgets" not in html and "Acme Agency" not in html


def test_history_list_shows_only_events_of_the_users_tenants(world, client):
    login(client, world["manager_b"])
    html = client.get(reverse("admin:sellers_event_changelist")).content.decode()
    assert "Invited Bravo Goods." in html
    assert "Invited Alpha Widgets." not in html


def test_history_list_filters_by_kind_and_searches_by_seller(world, client):
    login(client, world["owner_a"])
    event_record(seller=world["a1"], kind=Event.Kind.MARKED_REVOKED, detail="Marked by someone.")
    url = reverse("admin:sellers_event_changelist")
    html = client.get(url, {"kind__exact": "marked_revoked"}).content.decode()
    assert "Marked by someone." in html and "Invited Alpha Widgets." not in html
    html = client.get(url, {"q": "A1SPIDALPHA"}).content.decode()
    assert "Invited Alpha Widgets." in html and "Invited Apex Pending." not in html


# --- Object URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("persona,foreign", [("owner_a", "b1"), ("viewer_a", "b1"), ("manager_b", "a1"), ("manager_b", "a2")])
def test_object_urls_of_another_tenants_seller_are_404(world, client, persona, foreign):
    login(client, world[persona])
    for name, url in seller_urls(world[foreign]).items():
        assert client.get(url).status_code == 404, name
        assert client.post(url, {"post": "yes", "name": "Hijacked"}).status_code == 404, name
    assert Seller.objects.filter(pk=world[foreign].pk, name=world[foreign].name).exists()


def test_object_urls_of_another_tenants_events_and_tenant_are_404(world, client):
    login(client, world["manager_b"])
    foreign_event = Event.objects.filter(tenant=world["a"]).first()
    for name, url in {**event_urls(foreign_event), **tenant_urls(world["a"])}.items():
        assert client.get(url).status_code == 404, name


def test_unknown_object_ids_are_404_not_a_redirect(world, client):
    login(client, world["superuser"])
    assert client.get(reverse("admin:sellers_seller_change", args=[999999])).status_code == 404
    assert client.get(reverse("admin:sellers_seller_change", args=["not-a-number"])).status_code == 404


def test_viewer_sees_seller_read_only_and_cannot_change_it(world, client):
    login(client, world["viewer_a"])
    urls = seller_urls(world["a1"])
    page = client.get(urls["change"])
    assert page.status_code == 200
    html = page.content.decode()
    assert 'name="_save"' not in html and "Create a link" not in html
    assert client.post(urls["change"], {"name": "Renamed", "email": "x@example.com"}).status_code == 403
    assert client.get(urls["delete"]).status_code == 403
    assert client.get(urls["link"]).status_code == 404
    assert client.post(urls["link"]).status_code == 404
    assert Seller.objects.get(pk=world["a1"].pk).name == "Alpha Widgets"
    assert client.get(urls["history"]).status_code == 200


def test_only_owners_and_managers_see_a_live_link(world, client):
    link_a, _ = reauthorization_link_get_or_create(seller=world["a1"])
    link_b, _ = reauthorization_link_get_or_create(seller=world["b1"])
    urls = seller_urls(world["a1"])

    login(client, world["viewer_a"])
    html = client.get(urls["change"]).content.decode()
    assert link_a.token not in html and "Copy</button>" not in html
    assert f"link, valid until {link_a.expires_at:%Y-%m-%d %H:%M} UTC" in html  # that it exists, and until when
    for response in (client.get(urls["link"]), client.post(urls["link"], follow=True)):
        assert response.status_code == 404 and link_a.token not in response.content.decode()
    for listing in ("admin:sellers_seller_changelist", "admin:sellers_event_changelist", "admin:index"):
        assert link_a.token not in client.get(reverse(listing)).content.decode()

    login(client, world["owner_a"])
    assert f'value="{link_a.url}"' in client.get(urls["change"]).content.decode()
    login(client, world["manager_b"])
    b_urls = seller_urls(world["b1"])
    assert f'value="{link_b.url}"' in client.get(b_urls["change"]).content.decode()
    assert f'value="{link_b.url}"' in client.post(b_urls["link"], follow=True).content.decode()


def test_viewer_cannot_open_the_tenant_page(world, client):
    login(client, world["viewer_a"])
    assert client.get(reverse("admin:sellers_tenant_changelist")).status_code == 403
    assert client.get(tenant_urls(world["a"])["change"]).status_code == 404


def test_manager_edits_a_seller_of_their_tenant(world, client):
    login(client, world["manager_b"])
    url = seller_urls(world["b1"])["change"]
    response = client.post(url, {"name": "Bravo Renamed", "email": "bravo@example.com", "events-TOTAL_FORMS": "0",
                                 "events-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    seller = Seller.objects.get(pk=world["b1"].pk)
    assert (seller.name, seller.email, seller.selling_partner_id) == ("Bravo Renamed", "bravo@example.com", "B1SPIDBRAVO")


def test_sellers_cannot_be_deleted_by_staff_but_can_by_superusers(world, client):
    login(client, world["owner_a"])
    assert client.post(seller_urls(world["a2"])["delete"], {"post": "yes"}).status_code == 403
    assert Seller.objects.filter(pk=world["a2"].pk).exists()
    login(client, world["superuser"])
    assert client.get(seller_urls(world["a2"])["delete"]).status_code == 200


def test_events_are_read_only_for_everyone(world, client):
    event = Event.objects.filter(tenant=world["a"]).first()
    for persona in ("owner_a", "superuser"):
        login(client, world[persona])
        urls = event_urls(event)
        assert client.get(urls["change"]).status_code == 200
        assert client.post(urls["change"], {"detail": "rewritten"}).status_code == 403
        assert client.post(urls["delete"], {"post": "yes"}).status_code == 403
        assert client.get(reverse("admin:sellers_event_add")).status_code == 403
    assert Event.objects.get(pk=event.pk).detail == event.detail


# --- Actions smuggled across tenants -------------------------------------------------------------


@pytest.mark.parametrize("action", ADMIN_ACTIONS)
def test_actions_ignore_rows_of_other_tenants(world, client, action, mailoutbox, amazon_calls):
    login(client, world["manager_b"])
    foreign = world["a1"]
    before = Event.objects.filter(seller=foreign).count()
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": action, "_selected_action": [foreign.pk, world["a2"].pk], "index": 0, "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "Alpha Widgets" not in body and "Apex Pending" not in body
    assert Event.objects.filter(seller=foreign).count() == before
    assert Grant.objects.get(pk=world["ga1"].pk).status == Grant.Status.ACTIVE
    assert mailoutbox == []
    assert amazon_calls.calls == []
    if action == "export_csv":
        assert body.splitlines()[1:] == []  # the header only
        body = client.get(reverse("admin:sellers_seller_changelist")).content.decode()
    assert "2 selected row(s) refused" in body


@pytest.mark.parametrize("action", ADMIN_ACTIONS)
def test_viewers_get_no_actions(world, client, action, mailoutbox, amazon_calls):
    login(client, world["viewer_a"])
    url = reverse("admin:sellers_seller_changelist")
    assert 'name="action"' not in client.get(url).content.decode()
    before = Event.objects.filter(seller=world["a1"]).count()
    client.post(url, {"action": action, "_selected_action": [world["a1"].pk], "index": 0, "post": "yes"})
    assert Event.objects.filter(seller=world["a1"]).count() == before
    assert Grant.objects.get(pk=world["ga1"].pk).status == Grant.Status.ACTIVE
    assert mailoutbox == [] and amazon_calls.calls == []


def test_mixed_selection_acts_on_own_rows_and_counts_the_others(world, client):
    login(client, world["manager_b"])
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "mark_revoked", "_selected_action": [world["b1"].pk, world["a1"].pk], "index": 0, "post": "yes"},
        follow=True,
    )
    body = response.content.decode()
    assert Grant.objects.get(pk=world["gb1"].pk).status == Grant.Status.REVOKED
    assert Grant.objects.get(pk=world["ga1"].pk).status == Grant.Status.ACTIVE
    assert "1 selected row(s) refused" in body


def test_mark_revoked_confirmation_lists_only_managed_sellers(world, client):
    login(client, world["manager_b"])
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "mark_revoked", "_selected_action": [world["b1"].pk, world["a1"].pk], "index": 0},
    )
    body = response.content.decode()
    assert response.status_code == 200 and "Bravo Goods" in body and "Alpha Widgets" not in body
    assert "1 selected row(s) refused" in body
    assert not Grant.objects.filter(status=Grant.Status.REVOKED).exists()


def test_garbage_selection_is_refused_without_error(world, client):
    login(client, world["manager_b"])
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "mark_revoked", "_selected_action": ["1 OR 1=1"], "index": 0},
    )
    assert response.status_code == 302
    assert Grant.objects.filter(status=Grant.Status.REVOKED).count() == 0


# --- Pages of other apps ------------------------------------------------------------------------


# OrmQ (the ORM broker's queue) is registered only when the ORM broker is in use.
DJANGO_Q_PAGES = sorted(
    f"django_q_{model._meta.model_name}" for model in admin.site._registry if model._meta.app_label == "django_q"
)


def test_django_q_pages_are_all_covered():
    assert {"django_q_schedule", "django_q_success", "django_q_failure"} <= set(DJANGO_Q_PAGES)


@pytest.mark.parametrize("persona", ["owner_a", "viewer_a", "manager_b"])
def test_background_task_and_user_pages_are_superuser_only(world, client, persona):
    login(client, world[persona])
    for name in DJANGO_Q_PAGES + ["auth_user", "auth_group"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 403, name
    user_url = reverse("admin:auth_user_change", args=[world["owner_a"].pk])
    assert client.get(user_url).status_code == 403
    index = client.get(reverse("admin:index")).content.decode()
    assert "django_q" not in index and "/admin/auth/" not in index


def test_superuser_reaches_background_task_pages(world, client):
    login(client, world["superuser"])
    for name in DJANGO_Q_PAGES + ["auth_user"]:
        assert client.get(reverse(f"admin:{name}_changelist")).status_code == 200, name


FOREIGN = {
    "owner_a": ("Globex", "Bravo", "B1SPIDBRAVO", "mallory"),
    "viewer_a": ("Globex", "Bravo", "B1SPIDBRAVO", "mallory"),
    "manager_b": ("Acme", "Alpha", "Apex", "A1SPIDALPHA", "olivia", "victor"),
}


@pytest.mark.parametrize("persona", ["owner_a", "viewer_a", "manager_b"])
def test_autocomplete_answers_only_within_the_users_tenants(world, client, persona):
    login(client, world[persona])
    for params in (
        {"app_label": "sellers", "model_name": "seller", "field_name": "tenant", "term": ""},
        {"app_label": "sellers", "model_name": "event", "field_name": "seller", "term": ""},
        {"app_label": "sellers", "model_name": "event", "field_name": "tenant", "term": "a"},
        {"app_label": "sellers", "model_name": "tenantmembership", "field_name": "user", "term": ""},
        {"app_label": "sellers", "model_name": "tenantmembership", "field_name": "tenant", "term": ""},
    ):
        response = client.get(reverse("admin:autocomplete"), params)
        assert response.status_code in (200, 403, 404), params
        body = response.content.decode()
        for foreign in FOREIGN[persona]:
            assert foreign not in body, (params, foreign)


def test_autocomplete_of_sellers_is_scoped(world, client):
    login(client, world["manager_b"])
    params = {"app_label": "sellers", "model_name": "event", "field_name": "seller", "term": ""}
    results = client.get(reverse("admin:autocomplete"), params).json()["results"]
    assert [r["id"] for r in results] == [str(world["b1"].pk)]
    login(client, world["viewer_a"])
    tenant_params = {"app_label": "sellers", "model_name": "seller", "field_name": "tenant", "term": ""}
    assert client.get(reverse("admin:autocomplete"), tenant_params).status_code == 403  # tenants: owners only


def test_membership_choices_never_offer_users_of_other_tenants(world, client):
    login(client, world["owner_a"])
    html = client.get(tenant_urls(world["a"])["change"]).content.decode()
    assert "victor" in html and "olivia" in html
    assert "mallory" not in html and ">root<" not in html
