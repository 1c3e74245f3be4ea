"""Numbers no row could have (beyond 64 bits) in admin filters, object URLs and bulk actions are
bad input: a 400 page, never a server error, on SQLite (OverflowError) and PostgreSQL alike."""

from __future__ import annotations

import pytest
from django.urls import reverse

from sellers.models import Event, Tenant, TenantMembership

from .conftest import make_grant, make_seller, make_tenant

pytestmark = pytest.mark.django_db

HUGE = "9" * 30

LISTS = ["admin:sellers_seller_changelist", "admin:sellers_event_changelist", "admin:sellers_tenant_changelist"]


@pytest.fixture
def manager(client, make_user):
    tenant = make_tenant("acme")
    user = make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER)
    client.force_login(user)
    return user


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("param", ["tenant", "seller", "tenant__id__exact", "seller__id__exact", "id__exact", "q"])
def test_huge_filter_values_never_fail_the_changelists(manager, client, url, param):
    response = client.get(reverse(url) + f"?{param}={HUGE}")
    assert response.status_code in (200, 302, 400, 403)  # 403: the tenant list is for owners
    if response.status_code == 400:
        assert "larger than any record could have" in response.content.decode()


def test_superuser_tenant_filter_with_a_huge_id_lists_nothing(admin_client):
    make_seller(make_tenant("acme"), "Shop")
    response = admin_client.get(reverse("admin:sellers_seller_changelist") + f"?tenant={HUGE}")
    assert response.status_code == 200 and response.context["cl"].result_count == 0


def test_a_database_overflow_anywhere_is_answered_with_the_400_page(rf):
    from spconnect.middleware import OutOfRangeNumberMiddleware

    middleware = OutOfRangeNumberMiddleware(lambda request: None)
    request = rf.get("/admin/anything/")
    response = middleware.process_exception(request, OverflowError("Python int too large to convert to SQLite INTEGER"))
    assert response.status_code == 400 and "larger than any record could have" in response.content.decode()
    assert middleware.process_exception(request, ValueError("something else")) is None


@pytest.mark.parametrize("action", ["send_reauthorization_link", "refresh_now", "mark_revoked", "export_csv", "test_connection"])
def test_a_huge_id_smuggled_into_an_action_changes_nothing(manager, client, action, amazon_calls):
    make_grant(make_seller(Tenant.objects.get(slug="acme"), "Shop"))
    before = Event.objects.count()
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": action, "_selected_action": [HUGE, "-1", "x"], "index": 0},
        follow=True,
    )
    assert response.status_code == 200
    assert Event.objects.count() == before and amazon_calls.calls == []


def test_huge_ids_beside_a_real_one_are_refused_and_the_real_one_is_acted_on(manager, client):
    seller = make_seller(Tenant.objects.get(slug="acme"), "Shop", email="shop@example.com")
    make_grant(seller)
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": "send_reauthorization_link", "_selected_action": [HUGE, seller.pk], "index": 0},
        follow=True,
    )
    body = response.content.decode()
    assert "1 emailed" in body and "1 selected row(s) refused" in body
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTH_LINK_EMAILED).count() == 1


@pytest.mark.parametrize("name", ["admin:sellers_seller_change", "admin:sellers_seller_history", "admin:sellers_seller_delete",
                                  "admin:sellers_seller_reauthorization_link", "admin:sellers_tenant_change",
                                  "admin:sellers_event_change"])
def test_huge_object_ids_in_admin_urls_are_not_found_or_bad_requests(manager, client, name):
    assert client.get(reverse(name, args=[HUGE])).status_code in (400, 404)
