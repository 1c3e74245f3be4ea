"""A grant no configured key can decrypt (tampered, or written under a lost key) is reported and
skipped: the sweep goes on with every other seller, and the seller's admin pages still open."""

from __future__ import annotations

import os

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from sellers.models import Event, Grant, Seller, TenantMembership
from sellers.services.tokens import access_token_cache_clear

from .conftest import read_output
from .test_tokens import connected

pytestmark = pytest.mark.django_db

FOREIGN = Fernet(Fernet.generate_key()).encrypt(b"Atzr|written-under-another-key").decode()


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


def spoil(grant: Grant, *columns: str) -> None:
    """Overwrite encrypted columns with ciphertext of a key the app does not have."""
    with connection.cursor() as cursor:
        for column in columns:
            cursor.execute(f"UPDATE sellers_grant SET {column} = %s WHERE id = %s", [FOREIGN, grant.pk])


def refresh_all() -> str:
    return read_output(lambda stdout: call_command("refresh_tokens", "--all", stdout=stdout, stderr=open(os.devnull, "w")))


def test_refresh_all_skips_an_undecryptable_grant_and_refreshes_the_others(tenant, amazon_calls):
    _, first = connected(tenant, "First Shop")
    bad_seller, bad = connected(tenant, "Spoiled Shop")
    _, last = connected(tenant, "Last Shop")
    spoil(bad, "refresh_token", "access_token")

    out = refresh_all()

    assert "3 active grant(s) in all tenants: refreshed 2, revoked 0, failed 1" in out
    assert f"Spoiled Shop ({bad_seller.selling_partner_id}): Cannot be decrypted" in out
    assert "cannot be decrypted with the configured keys" in out
    assert FOREIGN not in out and "gAAAA" not in out
    assert len(amazon_calls.token_calls) == 2
    assert Grant.objects.get(pk=first.pk).refresh_count == 1
    assert Grant.objects.get(pk=last.pk).refresh_count == 1
    [event] = Event.objects.filter(seller=bad_seller, data__error="undecryptable")
    assert event.kind == Event.Kind.REFRESH_FAILING and event.actor == "command:refresh_tokens"
    assert "cannot be decrypted with the configured keys" in event.detail
    assert FOREIGN not in event.detail + str(event.data)


@pytest.fixture
def manager(tenant, make_user, client):
    client.force_login(make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER))


def test_admin_pages_of_an_undecryptable_grant_say_so_instead_of_failing(tenant, manager, client):
    seller, grant = connected(tenant, "Spoiled Shop")
    spoil(grant, "refresh_token", "access_token", "mws_auth_token")

    page = client.get(reverse("admin:sellers_seller_change", args=[seller.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert "cannot be decrypted with the configured keys" in html
    assert FOREIGN not in html and "••••" + FOREIGN[-4:] not in html

    listing = client.get(reverse("admin:sellers_seller_changelist"))
    assert listing.status_code == 200 and "Spoiled Shop" in listing.content.decode()


def act(client, action, seller, **extra):
    response = client.post(
        reverse("admin:sellers_seller_changelist"),
        {"action": action, "_selected_action": [seller.pk], "index": 0, **extra},
        follow=True,
    )
    assert response.status_code == 200
    return response.content.decode()


def test_refresh_now_and_test_connection_on_an_undecryptable_grant_report_it(tenant, manager, client, amazon_calls):
    seller, grant = connected(tenant, "Spoiled Shop")
    spoil(grant, "refresh_token", "access_token")
    assert "1 cannot be decrypted" in act(client, "refresh_now", seller)
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REFRESH_REQUESTED, data__outcome="undecryptable").exists()
    assert "Spoiled Shop: The stored tokens cannot be decrypted with the configured keys" in act(client, "test_connection", seller)
    assert amazon_calls.calls == []


def test_an_undecryptable_grant_can_be_marked_revoked(tenant, manager, client):
    """The way out when the key is lost (docs/operations.md): revoke, then send a new link."""
    seller, grant = connected(tenant, "Spoiled Shop")
    spoil(grant, "refresh_token", "access_token")
    body = act(client, "mark_revoked", seller, post="yes")
    assert "Marked revoked: 1;" in body
    assert Grant.objects.filter(pk=grant.pk, status=Grant.Status.REVOKED).exists()
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED


def spoil_tenant(tenant, *columns: str) -> None:
    with connection.cursor() as cursor:
        for column in columns:
            cursor.execute(f"UPDATE sellers_tenant SET {column} = %s WHERE id = %s", [FOREIGN, tenant.pk])


def test_a_tenant_whose_secrets_no_key_decrypts_can_still_mark_its_sellers_revoked(
    tenant, manager, client, mailoutbox, django_capture_on_commit_callbacks
):
    """A key lost without rotating spoils the tenant's secrets too: marking revoked, recording it
    and telling the staff need none of them."""
    first, first_grant = connected(tenant, "First Shop")
    second, second_grant = connected(tenant, "Second Shop")
    spoil(first_grant, "refresh_token", "access_token")
    spoil(second_grant, "refresh_token", "access_token")
    spoil_tenant(tenant, "client_secret", "webhook_secret")
    User.objects.filter(username="manny").update(email="manny@agency.example")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:sellers_seller_changelist"),
            {"action": "mark_revoked", "_selected_action": [first.pk, second.pk], "index": 0, "post": "yes"},
            follow=True,
        )

    assert response.status_code == 200 and "Marked revoked: 2;" in response.content.decode()
    assert set(Grant.objects.filter(seller__in=[first, second]).values_list("status", flat=True)) == {Grant.Status.REVOKED}
    assert set(Seller.objects.filter(pk__in=[first.pk, second.pk]).values_list("status", flat=True)) == {Seller.Status.REVOKED}
    assert Event.objects.filter(seller__in=[first, second], kind=Event.Kind.MARKED_REVOKED).count() == 2
    assert sorted(m.subject for m in mailoutbox) == [
        f"[spconnect] {tenant.name}: First Shop is revoked",
        f"[spconnect] {tenant.name}: Second Shop is revoked",
    ]
    assert all(FOREIGN not in m.body for m in mailoutbox)
