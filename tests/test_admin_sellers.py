"""The sellers changelist, the seller page and the bulk actions."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from unittest import mock

import pytest
from django.urls import reverse
from django.utils import timezone

from sellers.models import Event, Grant, Invitation, Seller, TenantMembership
from sellers.services.invitations import reauthorization_link_get_or_create
from tests.conftest import FINANCE, INVENTORY, ORDERS, REPORTS, make_grant, make_seller, make_tenant

Role = TenantMembership.Role
CHANGELIST = "admin:sellers_seller_changelist"


@pytest.fixture
def acme(db):
    return make_tenant("acme", name="Acme Agency")


@pytest.fixture
def manager(acme, make_user, client):
    user = make_user("manny", tenant=acme, role=Role.MANAGER)
    client.force_login(user)
    return user


def listed(client, **params) -> str:
    response = client.get(reverse(CHANGELIST), params)
    assert response.status_code == 200
    return response.content.decode()


def act(client, action, *sellers, follow=True, **extra):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [s.pk for s in sellers], "index": 0, **extra},
        follow=follow,
    )


# --- Changelist ------------------------------------------------------------------------------------


def test_changelist_shows_status_scopes_missing_expiry_and_renewal(acme, manager, client):
    seller = make_seller(acme, "Partial Pete", spid="SPIDPETE")
    make_grant(seller, scopes=[ORDERS, REPORTS], authorized_days_ago=340, expires_in=1800)
    html = listed(client)
    assert "Partial Pete" in html and "SPIDPETE" in html and "North America" in html
    assert 'spc-badge-partial">Partial<' in html
    assert '<span class="spc-overdue">1/2 required</span> <span class="spc-missing">missing Inventory</span>' in html
    assert "29 min left" in html or "30 min left" in html
    due = (timezone.now() - timedelta(days=340) + timedelta(days=365)).strftime("%Y-%m-%d")
    assert 'class="spc-due-soon"' in html and due in html


def test_changelist_searches_name_email_and_selling_partner_id(acme, manager, client):
    make_seller(acme, "Zeta Store", spid="ZSPID1", email="orders@zeta.example")
    make_seller(acme, "Other Shop", spid="OSPID2")
    assert "Zeta Store" in listed(client, q="zeta") and "Other Shop" not in listed(client, q="zeta")
    assert "Zeta Store" in listed(client, q="orders@zeta") and "Other Shop" not in listed(client, q="orders@zeta")
    assert "Zeta Store" in listed(client, q="ZSPID1") and "Other Shop" not in listed(client, q="ZSPID1")


def test_changelist_filters_status_and_region(acme, manager, client):
    make_grant(make_seller(acme, "Active EU", region="eu"), scopes=[ORDERS, INVENTORY])
    make_seller(acme, "Pending NA")
    assert "Active EU" in listed(client, status__exact="active") and "Pending NA" not in listed(client, status__exact="active")
    assert "Active EU" in listed(client, region__exact="eu") and "Pending NA" not in listed(client, region__exact="eu")


@pytest.fixture
def scoped_sellers(acme):
    full = make_seller(acme, "Full Grant")
    make_grant(full, scopes=[ORDERS, INVENTORY, FINANCE])
    no_inventory = make_seller(acme, "No Inventory")
    make_grant(no_inventory, scopes=[ORDERS])
    refused = make_seller(acme, "Refused Inventory")
    grant = make_grant(refused, scopes=[ORDERS, INVENTORY])
    Grant.objects.filter(pk=grant.pk).update(refused_scopes=[INVENTORY])
    make_seller(acme, "Never Connected")
    soon = make_seller(acme, "Renewal Soon")
    make_grant(soon, authorized_days_ago=350)
    late = make_seller(acme, "Renewal Overdue")
    make_grant(late, authorized_days_ago=370)
    return acme


def names(html, candidates=("Full Grant", "No Inventory", "Refused Inventory", "Never Connected", "Renewal Soon", "Renewal Overdue")):
    return {n for n in candidates if n in html}


def test_scope_granted_filter_counts_effective_scopes(scoped_sellers, manager, client):
    # Works the same on SQLite and PostgreSQL (run with DATABASE_URL=postgres://... to check).
    assert names(listed(client, granted=INVENTORY)) == {"Full Grant", "Renewal Soon", "Renewal Overdue"}
    assert names(listed(client, granted=FINANCE)) == {"Full Grant"}
    assert names(listed(client, granted="sellingpartnerapi::unknown")) == names(listed(client))


def test_scope_missing_filter_lists_sellers_lacking_a_required_scope(scoped_sellers, manager, client):
    assert names(listed(client, missing=INVENTORY)) == {"No Inventory", "Refused Inventory", "Never Connected"}
    # Finance is not required by the tenant: nobody "misses" it.
    assert names(listed(client, missing=FINANCE)) == set()


def test_renewal_filter(scoped_sellers, manager, client):
    assert names(listed(client, renewal="soon")) == {"Renewal Soon"}
    assert names(listed(client, renewal="overdue")) == {"Renewal Overdue"}


def test_json_scope_lookup_is_portable(scoped_sellers):
    from sellers.selectors import scope_held_q

    held = set(Grant.objects.filter(scope_held_q(INVENTORY)).values_list("seller__name", flat=True))
    assert held == {"Full Grant", "Renewal Soon", "Renewal Overdue"}
    # "orders" must not match a hypothetical longer name by substring: quotes are part of the match.
    assert Grant.objects.filter(scope_held_q("sellingpartnerapi::order")).count() == 0


@pytest.mark.parametrize("count", [10, 200])
def test_changelist_query_count_is_constant(acme, make_user, client, count, django_assert_max_num_queries):
    other = make_tenant("globex")
    user = make_user("multi", tenant=acme, role=Role.MANAGER)
    TenantMembership.objects.create(tenant=other, user=user, role=Role.VIEWER)
    client.force_login(user)
    now = timezone.now()
    sellers = Seller.objects.bulk_create(
        [Seller(tenant=acme if i % 2 else other, name=f"Seller {i:04d}", selling_partner_id=f"SP{i:06d}") for i in range(count)]
    )
    Grant.objects.bulk_create(
        [
            Grant(seller=s, refresh_token=f"Atzr|bulk-{s.pk}-abcdefghijkl", access_token=f"Atza|bulk-{s.pk}-abcdefghijkl",
                  access_token_expires_at=now + timedelta(minutes=30), granted_scopes=[ORDERS], authorized_at=now,
                  last_refreshed_at=now)
            for s in sellers
        ]
    )
    Event.objects.bulk_create([Event(tenant_id=s.tenant_id, seller=s, kind=Event.Kind.GRANTED) for s in sellers for _ in range(3)])
    for params in ({}, {"granted": ORDERS}, {"missing": INVENTORY, "q": "Seller"}, {"all": ""}, {"o": "-7"}):
        with django_assert_max_num_queries(10):
            response = client.get(reverse(CHANGELIST), params)
        assert response.status_code == 200
    assert f"Seller {count - 1:04d}" in response.content.decode()


def test_changelist_never_decrypts_tokens(acme, manager, client, monkeypatch):
    make_grant(make_seller(acme, "Secretive"))
    from sellers import fields

    def refuse(*args, **kwargs):
        raise AssertionError("an encrypted column was decrypted for the changelist")

    monkeypatch.setattr(fields.emf, "decrypt_str", refuse)
    assert "Secretive" in listed(client)


# --- Seller page ---------------------------------------------------------------------------------


def test_seller_page_shows_grant_history_and_no_token(acme, manager, client):
    seller = make_seller(acme, "Page Seller", spid="PAGESPID")
    grant = make_grant(seller, scopes=[ORDERS], confirmed=False)
    for i in range(60):
        Event.objects.create(tenant=acme, seller=seller, kind=Event.Kind.STATUS_CHANGED, detail=f"event number {i:02d}",
                             created_at=timezone.now() - timedelta(minutes=60 - i))
    html = client.get(reverse("admin:sellers_seller_change", args=[seller.pk])).content.decode()
    assert "no (assumed from the app&#x27;s registration)" in html
    assert "spc-chip-assumed" in html
    assert grant.refresh_token not in html and grant.access_token not in html
    assert "••••" + grant.refresh_token[-4:] in html
    # Newest first, and the inline stops at 50 rows.
    assert html.index("event number 59") < html.index("event number 58")
    assert "event number 09" not in html and "event number 10" in html
    assert "No unexpired link." in html and "Create a link" in html


def test_seller_page_shows_current_link_with_copy_button(acme, manager, client):
    seller = make_seller(acme, "Linked Seller")
    invitation, _ = reauthorization_link_get_or_create(seller=seller)
    html = client.get(reverse("admin:sellers_seller_change", args=[seller.pk])).content.decode()
    assert f'value="{invitation.url}"' in html
    assert 'data-copy-target="spc-reauth-link"' in html and "admin_ext/copy.js" in html
    assert "<script>" not in html.split("</head>")[1]  # no inline script in the page body


def test_creating_a_link_needs_an_explicit_post(acme, manager, client):
    seller = make_seller(acme, "Linkless")
    url = reverse("admin:sellers_seller_reauthorization_link", args=[seller.pk])
    assert client.get(url).status_code == 200
    assert not Invitation.objects.filter(seller=seller).exists()
    response = client.post(url)
    assert response.status_code == 302
    invitation = Invitation.objects.get(seller=seller)
    assert Event.objects.get(seller=seller, kind=Event.Kind.REAUTH_LINK_CREATED).actor == "staff:manny"
    client.post(url)  # an unexpired link is kept
    assert Invitation.objects.filter(seller=seller).count() == 1
    assert invitation.url in client.get(reverse("admin:sellers_seller_change", args=[seller.pk])).content.decode()


def test_add_seller_creates_an_invitation_in_a_managed_tenant_only(acme, manager, client):
    other = make_tenant("globex")
    add_url = reverse("admin:sellers_seller_add")
    html = client.get(add_url).content.decode()
    assert "Acme Agency" in html and "Globex" not in html
    refused = client.post(add_url, {"tenant": other.pk, "name": "Smuggled", "email": "", "region": "na"})
    assert refused.status_code == 200 and not Seller.objects.filter(name="Smuggled").exists()
    response = client.post(add_url, {"tenant": acme.pk, "name": "New Seller", "email": "new@example.com", "region": "eu"}, follow=True)
    seller = Seller.objects.get(name="New Seller")
    assert (seller.tenant, seller.region, seller.status) == (acme, "eu", Seller.Status.INVITED)
    invitation = Invitation.objects.get(seller=seller)
    assert invitation.url in response.content.decode()
    assert Event.objects.get(seller=seller, kind=Event.Kind.INVITED).actor == "staff:manny"


# --- Actions -------------------------------------------------------------------------------------


def test_send_reauthorization_link_action_emails_once(acme, manager, client, mailoutbox):
    with_email = make_seller(acme, "Mail Me", email="mailme@example.com")
    make_grant(with_email)
    without = make_seller(acme, "No Mail")
    Seller.objects.filter(pk=without.pk).update(email="")
    body = act(client, "send_reauthorization_link", with_email, without).content.decode()
    assert "Links: 1 emailed, 1 without an email address (link created" in body and "already" not in body
    assert [m.to for m in mailoutbox] == [["mailme@example.com"]]
    assert Event.objects.get(seller=with_email, kind=Event.Kind.REAUTH_LINK_EMAILED).actor == "staff:manny"
    assert Invitation.objects.filter(seller=without).exists()
    body = act(client, "send_reauthorization_link", with_email).content.decode()
    assert "Links: 0 emailed, 1 already emailed earlier" in body and "without an email" not in body
    assert len(mailoutbox) == 1


def test_a_mail_server_failure_is_reported_not_recorded_and_retried_next_time(acme, manager, client, mailoutbox, monkeypatch):
    seller = make_seller(acme, "Mail Me", email="mailme@example.com")
    make_grant(seller)

    def smtp_down(self, messages):
        raise ConnectionRefusedError("mail server down")

    with monkeypatch.context() as patched:
        patched.setattr("django.core.mail.backends.locmem.EmailBackend.send_messages", smtp_down)
        response = act(client, "send_reauthorization_link", seller)
    assert response.status_code == 200
    body = response.content.decode()
    assert "0 emailed" in body and "1 email(s) could not be sent" in body
    assert not Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_EMAILED).exists()
    assert Invitation.objects.get(seller=seller).last_emailed_at is None  # the claim was given back

    body = act(client, "send_reauthorization_link", seller).content.decode()
    assert "1 emailed" in body and [m.to for m in mailoutbox] == [["mailme@example.com"]]
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_EMAILED).count() == 1


def test_two_sends_at_once_email_the_seller_once(acme, manager, mailoutbox):
    """A double click: the second request finds the link claimed by the first."""
    from sellers.services.invitations import LinkEmail, reauthorization_link_send

    seller = make_seller(acme, "Mail Me", email="mailme@example.com")
    make_grant(seller)
    invitation, _ = reauthorization_link_get_or_create(seller=seller)
    # Both requests read the link before either claimed it.
    Invitation.objects.filter(pk=invitation.pk).update(last_emailed_at=timezone.now())
    stale = Invitation.objects.get(pk=invitation.pk)
    stale.last_emailed_at = None
    with mock.patch("sellers.services.invitations.reauthorization_link_get_or_create", return_value=(stale, False)):
        _, outcome = reauthorization_link_send(seller=seller)
    assert outcome == LinkEmail.ALREADY and mailoutbox == []


def test_refresh_now_action_refreshes_at_lwa(acme, manager, client, amazon_calls):
    seller = make_seller(acme, "Fresh Seller", spid="FRESH")
    grant = make_grant(seller, expires_in=3000)
    amazon_calls.script(url_contains="/auth/o2/token", body={"access_token": "Atza|brand-new-token-0123456789", "expires_in": 3600})
    body = act(client, "refresh_now", seller, make_seller(acme, "Unconnected")).content.decode()
    assert "Refresh: 1 refreshed; 1 not authorized yet." in body
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    grant.refresh_from_db()
    assert grant.access_token == "Atza|brand-new-token-0123456789" and grant.refresh_count == 1
    assert "brand-new-token" not in body
    event = Event.objects.get(seller=seller, kind=Event.Kind.REFRESH_REQUESTED)
    assert event.actor == "staff:manny" and event.data == {"outcome": "refreshed"} and "Atza" not in event.detail


def test_refresh_now_reports_revocation(acme, manager, client, amazon_calls):
    seller = make_seller(acme, "Gone Seller")
    make_grant(seller)
    amazon_calls.lwa_error("invalid_grant", description="User may have revoked or didn't grant the permission")
    body = act(client, "refresh_now", seller).content.decode()
    assert "1 revoked" in body
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED


def test_test_connection_action_shows_marketplaces_and_records_the_test(acme, manager, client, amazon_calls):
    seller = make_seller(acme, "Connected Seller", spid="CONN1")
    make_grant(seller)
    amazon_calls.script(
        url_contains="/sellers/v1/marketplaceParticipations",
        body={"payload": [{"marketplace": {"id": "ATVPDKIKX0DER", "countryCode": "US", "name": "Amazon.com"},
                           "participation": {"isParticipating": True}}]},
    )
    body = act(client, "test_connection", seller).content.decode()
    assert "Connected Seller: connected. Marketplaces: Amazon.com (US)" in body
    assert "1 connected, 0 failed" in body
    event = Event.objects.get(seller=seller, kind=Event.Kind.CONNECTION_TESTED)
    assert event.actor == "staff:manny" and event.data == {"ok": True, "marketplaces": ["Amazon.com (US)"]}
    assert [c.url.split("/spapi/")[-1] for c in amazon_calls.spapi_calls] == ["na/sellers/v1/marketplaceParticipations"]


def test_test_connection_reports_a_revoked_seller(acme, manager, client, amazon_calls):
    seller = make_seller(acme, "Revoked Seller")
    make_grant(seller)
    # The sandbox knows neither token: SP-API says 403, the refresh says invalid_grant.
    body = act(client, "test_connection", seller).content.decode()
    assert "must re-authorize" in body and "0 connected, 1 failed" in body
    event = Event.objects.get(seller=seller, kind=Event.Kind.CONNECTION_TESTED)
    assert event.data["ok"] is False
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED


def test_test_connection_leaves_a_seller_who_never_connected_as_they_are(acme, manager, client, amazon_calls):
    """Nothing to test, and no new link behind staff's back: a declined seller stays declined."""
    seller = make_seller(acme, "Said No")
    Seller.objects.filter(pk=seller.pk).update(status=Seller.Status.DECLINED)

    body = act(client, "test_connection", seller).content.decode()

    assert "0 connected, 0 failed, 1 not authorized yet (nothing to test)" in body
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.DECLINED
    assert not Invitation.objects.filter(seller=seller).exists()
    assert amazon_calls.calls == []


def test_an_error_naming_a_link_does_not_re_invite_a_seller_who_declined(acme, amazon_calls):
    """A program asking for a seller who declined gets a link to send, and the status still says declined."""
    from sellers.services.tokens import reauthorization_required

    seller = make_seller(acme, "Said No Too")
    Seller.objects.filter(pk=seller.pk).update(status=Seller.Status.DECLINED)
    seller.refresh_from_db()

    error = reauthorization_required(seller=seller, reason="")

    assert error.never_authorized and error.link.seller_id == seller.pk
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.DECLINED
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_CREATED).count() == 1


def test_mark_revoked_action(acme, manager, client):
    seller = make_seller(acme, "Marked Seller")
    grant = make_grant(seller)
    pending = make_seller(acme, "Pending One")
    confirm = act(client, "mark_revoked", seller, pending).content.decode()
    assert "Mark grants revoked?" in confirm and "Marked Seller" in confirm and 'name="post" value="yes"' in confirm
    assert Grant.objects.get(pk=grant.pk).status == Grant.Status.ACTIVE  # nothing before confirmation
    body = act(client, "mark_revoked", seller, pending, post="yes", reason="Seller left   the agency").content.decode()
    assert "Marked revoked: 1; 1 already revoked or not authorized" in body
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.access_token == ""
    event = Event.objects.get(seller=seller, kind=Event.Kind.MARKED_REVOKED)
    assert event.actor == "staff:manny" and event.detail == "Marked revoked in the admin by manny: Seller left the agency"
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED


def test_export_csv_action(acme, manager, client):
    seller = make_seller(acme, "Csv Seller", spid="CSVSPID")
    grant = make_grant(seller, scopes=[ORDERS])
    response = act(client, "export_csv", seller, follow=False)
    assert response["Content-Type"].startswith("text/csv")
    content = response.content.decode()
    rows = list(csv.DictReader(io.StringIO(content)))
    assert len(rows) == 1
    assert rows[0]["name"] == "Csv Seller" and rows[0]["granted_scopes"] == ORDERS
    assert rows[0]["missing_scopes"] == INVENTORY and rows[0]["status"] == "partial"
    assert grant.refresh_token not in content and grant.access_token not in content
    event = Event.objects.get(tenant=acme, kind=Event.Kind.EXPORTED)
    assert (event.seller, event.actor, event.data) == (None, "staff:manny", {"sellers": 1})


def test_select_across_acts_on_every_row_of_the_users_tenants(acme, manager, client):
    other = make_tenant("globex")
    mine = [make_seller(acme, f"Mine {i}") for i in range(3)]
    for seller in mine:
        make_grant(seller)
    theirs = make_seller(other, "Theirs")
    their_grant = make_grant(theirs)
    client.post(reverse(CHANGELIST), {"action": "mark_revoked", "select_across": "1", "index": 0,
                                      "_selected_action": [mine[0].pk], "post": "yes"})
    assert Grant.objects.filter(seller__in=mine, status=Grant.Status.REVOKED).count() == 3
    their_grant.refresh_from_db()
    assert their_grant.status == Grant.Status.ACTIVE


def test_test_connection_keeps_the_account_fingerprint_for_later_identity_checks(acme, manager, client, amazon_calls):
    seller = make_seller(acme, "Connected Seller", spid="CONN1")
    grant = make_grant(seller)
    assert grant.account_fingerprint == {}
    amazon_calls.script(
        url_contains="/sellers/v1/marketplaceParticipations",
        body={"payload": [{"marketplace": {"id": "ATVPDKIKX0DER"}, "storeName": "Connected Store"}]},
    )
    act(client, "test_connection", seller)
    grant.refresh_from_db()
    assert grant.account_fingerprint == {"region": "na", "store_names": ["Connected Store"], "marketplaces": ["ATVPDKIKX0DER"]}
    assert grant.account_checked_at is not None
