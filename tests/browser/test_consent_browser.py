"""A seller's consent journeys in Chromium: partial then full approval, and a refusal."""

from __future__ import annotations

import pytest

from sellers.models import Event, Grant, Seller
from sellers.scopes import CATALOG
from sellers.services.invitations import invitation_create

from ..conftest import INVENTORY, ORDERS, REPORTS
from .conftest import check_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SPID = "A1BROWSERSHOP"


def approve(page, *, keep: list[str]) -> None:
    """On the sandbox's consent page: name the account, tick exactly `keep`, confirm."""
    page.get_by_label("Selling partner ID (merchant token)").fill(SPID)
    for box in page.locator('input[type="checkbox"][name="scope"]').all():
        box.set_checked(box.get_attribute("value") in keep)
    page.get_by_role("button", name="Confirm").click()


def test_partial_approval_names_what_is_missing_then_a_retry_completes(page, shots, tenant):
    invitation = invitation_create(tenant=tenant, name="Browser Shop", email="shop@example.com")

    page.goto(invitation.url)
    assert page.get_by_role("heading", level=1).inner_text() == "Connect your Amazon seller account"
    check_page(page, shots, "invite")

    page.get_by_role("button", name="Continue to Amazon").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    assert page.get_by_role("heading", level=1).inner_text() == f"Authorize {tenant.name}"
    check_page(page, shots, "sandbox-consent")

    approve(page, keep=[ORDERS])
    page.wait_for_url("**/authflow/result/")
    assert page.get_by_role("heading", level=1).inner_text() == "Connected, but some permissions are missing"
    missing = page.locator(".scope-missing .scope-name").all_inner_texts()
    assert missing == [CATALOG[INVENTORY].label]
    check_page(page, shots, "result-partial")
    grant = Grant.objects.get(seller__selling_partner_id=SPID)
    assert grant.granted_scopes == [ORDERS]

    page.get_by_role("button", name="Try again and grant the missing permissions").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    approve(page, keep=[ORDERS, INVENTORY, REPORTS])
    page.wait_for_url("**/authflow/result/")
    assert "you're all set" in page.get_by_role("heading", level=1).inner_text()
    assert page.locator(".scope-missing").count() == 0
    check_page(page, shots, "result-success")

    seller = Seller.objects.get(selling_partner_id=SPID)
    assert seller.status == Seller.Status.ACTIVE
    assert sorted(Grant.objects.get(seller=seller).granted_scopes) == sorted([ORDERS, INVENTORY, REPORTS])
    assert Seller.objects.filter(tenant=tenant).count() == 1  # the retry reused the seller


def test_declining_shows_the_decline_page_and_its_retry_button_works(page, shots, tenant):
    invitation = invitation_create(tenant=tenant, name="Shy Shop")
    page.goto(invitation.url)
    page.get_by_role("button", name="Continue to Amazon").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url("**/authflow/callback/?**")

    assert page.get_by_role("heading", level=1).inner_text() == "You declined the connection"
    assert f"Nothing was shared with {tenant.name}" in page.get_by_role("status").inner_text()
    check_page(page, shots, "declined")
    seller = invitation.seller
    assert not Grant.objects.filter(seller=seller).exists()
    assert Event.objects.filter(seller=seller, kind=Event.Kind.DENIED).count() == 1

    page.get_by_role("button", name="Try again").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    shots.take(page, "consent-again")
    assert page.get_by_role("heading", level=1).inner_text() == f"Authorize {tenant.name}"


def test_error_pages_are_accessible_too(page, shots, live_amazon):
    page.goto(f"{live_amazon}/connect/no-such-link/")
    assert page.get_by_role("heading", level=1).inner_text() == "Link not found"
    check_page(page, shots, "link-not-found")
    page.goto(f"{live_amazon}/authflow/callback/?state=forged&spapi_oauth_code=ANforged")
    assert page.get_by_role("heading", level=1).inner_text() == "This connection attempt cannot be used"
    check_page(page, shots, "callback-rejected")
    page.goto(f"{live_amazon}/no-such-page/")
    assert page.get_by_role("heading", level=1).inner_text() == "Page not found"
    check_page(page, shots, "not-found")


def test_pages_seen_again_reload_back_and_reopen(page, shots, tenant):
    """A reload of the decline page, Back and Confirm after connecting, and the link reopened after
    a partial grant and after connecting: each says where the seller stands, under the agency's name."""
    invitation = invitation_create(tenant=tenant, name="Returning Shop")
    page.goto(invitation.url)
    page.get_by_role("button", name="Continue to Amazon").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    page.get_by_role("button", name="Deny").click()
    page.wait_for_url("**/authflow/callback/?**")
    page.reload()
    assert page.get_by_role("heading", level=1).inner_text() == "You declined the connection"
    assert page.locator(".brand").inner_text() == tenant.name
    check_page(page, shots, "declined-reloaded")

    # Try again, grant only part: reopening the link names what is missing.
    page.get_by_role("button", name="Try again").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    approve(page, keep=[ORDERS])
    page.wait_for_url("**/authflow/result/")
    page.goto(invitation.url)
    assert page.locator(".scope-missing-name").all_inner_texts() == [CATALOG[INVENTORY].label]
    check_page(page, shots, "invite-after-partial")

    # Grant everything, then Back to Amazon's page and Confirm again: the result, not an error.
    page.get_by_role("button", name="Continue to Amazon").click()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    approve(page, keep=[ORDERS, INVENTORY])
    page.wait_for_url("**/authflow/result/")
    assert "you're all set" in page.get_by_role("heading", level=1).inner_text()
    page.go_back()
    page.wait_for_url("**/sandbox/na/apps/authorize/consent?**")
    approve(page, keep=[ORDERS, INVENTORY])
    page.wait_for_url("**/authflow/result/")
    assert "you're all set" in page.get_by_role("heading", level=1).inner_text()
    assert page.get_by_role("button", name="Try again").count() == 0

    page.goto(invitation.url)
    assert page.get_by_role("heading", level=1).inner_text() == "You're already connected"
    assert page.locator(".notice-error").count() == 0 and page.locator(".brand").inner_text() == tenant.name
    check_page(page, shots, "already-connected")
    assert Seller.objects.get(pk=invitation.seller_id).status == Seller.Status.ACTIVE


def test_a_button_address_opened_directly_gets_a_page_not_a_blank(page, shots, live_amazon):
    response = page.goto(f"{live_amazon}/connect/no-such-link/start/")
    assert response is not None and response.status == 405
    assert page.get_by_role("heading", level=1).inner_text() == "This page cannot be opened this way"
    check_page(page, shots, "method-not-allowed")
    icon = page.request.get(f"{live_amazon}/favicon.ico")
    assert icon.status == 200 and icon.body()[:4] == b"\x00\x00\x01\x00"
