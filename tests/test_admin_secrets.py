"""No token or secret in any admin page: crawl everything each persona can reach and search it."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import urljoin, urlparse

import pytest
from django.urls import reverse

from sellers.models import Event, Grant, Tenant, TenantMembership
from sellers.services.events import event_record
from sellers.services.invitations import reauthorization_link_get_or_create
from tests.conftest import make_grant, make_seller, make_tenant

Role = TenantMembership.Role
MAX_PAGES = 400
TYPED_WEBHOOK_SECRET = "whsec_dHlwZWQtd2ViaG9vay00MjQyLXR5cGVkLXdlYmhvb2s="
HREF = re.compile(r'href="([^"#]+)"')


@pytest.fixture
def world(db, make_user):
    a = make_tenant("acme", name="Acme Agency")
    b = make_tenant("globex", name="Globex Agency")
    for tenant in (a, b):
        tenant.webhook_secret = f"whsec-{tenant.slug}-5f5f5f5f5f5f"
        tenant.previous_client_secret = f"previous-secret-{tenant.slug}-7e7e7e7e"
        tenant.save()
    sellers = []
    for tenant, prefix in ((a, "A"), (b, "B")):
        for i in range(2):
            seller = make_seller(tenant, f"{tenant.slug} seller {i}", spid=f"{prefix}SPID{i}")
            grant = make_grant(seller)
            grant.mws_auth_token = f"amzn.mws.{seller.pk}-4d4d4d4d-secret"
            grant.save()
            event_record(seller=seller, kind=Event.Kind.GRANTED, detail="Authorized.")
            sellers.append(seller)
        make_seller(tenant, f"{tenant.slug} pending")
    reauthorization_link_get_or_create(seller=sellers[0])
    return {
        "a": a,
        "b": b,
        "owner_a": make_user("olivia", tenant=a, role=Role.OWNER),
        "viewer_a": make_user("victor", tenant=a, role=Role.VIEWER),
        "manager_b": make_user("mallory", tenant=b, role=Role.MANAGER),
        "superuser": make_user("root", superuser=True),
    }


def secrets() -> list[str]:
    values = []
    for grant in Grant.objects.all():
        values += [grant.refresh_token, grant.access_token, grant.mws_auth_token]
    for tenant in Tenant.objects.all():
        values += [tenant.client_secret, tenant.previous_client_secret, tenant.webhook_secret]
    values = [v for v in values if v]
    assert len(values) >= 4 * 3 + 2 * 3
    return values


def crawl(client) -> dict[str, str]:
    """GET every /admin/ page reachable by links from the index (logout and POST-only excluded)."""
    seen: dict[str, str] = {}
    queue = [reverse("admin:index")]
    while queue and len(seen) < MAX_PAGES:
        url = queue.pop(0)
        if url in seen:
            continue
        response = client.get(url)
        assert response.status_code in (200, 302, 403), (url, response.status_code)
        body = response.content.decode(errors="replace")
        seen[url] = body
        if response.status_code != 200 or not response["Content-Type"].startswith("text/html"):
            continue
        for href in HREF.findall(body):
            target = urljoin(url, unescape(href))
            parsed = urlparse(target)
            if parsed.netloc or not parsed.path.startswith("/admin/") or "logout" in parsed.path:
                continue
            if "password" in parsed.path or parsed.path.startswith("/admin/r/"):
                continue  # password forms and the "view on site" redirector
            if "&" in parsed.query or parsed.query.startswith(("o=", "_changelist_filters=")):
                continue  # sort orders, kept filters and combinations add pages, not coverage
            target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
            if target not in seen:
                queue.append(target)
    return seen


@pytest.mark.parametrize("persona", ["owner_a", "viewer_a", "manager_b", "superuser"])
def test_no_admin_page_shows_a_token_or_secret(world, client, persona):
    client.force_login(world[persona])
    pages = crawl(client)
    assert 10 < len(pages) < MAX_PAGES
    # The crawl reached the seller pages, the history and (for owners) the tenant page.
    assert any("/admin/sellers/seller/" in u and "/change/" in u for u in pages)
    assert any(u.startswith("/admin/sellers/event/") for u in pages)
    if persona in ("owner_a", "superuser"):
        assert any("/admin/sellers/tenant/" in u and "/change/" in u for u in pages)
    values = secrets()
    for url, body in pages.items():
        for value in values:
            assert value not in body, f"a secret appears in {url}"
    if persona == "manager_b":
        for url, body in pages.items():
            assert "Acme" not in body and "acme seller" not in body and "ASPID" not in body, url


def test_action_results_and_rejected_forms_show_no_secret(world, client, amazon_calls):
    client.force_login(world["superuser"])
    changelist = reverse("admin:sellers_seller_changelist")
    ids = list(Grant.objects.values_list("seller_id", flat=True))
    pages = []
    for action in ("export_csv", "test_connection", "refresh_now", "send_reauthorization_link", "mark_revoked"):
        amazon_calls.script(
            url_contains="/auth/o2/token",
            body={"access_token": "Atza|fresh-new-token-000111222", "expires_in": 3600},
            times=None,
        )
        response = client.post(changelist, {"action": action, "_selected_action": ids, "index": 0}, follow=True)
        pages.append(response.content.decode())
    # A rejected tenant form is shown again: the secret typed into it must not come back.
    tenant = world["a"]
    response = client.post(
        reverse("admin:sellers_tenant_change", args=[tenant.pk]),
        {"name": "", "slug": tenant.slug, "new_client_secret": "typed-secret-31313131", "new_webhook_secret": TYPED_WEBHOOK_SECRET},
    )
    assert response.status_code == 200
    pages.append(response.content.decode())
    values = secrets() + ["typed-secret-31313131", TYPED_WEBHOOK_SECRET, "Atza|fresh-new-token-000111222"]
    for body in pages:
        for value in values:
            assert value not in body
