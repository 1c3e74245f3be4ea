"""The admin index dashboard: per tenant, server-rendered SVG, constant queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from sellers.admin_dashboard import dashboards_for
from sellers.admin_html import svg_bars
from sellers.models import Grant, TenantMembership
from sellers.services.status import seller_status_sync
from sellers.tenancy import tenant_access
from tests.conftest import INVENTORY, ORDERS, make_grant, make_seller, make_tenant

Role = TenantMembership.Role


def populate(tenant, n: int, prefix: str = "S"):
    for i in range(n):
        seller = make_seller(tenant, f"{prefix}{i}")
        if i % 4 == 0:
            continue  # invited, never connected
        scopes = [ORDERS, INVENTORY] if i % 4 != 1 else [ORDERS]
        grant = make_grant(seller, scopes=scopes, authorized_days_ago=350 if i % 4 == 3 else 10)
        if i % 8 == 2:
            Grant.objects.filter(pk=grant.pk).update(failing_since=timezone.now(), consecutive_failures=3)
            seller_status_sync(seller=seller, record=False)


@pytest.fixture
def acme(db):
    return make_tenant("acme", name="Acme Agency")


def test_dashboard_counts(acme, make_user):
    populate(acme, 8)
    boards, visible = dashboards_for(tenant_access(make_user("root", superuser=True)))
    assert visible == 1
    board = boards[0]
    statuses = dict((value, n) for value, _, n in board.by_status)
    assert statuses["invited"] == 2 and statuses["partial"] == 2 and board.total == 8
    assert board.authorized == 6
    assert dict(board.scopes) == {ORDERS: 6, INVENTORY: 4}
    assert board.renewals_total == 2  # authorized 350 days ago: due in 15 days
    assert board.failing == 1


def test_dashboard_shows_refresh_tasks_lost_in_the_last_hour(acme, make_user, client):
    populate(acme, 4)
    now = timezone.now()
    grants = list(Grant.objects.filter(seller__tenant=acme).order_by("pk"))
    Grant.objects.filter(pk=grants[0].pk).update(refresh_lost_at=now - timedelta(minutes=10))
    Grant.objects.filter(pk=grants[1].pk).update(refresh_claimed_until=now - timedelta(minutes=1))
    Grant.objects.filter(pk=grants[2].pk).update(refresh_lost_at=now - timedelta(hours=2))
    [board], _ = dashboards_for(tenant_access(make_user("root", superuser=True)))
    assert board.refresh_lost == 2
    client.force_login(make_user("vi", tenant=acme, role=Role.VIEWER))
    html = client.get(reverse("admin:index")).content.decode()
    assert "2 refresh tasks lost in the last hour" in html


def test_dashboard_on_the_index_for_each_visible_tenant_only(acme, make_user, client):
    other = make_tenant("globex", name="Globex Agency")
    populate(acme, 4)
    populate(other, 4, prefix="G")
    client.force_login(make_user("vi", tenant=acme, role=Role.VIEWER))
    html = client.get(reverse("admin:index")).content.decode()
    assert html.count('<table class="spc-bars">') == 4  # status, funnel, scopes, next 30 days
    assert "Acme Agency" in html and "Globex" not in html
    assert "admin_ext/admin.css" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script on the index"
    # Nothing loaded from another origin (a CDN): every src and href is local.
    assert not re.search(r'\b(?:src|href)="(?:https?:)?//', html), "asset from another origin"


def test_dashboard_query_count_does_not_grow(acme, make_user, client, django_assert_max_num_queries):
    user = make_user("root", superuser=True)
    client.force_login(user)
    other = make_tenant("globex")
    populate(acme, 4)
    populate(other, 4, prefix="G")
    with django_assert_max_num_queries(12) as small:
        client.get(reverse("admin:index"))
    populate(make_tenant("initech"), 40, prefix="I")
    populate(acme, 40, prefix="T")
    with django_assert_max_num_queries(12) as large:
        assert "Initech" in client.get(reverse("admin:index")).content.decode()
    assert len(large.captured_queries) == len(small.captured_queries)


def test_svg_bars_escape_labels_and_scale():
    svg = svg_bars([("<b>x</b>", 5, "a"), ("y", 10, "b")], title="t&t")
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "t&amp;t" in svg
    widths = [int(w) for w in re.findall(r'class="spc-bar" x="\d+" y="\d+" width="(\d+)"', svg)]
    assert widths[1] == 2 * widths[0]


# --- Every count links to the list it counts -------------------------------------------------

COUNT_LINK = re.compile(r'<a href="(/admin/sellers/seller/\?[^"]*)" aria-label="([^"]+): (\d+)')


def rows_listed(client, url: str) -> int:
    return client.get(url.replace("&amp;", "&")).content.decode().count('class="field-name"')


def onboarding(tenant, name: str, status: str, *, days_ago: int = 1, kinds=()):
    from sellers.models import Event, Seller

    seller = make_seller(tenant, name)
    Seller.objects.filter(pk=seller.pk).update(status=status, created_at=timezone.now() - timedelta(days=days_ago))
    for kind in kinds:
        Event.objects.create(tenant=tenant, seller=seller, kind=kind)
    return seller


@pytest.mark.parametrize("multi", [False, True])
def test_every_dashboard_count_links_to_a_list_of_exactly_those_sellers(acme, make_user, client, multi):
    populate(acme, 12)
    onboarding(acme, "Opened", "opened", kinds=["link_opened"])
    onboarding(acme, "Went", "at_amazon", kinds=["link_opened", "consent_started"])
    onboarding(acme, "Came Back", "opened", kinds=["link_opened", "consent_started", "consent_error"])
    onboarding(acme, "Invited Again", "invited", kinds=["link_opened", "consent_started", "denied", "reauth_link_created"])
    onboarding(acme, "Said No", "declined", kinds=["link_opened", "consent_started", "denied"])
    onboarding(acme, "Lapsed", "link_expired", kinds=["link_expired"])
    onboarding(acme, "Old Invite", "invited", days_ago=40)
    user = make_user("olga", tenant=acme, role=Role.OWNER)
    if multi:  # staff of two tenants get the tenant filter in every link, and never the other's sellers
        other = make_tenant("globex", name="Globex Agency")
        populate(other, 6, prefix="G")
        TenantMembership.objects.create(tenant=other, user=user, role=Role.VIEWER)
    client.force_login(user)
    html = client.get(reverse("admin:index")).content.decode()
    links = COUNT_LINK.findall(html)
    assert len(links) >= 20
    for url, label, shown in links:
        assert ("tenant=" in url) == multi, url
        assert rows_listed(client, url) == int(shown), f"{label}: {url}"
    acme_links = dict((label, int(n)) for url, label, n in links if not multi or f"tenant={acme.pk}" in url)
    assert [acme_links[k] for k in ("Invited", "Opened the link", "Went to Amazon", "Connected", "Declined", "Link expired")] \
        == [18, 14, 13, 9, 1, 1]


def test_needs_attention_names_each_seller_with_its_next_step(acme, make_user, client):
    populate(acme, 8)  # S1, S5 partial; S2 failing; S3 renewal due in 15 days
    onboarding(acme, "Said No", "declined", kinds=["denied"])
    onboarding(acme, "Lapsed", "link_expired")
    due = make_seller(acme, "Due Soon")
    make_grant(due, authorized_days_ago=362)
    client.force_login(make_user("vi", tenant=acme, role=Role.VIEWER))
    html = client.get(reverse("admin:index")).content.decode()
    attention = html.split("Needs attention", 1)[1].split("</table>", 1)[0]
    row = r'<td><a href="/admin/sellers/seller/(\d+)/change/">([^<]+)</a></td>\s*<td><span[^>]*>([^<]+)</span></td>\s*<td>([^<]+)</td>'
    named = re.findall(row, attention)
    assert [(name, why) for _, name, why, _ in named] == [
        ("S2", "Failing"), ("Said No", "Declined"), ("Lapsed", "Link expired"), ("S5", "Partial"), ("S1", "Partial"),
        ("Due Soon", "Renewal due"),
    ]
    steps = {name: step for _, name, _, step in named}
    assert steps["Said No"].startswith("Ask the seller why they declined") and steps["Lapsed"] == "Send a new link."
    assert "Renewal due" in steps["Due Soon"] and "S3" not in steps  # due in 15 days: not yet


def test_recent_history_lists_sellers_steps_of_the_users_tenants_only(acme, make_user, client):
    from sellers.models import Event

    mine = onboarding(acme, "Said No", "declined")
    Event.objects.create(tenant=acme, seller=mine, kind=Event.Kind.DENIED, actor="seller")
    other = make_tenant("globex", name="Globex Agency")
    theirs = onboarding(other, "Their Shop", "declined")
    Event.objects.create(tenant=other, seller=theirs, kind=Event.Kind.DENIED, actor="seller")
    client.force_login(make_user("vi", tenant=acme, role=Role.VIEWER))
    recent = client.get(reverse("admin:index")).content.decode().split("Recent history", 1)[1].split("</ul>", 1)[0]
    assert f'<a href="/admin/sellers/seller/{mine.pk}/change/">Said No</a>: Declined at Amazon' in recent
    assert "Their Shop" not in recent and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", recent)
