"""Onboarding statuses: stored on the seller at each step of its link, never demoting a connected
seller, swept to link_expired, and mapped from `pending` by migration 0007."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from sellers.models import Event, Invitation, Seller
from sellers.schedules import SCHEDULES
from sellers.services.invitations import invitation_create, reauthorization_link_get_or_create
from sellers.services.status import onboarding_links_expire
from tests.conftest import make_grant, make_seller
from tests.flow import run_flow


def status_of(seller: Seller) -> str:
    return Seller.objects.values_list("status", flat=True).get(pk=seller.pk)


def test_opening_the_link_records_opened_once(client, tenant):
    invitation = invitation_create(tenant=tenant, name="Shop")
    assert status_of(invitation.seller) == Seller.Status.INVITED
    for _ in range(3):
        assert client.get(invitation.url).status_code == 200
    assert status_of(invitation.seller) == Seller.Status.OPENED
    [opened] = Event.objects.filter(seller=invitation.seller, kind=Event.Kind.LINK_OPENED)
    assert opened.data == {"from": "invited", "to": "opened"} and opened.actor == "seller"


def test_declining_at_amazon_stores_declined_and_a_new_link_invites_again(client, tenant, amazon_calls):
    invitation = invitation_create(tenant=tenant, name="Shop")
    run_flow(client, invitation.url, decision="deny")
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.DECLINED
    denied = Event.objects.get(seller=seller, kind=Event.Kind.DENIED)
    assert denied.data["to"] == "declined" and denied.data["from"] == "at_amazon"
    started = Event.objects.get(seller=seller, kind=Event.Kind.CONSENT_STARTED)
    assert (started.data["from"], started.data["to"]) == ("opened", "at_amazon")

    Invitation.objects.filter(seller=seller).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert onboarding_links_expire() == 0  # declined is kept: the more useful thing to know
    _, created = reauthorization_link_get_or_create(seller=seller, actor="staff:olga")
    assert created and status_of(seller) == Seller.Status.INVITED


def test_a_connected_seller_opening_and_declining_a_renewal_link_stays_active(client, tenant, amazon_calls):
    seller = make_seller(tenant, "Connected", spid="A1CONN")
    make_grant(seller)
    assert status_of(seller) == Seller.Status.ACTIVE
    link, _ = reauthorization_link_get_or_create(seller=seller)
    run_flow(client, link.url, decision="deny")
    assert status_of(seller) == Seller.Status.ACTIVE
    assert not Event.objects.filter(seller=seller, kind=Event.Kind.LINK_OPENED).exists()


def test_the_sweep_marks_expired_links_once_and_is_scheduled_hourly(tenant):
    fresh = invitation_create(tenant=tenant, name="Fresh")
    stale = invitation_create(tenant=tenant, name="Stale")
    Invitation.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert onboarding_links_expire() == 1
    assert onboarding_links_expire() == 0
    assert (status_of(fresh.seller), status_of(stale.seller)) == ("invited", "link_expired")
    [event] = Event.objects.filter(kind=Event.Kind.LINK_EXPIRED)
    assert event.seller_id == stale.seller.pk and event.data == {"from": "invited", "to": "link_expired"}
    assert any(s.func == "sellers.services.status.onboarding_links_expire_task" and s.minutes == 60 for s in SCHEDULES)


@pytest.mark.parametrize("meanwhile", ["declined", "new link"])
def test_the_sweep_leaves_a_seller_who_changed_after_it_looked(tenant, monkeypatch, meanwhile):
    """The sweep reads, then writes: a seller who declined or got a new link in between keeps that."""
    from sellers.services import status

    stale = invitation_create(tenant=tenant, name="Racing")
    Invitation.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    real = status.seller_status_transition

    def after_a_change(**kwargs):
        if meanwhile == "declined":
            Seller.objects.filter(pk=kwargs["seller"].pk).update(status=Seller.Status.DECLINED)
        else:
            reauthorization_link_get_or_create(seller=Seller.objects.get(pk=kwargs["seller"].pk), actor="staff:olga")
        return real(**kwargs)

    monkeypatch.setattr(status, "seller_status_transition", after_a_change)
    assert onboarding_links_expire() == 0
    assert status_of(stale.seller) == ("declined" if meanwhile == "declined" else "invited")
    assert not Event.objects.filter(kind=Event.Kind.LINK_EXPIRED).exists()


@pytest.mark.django_db(transaction=True)
def test_migration_maps_pending_sellers_from_their_history():
    executor = MigrationExecutor(connection)
    executor.migrate([("sellers", "0006_grant_refresh_claim")])
    apps = executor.loader.project_state([("sellers", "0006_grant_refresh_claim")]).apps
    Tenant, Seller6 = apps.get_model("sellers", "Tenant"), apps.get_model("sellers", "Seller")
    Event6, Invitation6 = apps.get_model("sellers", "Event"), apps.get_model("sellers", "Invitation")
    tenant = Tenant.objects.create(slug="m", name="M", application_id="a", client_id="c")
    now = timezone.now()
    histories = {
        "never": ["invited"],
        "went": ["invited", "consent_started"],
        "said no": ["invited", "consent_started", "denied"],
        "errored": ["invited", "consent_started", "consent_error"],
        "lapsed": ["invited"],
        "lapsed no": ["invited", "consent_started", "denied"],
    }
    for i, (name, kinds) in enumerate(histories.items()):
        seller = Seller6.objects.create(tenant=tenant, name=name, status="pending")
        expires = now - timedelta(days=1) if name.startswith("lapsed") else now + timedelta(days=1)
        Invitation6.objects.create(tenant=tenant, seller=seller, token_hash=f"h{i}", token="t", expires_at=expires)
        for j, kind in enumerate(kinds):
            Event6.objects.create(tenant=tenant, seller=seller, kind=kind, created_at=now - timedelta(hours=10 - j))
    Seller6.objects.create(tenant=tenant, name="connected", status="active")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate([("sellers", "0007_onboarding_statuses")])
        statuses = dict(Seller.objects.values_list("name", "status"))
        assert statuses == {
            "never": "invited", "went": "at_amazon", "said no": "declined", "errored": "opened",
            "lapsed": "link_expired", "lapsed no": "declined", "connected": "active",
        }
        executor = MigrationExecutor(connection)
        executor.migrate([("sellers", "0006_grant_refresh_claim")])
        assert set(Seller6.objects.values_list("status", flat=True)) == {"pending", "active"}
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
