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
    assert "2 refresh tasks lost in the last hour" in html and "Refresh tasks lost, 1 h" in html


def test_dashboard_on_the_index_for_each_visible_tenant_only(acme, make_user, client):
    other = make_tenant("globex", name="Globex Agency")
    populate(acme, 4)
    populate(other, 4, prefix="G")
    client.force_login(make_user("vi", tenant=acme, role=Role.VIEWER))
    html = client.get(reverse("admin:index")).content.decode()
    assert html.count('<svg class="spc-chart"') == 3
    assert "Acme Agency" in html and "Globex" not in html
    assert "admin_ext/admin.css" in html
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script on the index"
    assert "cdn" not in html.lower()


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
