"""Agency staff in Chromium on the onboarding workspace: the dashboard's counts lead to their
lists, the funnel, a seller's page and its buttons, re-sending a link, and a declined seller and
an expired link as staff see them. Each page passes axe-core at 1280 and 375 px (`check_page`),
and the dashboard, the sellers list and a seller page are kept as screenshots."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sellers.models import Event, Grant, Invitation, Seller, TenantMembership
from sellers.services.invitations import invitation_create
from sellers.services.status import onboarding_links_expire

from ..conftest import make_grant, make_seller
from ..test_tokens import connected
from .conftest import AXE, DESKTOP, PHONE, check_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
Role = TenantMembership.Role


def check_both(page, shots, name: str) -> None:
    """`check_page` (axe at 1280 px, no sideways scrolling at 375 px), then axe again at 375 px:
    the narrow layout must pass too."""
    check_page(page, shots, name)
    page.set_viewport_size(PHONE)
    try:
        page.add_script_tag(path=str(AXE))
        serious = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
                .filter(v => v.impact === "serious" || v.impact === "critical")
                .map(v => ({id: v.id, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}))"""
        )
    finally:
        page.set_viewport_size(DESKTOP)
    assert not serious, f"{name} at 375 px: accessibility violations {serious}"


def log_in(page, base: str, user, password: str, *, to: str = "/admin/") -> None:
    page.goto(f"{base}{to}")
    page.wait_for_url("**/admin/login/?next=**")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def rows(page) -> list[str]:
    return page.locator("#result_list tbody tr").all_inner_texts()


def names(page) -> list[str]:
    return [n.strip() for n in page.locator("#result_list tbody .field-name").all_inner_texts()]


def every_column_visible(page) -> list:
    """[] when the list's table fits its column (nothing cut off or scrolled sideways at this
    width), else its width, its column's and its right edge."""
    return page.evaluate(
        """() => {
            const table = document.querySelector('#result_list');
            const box = document.querySelector('#changelist .results') || table.parentElement;
            const right = table.getBoundingClientRect().right;
            return table.scrollWidth <= box.clientWidth + 1 && right <= window.innerWidth ? []
                : [table.scrollWidth, box.clientWidth, right];
        }"""
    )


def declined_by_the_seller(page, base: str, invitation: Invitation) -> None:
    page.goto(invitation.url)
    page.get_by_role("button", name="Continue to Amazon").click()
    page.get_by_role("button", name="Deny").click()
    page.wait_for_load_state()


def test_dashboard_counts_and_funnel_lead_to_their_lists(page, shots, live_amazon, tenant, make_user):
    owner = make_user("olga", tenant=tenant)
    for i in range(5):  # Amazon's ids are 13 or 14 characters long
        make_grant(make_seller(tenant, f"Connected Outdoor Goods {i}", spid=f"A2EUQ1WTGCTB{i:02d}"))
    partial = make_seller(tenant, "Half Shop", spid="A1HALFSHOP0042")
    make_grant(partial, scopes=("sellingpartnerapi::orders",))
    invitation_create(tenant=tenant, name="Never Opened", email="never@example.com")
    declined_by_the_seller(page, live_amazon, invitation_create(tenant=tenant, name="Said No", email="no@example.com"))
    lapsed = invitation_create(tenant=tenant, name="Lapsed Link", email="lapsed@example.com")
    Invitation.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    assert onboarding_links_expire() == 1

    log_in(page, live_amazon, owner, "pw-olga")
    assert page.get_by_role("heading", name="Needs attention").count() == 1
    check_both(page, shots, "dashboard")

    # Funnel: invited 9 (all created today) → opened 7 → at Amazon 7 → connected 6; declined and expired beside.
    funnel = {label: int(n) for label, n in page.locator("table.spc-bars a[aria-label]").evaluate_all(
        "links => links.filter(a => a.href.includes('funnel=')).map(a => a.getAttribute('aria-label').split(': '))"
    )}
    assert funnel == {"Invited": 9, "Opened the link": 7, "Went to Amazon": 7, "Connected": 6, "Declined": 1, "Link expired": 1}

    counts = page.locator(".spc-dashboard a[aria-label], .spc-attention-counts a").evaluate_all(
        "links => links.map(a => [a.href, a.getAttribute('aria-label') || a.textContent])"
    )
    assert len(counts) >= 25
    for href, label in counts:
        expected = int(label.rsplit(":", 1)[1].split("/")[0])
        page.goto(href)
        assert len(rows(page)) == expected, f"{label} → {href}"

    page.goto(f"{live_amazon}/admin/")
    page.locator(".spc-attention-counts").get_by_role("link", name="Declined: 1").click()
    page.wait_for_url("**status__exact=declined**")
    assert names(page) == ["Said No"]
    page.goto(f"{live_amazon}/admin/")
    page.locator("a[aria-label='Went to Amazon: 7']").click()
    page.wait_for_url("**funnel=at_amazon**")
    assert "Never Opened" not in "\n".join(rows(page)) and len(rows(page)) == 7

    page.goto(f"{live_amazon}/admin/sellers/seller/")
    assert len(rows(page)) == 9
    assert every_column_visible(page) == []
    assert page.locator("#result_list th.column-tenant_name").count() == 0
    assert "1/2 required" in page.locator("#result_list").inner_text()
    check_both(page, shots, "sellers-list")


def test_seller_page_buttons_and_resending_the_link(page, shots, live_amazon, tenant, make_user, mailoutbox):
    manager = make_user("manny", tenant=tenant, role=Role.MANAGER)
    seller, _ = connected(tenant, "Button Shop")
    Seller.objects.filter(pk=seller.pk).update(email="buttons@example.com")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_amazon)
    log_in(page, live_amazon, manager, "pw-manny", to=f"/admin/sellers/seller/{seller.pk}/change/")
    headline = page.locator("#spc-headline").inner_text()
    assert headline.endswith("next: nothing to do.")
    assert page.locator(".historylink").count() == 0
    check_both(page, shots, "seller-page")

    page.get_by_role("link", name="Email the link…").click()
    assert "buttons@example.com" in page.locator("#content-main").inner_text()
    page.get_by_role("button", name="Yes, email the link").click()
    assert "Link emailed to buttons@example.com." in page.locator(".messagelist").inner_text()
    page.get_by_role("link", name="Re-send the link…").click()
    page.get_by_role("button", name="Yes, re-send the link").click()
    assert "Link emailed to buttons@example.com." in page.locator(".messagelist").inner_text()
    link = Invitation.objects.get(seller=seller)
    assert [m.to for m in mailoutbox] == [["buttons@example.com"]] * 2 and all(link.url in m.body for m in mailoutbox)
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_EMAILED, actor="staff:manny").count() == 2

    page.get_by_role("button", name="Copy link").click()
    assert page.evaluate("() => navigator.clipboard.readText()") == link.url

    page.get_by_role("button", name="Refresh now").click()
    assert "Refresh: 1 refreshed" in page.locator(".messagelist").inner_text()
    page.get_by_role("button", name="Test connection").click()
    assert "Button Shop: connected." in page.locator(".messagelist").inner_text()
    shots.take(page, "seller-page-after-actions")

    page.get_by_role("link", name="Mark revoked…").click()
    page.get_by_label("Reason (kept in the history):").fill("Left the agency")
    page.get_by_role("button", name="Yes, mark revoked").click()
    assert Grant.objects.get(seller=seller).status == Grant.Status.REVOKED
    assert "next: send a re-authorization link" in page.locator("#spc-headline").inner_text()
    assert page.get_by_role("button", name="Refresh now").count() == 0  # nothing left to refresh

    viewer = make_user("vi", tenant=tenant, role=Role.VIEWER)
    page.context.clear_cookies()
    log_in(page, live_amazon, viewer, "pw-vi", to=f"/admin/sellers/seller/{seller.pk}/change/")
    assert page.locator("#spc-headline").count() == 1 and page.locator(".spc-actions").count() == 0


def test_a_declined_seller_and_an_expired_link_as_staff_see_them(page, shots, live_amazon, tenant, make_user, mailoutbox):
    manager = make_user("manny", tenant=tenant, role=Role.MANAGER)
    said_no = invitation_create(tenant=tenant, name="Said No", email="no@example.com")
    declined_by_the_seller(page, live_amazon, said_no)
    lapsed = invitation_create(tenant=tenant, name="Lapsed Link", email="lapsed@example.com")
    Invitation.objects.filter(pk=lapsed.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    onboarding_links_expire()

    log_in(page, live_amazon, manager, "pw-manny", to="/admin/sellers/seller/")
    listed = dict(zip(names(page), rows(page), strict=True))
    assert "Declined" in listed["Said No"] and "Link expired" in listed["Lapsed Link"]

    page.get_by_role("link", name="Said No").click()
    headline = page.locator("#spc-headline").inner_text()
    assert headline.startswith("Last: Declined at Amazon (The seller declined on Amazon's consent page)")
    assert headline.endswith("next: ask the seller why they declined, then re-send the link.")
    assert "Declined" in page.locator(".field-status_col").inner_text()
    check_both(page, shots, "declined-seller")

    page.goto(f"{live_amazon}/admin/sellers/seller/{lapsed.seller.pk}/change/")
    assert page.locator("#spc-headline").inner_text().endswith("next: send a new link.")
    assert "No unexpired link." in page.locator(".field-reauthorization_link").inner_text()
    page.get_by_role("link", name="Email the link…").click()
    assert "a new link" in page.locator("#content-main").inner_text()
    page.get_by_role("button", name="Yes, email the link").click()
    new_link = Invitation.objects.filter(seller=lapsed.seller).order_by("-created_at").first()
    assert new_link.pk != lapsed.pk and new_link.url in mailoutbox[-1].body
    assert Seller.objects.get(pk=lapsed.seller.pk).status == Seller.Status.INVITED
    assert "Invited" in page.locator(".field-status_col").inner_text()
    check_both(page, shots, "expired-link-resent")

    page.goto(f"{live_amazon}/admin/sellers/event/")
    assert every_column_visible(page) == []
    assert "Declined at Amazon" in page.locator("#result_list").inner_text()
    check_both(page, shots, "history-list")
