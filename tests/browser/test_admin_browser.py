"""Agency staff in Chromium: log in, filter revoked sellers, email them re-authorization links."""

from __future__ import annotations

import pytest

from sellers.models import Event, Invitation, Seller
from sellers.services.grants import grant_mark_revoked

from ..conftest import make_grant, make_seller, shows_token

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_staff_sends_reauthorization_links_to_revoked_sellers(page, shots, live_amazon, tenant, make_user, mailoutbox):
    owner = make_user("agency-owner", tenant=tenant)
    revoked = []
    for name, spid in (("Gone Gadgets", "A1GONE1"), ("Lapsed Lamps", "A1GONE2")):
        seller = make_seller(tenant, name, spid=spid)
        make_grant(seller)
        assert grant_mark_revoked(seller=seller, reason="invalid_grant on refresh", actor="amazon")
        revoked.append(Seller.objects.get(pk=seller.pk))
    active = make_seller(tenant, "Happy Hats", spid="A1HAPPY")
    make_grant(active)
    mailoutbox.clear()  # staff were told about the revocations; only the sellers' mail counts below

    page.goto(f"{live_amazon}/admin/sellers/seller/")
    page.wait_for_url("**/admin/login/?next=**")
    page.get_by_label("Username").fill(owner.username)
    page.get_by_label("Password").fill("pw-agency-owner")
    shots.take(page, "admin-login")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/admin/sellers/seller/")
    shots.take(page, "sellers-all")
    assert page.locator("#result_list tbody tr").count() == 3

    page.locator("#changelist-filter").get_by_role("link", name="Revoked", exact=True).first.click()
    page.wait_for_url("**status__exact=revoked**")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() == 2
    listed = "\n".join(rows.all_inner_texts())
    assert "Gone Gadgets" in listed and "Lapsed Lamps" in listed and "Happy Hats" not in listed
    shots.take(page, "sellers-revoked")

    page.locator("#action-toggle").check()
    page.locator("select[name=action]").select_option("send_reauthorization_link")
    page.locator("button[name=index]").click()  # the admin's "Go"
    page.wait_for_load_state()
    message = page.locator(".messagelist").inner_text()
    shots.take(page, "links-sent")
    assert "2 emailed" in message, message

    assert sorted(m.to[0] for m in mailoutbox) == sorted(s.email for s in revoked)
    for mail in mailoutbox:
        seller = next(s for s in revoked if s.email == mail.to[0])
        link = Invitation.objects.get(seller=seller, purpose=Invitation.Purpose.REAUTHORIZATION)
        assert link.url in mail.body
        assert not shows_token(mail.body)
    assert Event.objects.filter(kind=Event.Kind.REAUTH_LINK_EMAILED, seller__in=revoked).count() == 2
    assert not Invitation.objects.filter(seller=active, purpose=Invitation.Purpose.REAUTHORIZATION).exists()
