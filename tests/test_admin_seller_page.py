"""The seller's page: its headline (what happened last, what to do next), its action buttons
(POST + CSRF, checked on the server), and the sellers list's shape and query count."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from sellers.models import Event, Grant, Invitation, Seller, TenantMembership
from sellers.services.invitations import invitation_create
from sellers.services.tokens import access_token_cache_clear
from tests.conftest import make_grant, make_seller, make_tenant

from .test_tokens import connected

Role = TenantMembership.Role
pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


def page(client, seller) -> str:
    response = client.get(reverse("admin:sellers_seller_change", args=[seller.pk]))
    assert response.status_code == 200
    return response.content.decode()


def act_url(seller, action: str) -> str:
    return reverse("admin:sellers_seller_act", args=[seller.pk, action])


def headline(html: str) -> str:
    return re.search(r'<p class="spc-headline" id="spc-headline">([^<]*)</p>', html).group(1)


def test_manager_sees_the_headline_and_every_button_and_no_empty_history_button(tenant, make_user, client, amazon_calls):
    seller, _ = connected(tenant, "Shop")
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    html = page(client, seller)
    assert headline(html).endswith("next: nothing to do.")
    for action in ("email_link", "refresh", "test", "revoke"):
        assert act_url(seller, action) in html
    assert 'class="historylink"' not in html


def test_viewers_see_the_headline_but_no_write_button_and_cannot_post(tenant, make_user, client, amazon_calls):
    seller, _ = connected(tenant, "Shop")
    client.force_login(make_user("vi", tenant=tenant, role=Role.VIEWER))
    html = page(client, seller)
    assert headline(html)
    assert "/act/" not in html and "Copy link" not in html
    for action in ("email_link", "refresh", "test", "revoke"):
        assert client.post(act_url(seller, action), {"post": "yes"}).status_code == 404
    assert not Event.objects.filter(seller=seller, actor="staff:vi").exists()
    assert Grant.objects.get(seller=seller).status == Grant.Status.ACTIVE


def test_another_tenants_manager_gets_404_and_get_is_not_an_action(tenant, make_user, client, amazon_calls):
    seller, _ = connected(tenant, "Shop")
    other = make_tenant("globex")
    client.force_login(make_user("otto", tenant=other, role=Role.OWNER))
    assert client.post(act_url(seller, "refresh")).status_code == 404
    assert client.get(reverse("admin:sellers_seller_change", args=[seller.pk])).status_code == 404
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    assert client.get(act_url(seller, "refresh")).status_code == 405
    assert client.post(reverse("admin:sellers_seller_act", args=[seller.pk, "delete"])).status_code == 404
    assert not Event.objects.filter(kind=Event.Kind.REFRESH_REQUESTED).exists()


def test_buttons_need_the_csrf_token(tenant, make_user, amazon_calls):
    from django.test import Client

    seller, _ = connected(tenant, "Shop")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    assert strict.post(act_url(seller, "refresh")).status_code == 403
    assert not Event.objects.filter(kind=Event.Kind.REFRESH_REQUESTED).exists()


def _marker(html: str) -> dict:
    return {"emailed_marker": re.search(r'name="emailed_marker" value="([^"]*)"', html).group(1)}


def test_email_link_asks_first_then_sends_and_resends(tenant, make_user, client, mailoutbox):
    invitation = invitation_create(tenant=tenant, name="Mail Me", email="mailme@example.com")
    seller = invitation.seller
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    confirm = client.get(act_url(seller, "email_link")).content.decode()
    assert "mailme@example.com" in confirm and "Yes, email the link" in confirm and mailoutbox == []
    client.post(act_url(seller, "email_link"), _marker(confirm))
    html = page(client, seller)
    assert "Link emailed to mailme@example.com." in html and "Re-send the link" in html
    confirm = client.get(act_url(seller, "email_link")).content.decode()
    assert "Yes, re-send the link" in confirm
    client.post(act_url(seller, "email_link"), _marker(confirm))
    assert len(mailoutbox) == 2 and all(invitation.url in m.body for m in mailoutbox)
    details = list(Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_EMAILED).values_list("detail", "actor"))
    assert sorted(details) == [("Link emailed to mailme@example.com.", "staff:manny"),
                               ("Link emailed to mailme@example.com. (resent)", "staff:manny")]
    assert Invitation.objects.filter(seller=seller).count() == 1


def test_submitting_the_same_confirmation_again_sends_nothing(tenant, make_user, client, mailoutbox):
    """A double click, Back and submit, or a loop replaying one form: one email."""
    invitation = invitation_create(tenant=tenant, name="Mail Once", email="once@example.com")
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    form = _marker(client.get(act_url(invitation.seller, "email_link")).content.decode())
    for _ in range(5):
        client.post(act_url(invitation.seller, "email_link"), form)
    assert len(mailoutbox) == 1
    assert "after that page was shown: not sent again" in page(client, invitation.seller)
    assert client.post(act_url(invitation.seller, "email_link")).status_code == 302  # no marker: nothing sent
    assert len(mailoutbox) == 1


def test_refresh_and_test_connection_buttons_act_on_this_seller_only(tenant, make_user, client, amazon_calls):
    seller, _ = connected(tenant, "Shop")
    bystander, _ = connected(tenant, "Other")
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    # A smuggled selection is ignored: the button acts on the page's seller.
    response = client.post(act_url(seller, "refresh"), {"_selected_action": [bystander.pk]}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("admin:sellers_seller_change", args=[seller.pk])
    assert "Refresh: 1 refreshed" in response.content.decode()
    assert [e.seller_id for e in Event.objects.filter(kind=Event.Kind.REFRESH_REQUESTED)] == [seller.pk]
    assert len(amazon_calls.token_calls) == 1
    body = client.post(act_url(seller, "test"), follow=True).content.decode()
    assert "Shop: connected." in body
    assert Event.objects.get(kind=Event.Kind.CONNECTION_TESTED).seller_id == seller.pk


def test_mark_revoked_asks_then_revokes_and_no_goes_back_to_the_page(tenant, make_user, client, amazon_calls):
    seller, _ = connected(tenant, "Shop")
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    confirm = client.get(act_url(seller, "revoke")).content.decode()
    assert "Yes, mark revoked" in confirm and reverse("admin:sellers_seller_change", args=[seller.pk]) in confirm
    assert Grant.objects.get(seller=seller).status == Grant.Status.ACTIVE
    client.post(act_url(seller, "revoke"), {"post": "yes", "reason": "left"})
    assert Grant.objects.get(seller=seller).status == Grant.Status.REVOKED
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED
    assert Event.objects.get(seller=seller, kind=Event.Kind.MARKED_REVOKED).actor == "staff:manny"
    assert "next: send a re-authorization link" in headline(page(client, seller))


def test_headline_of_a_declined_seller_says_what_happened_and_what_next(tenant, make_user, client):
    invitation = invitation_create(tenant=tenant, name="Said No")
    from sellers.services.status import seller_status_transition

    seller_status_transition(seller=invitation.seller, grant=None, kind=Event.Kind.DENIED, actor="seller",
                             detail="The seller declined on Amazon's consent page.", step=Seller.Status.DECLINED)
    client.force_login(make_user("manny", tenant=tenant, role=Role.MANAGER))
    line = headline(page(client, invitation.seller))
    assert line.startswith("Last: Declined at Amazon (The seller declined on Amazon&#x27;s consent page)")
    assert line.endswith("next: ask the seller why they declined, then re-send the link.")


# --- The sellers list ---------------------------------------------------------------------------


def test_tenant_column_only_for_staff_of_several_tenants(tenant, make_user, client):
    make_seller(tenant, "Shop")
    user = make_user("olga", tenant=tenant)
    client.force_login(user)
    changelist = reverse("admin:sellers_seller_changelist")
    assert "column-tenant_name" not in client.get(changelist).content.decode()
    TenantMembership.objects.create(tenant=make_tenant("globex"), user=user, role=Role.VIEWER)
    assert "column-tenant_name" in client.get(changelist).content.decode()


def test_missing_scope_filter_offers_only_required_scopes(tenant, make_user, client):
    client.force_login(make_user("olga", tenant=tenant))
    html = client.get(reverse("admin:sellers_seller_changelist")).content.decode()
    offered = set(re.findall(r'href="\?missing=sellingpartnerapi%3A%3A(\w+)"', html))
    assert offered == {"orders", "inventory"}  # reports is optional for this tenant


def test_history_shows_scope_labels_and_one_date_format(tenant, make_user, client):
    seller = make_seller(tenant, "Shop")
    Event.objects.create(tenant=tenant, seller=seller, kind=Event.Kind.SCOPE_REFUSED,
                         detail="Amazon refused sellingpartnerapi::inventory.")
    client.force_login(make_user("olga", tenant=tenant))
    html = page(client, seller)
    assert "Amazon refused Inventory." in html and "sellingpartnerapi::inventory" not in html
    events = client.get(reverse("admin:sellers_event_changelist")).content.decode()
    assert "Amazon refused Inventory." in events
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", events) and " ago" not in events and "a.m." not in events


def test_changelist_queries_stay_flat_from_10_to_200_sellers(tenant, make_user, client):
    client.force_login(make_user("olga", tenant=tenant))
    changelist = reverse("admin:sellers_seller_changelist")

    def fill(upto: int):
        for i in range(Seller.objects.count(), upto):
            seller = make_seller(tenant, f"Shop {i:03d}")
            if i % 3:
                make_grant(seller, scopes=("sellingpartnerapi::orders",) if i % 3 == 1 else ())

    counts = []
    for size in (10, 200):
        fill(size)
        with CaptureQueriesContext(connection) as queries:
            html = client.get(changelist, {"all": ""}).content.decode()
        assert html.count('class="field-name"') == size
        counts.append(len(queries))
    assert counts[0] == counts[1] and counts[1] <= 10, counts
