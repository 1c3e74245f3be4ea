"""Yearly renewals: the window, the expiry sweep, the staff digest and a renewal completed end to end."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.core import mail
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from sellers.models import Event, Grant, Invitation, Seller, TenantMembership
from sellers.schedules import schedules_ensure
from sellers.selectors import renewals_due
from sellers.services.invitations import invitation_create
from sellers.services.renewals import (
    DIGEST_LIST_LIMIT,
    renewal_digest_build,
    renewal_digest_send,
    renewal_digests_task,
    renewals_expire,
)
from sellers.services.status import seller_status_sync

from .conftest import INVENTORY, ORDERS, make_grant, make_seller, read_output, shows_token
from .flow import run_flow

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_digest_guard():
    cache.clear()
    yield
    cache.clear()


def connected(tenant, name, *, spid, days=0, scopes=(ORDERS, INVENTORY)) -> Seller:
    seller = make_seller(tenant, name, spid=spid)
    make_grant(seller, scopes=scopes, authorized_days_ago=days)
    seller.refresh_from_db()
    return seller


def age(seller: Seller, days: float) -> None:
    """Move the authorization back in time without touching the stored status (as time would)."""
    Grant.objects.filter(seller=seller).update(authorized_at=timezone.now() - timedelta(days=days))


@pytest.fixture
def staff(tenant, make_user):
    return {
        "owner": make_user("olive", tenant=tenant, role=TenantMembership.Role.OWNER),
        "manager": make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER),
        "viewer": make_user("vic", tenant=tenant, role=TenantMembership.Role.VIEWER),
    }


def with_emails(staff):
    for user in staff.values():
        user.email = f"{user.username}@agency.example"
        user.save()
    return staff


def test_renewals_due_is_the_window_before_365_days(tenant, settings):
    connected(tenant, "Day340", spid="A340", days=340)
    connected(tenant, "Day300", spid="A300", days=300)
    connected(tenant, "Day370", spid="A370", days=370)
    assert set(renewals_due(tenant=tenant).values_list("name", flat=True)) == {"Day340"}
    settings.SPCONNECT_RENEWAL_WINDOW_DAYS = 70
    assert set(renewals_due(tenant=tenant).values_list("name", flat=True)) == {"Day340", "Day300"}


def test_sweep_expires_sellers_past_365_days_once_with_an_event(tenant, other_tenant):
    crossing = connected(tenant, "Crossing", spid="A1CROSS", days=364)
    failing = connected(tenant, "Failing", spid="A1FAILS", days=364)
    Grant.objects.filter(seller=failing).update(failing_since=timezone.now())
    seller_status_sync(seller=failing, record=False)
    gone = connected(tenant, "Gone", spid="A1GONE", days=364)
    Grant.objects.filter(seller=gone).update(status=Grant.Status.REVOKED, revoked_at=timezone.now())
    seller_status_sync(seller=gone, record=False)
    young = connected(other_tenant, "Young", spid="A1YOUNG", days=10)
    for seller in (crossing, failing, gone):
        age(seller, 365.5)
    assert Seller.objects.get(pk=crossing.pk).status == Seller.Status.ACTIVE  # stored, not yet swept

    assert renewals_expire() == 2
    assert Seller.objects.get(pk=crossing.pk).status == Seller.Status.EXPIRED
    assert Seller.objects.get(pk=failing.pk).status == Seller.Status.EXPIRED
    assert Seller.objects.get(pk=gone.pk).status == Seller.Status.REVOKED
    assert Seller.objects.get(pk=young.pk).status == Seller.Status.ACTIVE
    event = Event.objects.get(seller=crossing, kind=Event.Kind.EXPIRED)
    assert event.data["from"] == "active" and event.data["to"] == "expired"
    assert renewals_expire() == 0
    assert Event.objects.filter(kind=Event.Kind.EXPIRED).count() == 2


def test_digest_lists_renewals_due_expired_partial_and_revoked_of_this_tenant_only(tenant, other_tenant):
    connected(tenant, "Due Soon", spid="A1DUE", days=340)
    connected(tenant, "Fine", spid="A1FINE", days=100)
    connected(tenant, "Half", spid="A1HALF", scopes=(ORDERS,))
    connected(tenant, "Old", spid="A1OLD", days=400)
    gone = connected(tenant, "Gone", spid="A1GONE")
    Grant.objects.filter(seller=gone).update(status=Grant.Status.REVOKED, revoked_at=timezone.now())
    seller_status_sync(seller=gone, record=False)
    connected(other_tenant, "Theirs Due", spid="A1THEIRS", days=340)

    digest = renewal_digest_build(tenant=tenant)
    by_title = {s.short: s for s in digest.sections}
    assert [r.split(":")[0] for r in by_title["renewals due"].rows] == ["Due Soon (A1DUE)"]
    assert "(in 25 days)" in by_title["renewals due"].rows[0]
    assert [r.split(":")[0] for r in by_title["expired"].rows] == ["Old (A1OLD)"]
    assert by_title["partial"].rows == ["Half (A1HALF): missing inventory"]
    assert by_title["revoked"].rows[0].startswith("Gone (A1GONE): revoked ")
    assert digest.subject == "Renewals and re-authorizations: 1 renewals due, 1 expired, 1 partial, 1 revoked"


def test_digest_is_emailed_to_owners_and_managers_once_a_day(tenant, staff, django_capture_on_commit_callbacks):
    with_emails(staff)
    connected(tenant, "Due Soon", spid="A1DUE", days=340)
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_digest_send(tenant=tenant) is True
    assert sorted(m.to[0] for m in mail.outbox) == ["manny@agency.example", "olive@agency.example"]
    message = mail.outbox[0]
    assert message.subject == "[spconnect] Acme Agency: Renewals and re-authorizations: 1 renewals due"
    assert "Due Soon (A1DUE): due " in message.body
    assert "python manage.py reauth --tenant acme --send-email" in message.body
    assert not shows_token(message.body) and "/connect/" not in message.body  # no token, no seller link

    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_digest_send(tenant=tenant) is False  # already sent today
    assert not mail.outbox


def test_nothing_is_sent_when_there_is_nothing_to_say(tenant, staff, django_capture_on_commit_callbacks):
    with_emails(staff)
    connected(tenant, "Fine", spid="A1FINE", days=100)
    make_seller(tenant, "Pending")
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_digest_send(tenant=tenant) is False
    assert not mail.outbox


def test_long_sections_are_capped_and_counted(tenant):
    for i in range(DIGEST_LIST_LIMIT + 3):
        connected(tenant, f"Half {i:02d}", spid=f"A1H{i}", scopes=(ORDERS,))
    section = {s.short: s for s in renewal_digest_build(tenant=tenant).sections}["partial"]
    assert section.total == DIGEST_LIST_LIMIT + 3 and len(section.rows) == DIGEST_LIST_LIMIT and section.more == 3


def test_daily_task_sweeps_then_sends_one_digest_per_tenant_with_news(
    tenant, other_tenant, staff, make_user, django_capture_on_commit_callbacks
):
    with_emails(staff)
    quiet_owner = make_user("quinn", tenant=other_tenant)
    quiet_owner.email = "quinn@other.example"
    quiet_owner.save()
    crossing = connected(tenant, "Crossing", spid="A1CROSS", days=364)
    age(crossing, 365.5)
    with django_capture_on_commit_callbacks(execute=True):
        result = renewal_digests_task()
    assert result == "1 seller(s) expired; digest sent to 1 tenant(s)"
    assert {m.to[0] for m in mail.outbox} == {"olive@agency.example", "manny@agency.example"}
    assert "Expired (renewal overdue): 1" in mail.outbox[0].body


def test_schedules_include_the_sweep_and_the_daily_digest(db):
    from django_q.models import Schedule

    schedules_ensure()
    digest = Schedule.objects.get(name="renewal-digest")
    assert digest.func == "sellers.services.renewals.renewal_digests_task" and digest.minutes == 1440
    assert Schedule.objects.get(name="renewals-expire").func == "sellers.services.renewals.renewals_expire_task"


def test_a_seller_340_days_in_is_flagged_and_renewing_through_the_link_makes_it_active(
    client, tenant, staff, django_capture_on_commit_callbacks
):
    with_emails(staff)
    invitation = invitation_create(tenant=tenant, name="Yearly Shop", email="shop@example.com")
    run_flow(client, invitation.url, spid="A1YEARLY")
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.ACTIVE
    age(seller, 340)
    before = Grant.objects.get(seller=seller).authorized_at

    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_digest_send(tenant=tenant)
    assert "Yearly Shop (A1YEARLY): due " in mail.outbox[0].body

    out = read_output(lambda stdout: call_command(
        "reauth", "--tenant", "acme", "--renewal-due-within", "30", "--send-email", stdout=stdout, stderr=open(os.devnull, "w")))
    assert "Yearly Shop (A1YEARLY) active" in out and "1 seller(s) of Acme Agency matched; created 1 link(s)" in out
    link = Invitation.objects.get(seller=seller, purpose=Invitation.Purpose.REAUTHORIZATION)
    seller_mail = next(m for m in mail.outbox if m.to == ["shop@example.com"])
    assert link.url in seller_mail.body

    client.cookies.clear()  # the seller opens the emailed link, maybe on another day and browser
    page = run_flow(client, link.url, spid="A1YEARLY")
    assert page.status_code == 200
    seller.refresh_from_db()
    grant = Grant.objects.get(seller=seller)
    assert seller.status == Seller.Status.ACTIVE
    assert grant.authorized_at > before + timedelta(days=339)
    assert Invitation.objects.get(pk=link.pk).completed_at is not None
    kinds = list(Event.objects.filter(seller=seller).order_by("created_at", "id").values_list("kind", flat=True))
    assert kinds.index(Event.Kind.GRANTED) < kinds.index(Event.Kind.REAUTH_LINK_CREATED) < kinds.index(Event.Kind.REAUTHORIZED)
    assert Event.Kind.REAUTH_LINK_EMAILED in kinds
    assert Grant.objects.filter(seller=seller).count() == 1

    again = read_output(lambda stdout: call_command(
        "reauth", "--tenant", "acme", "--renewal-due-within", "30", stdout=stdout, stderr=open(os.devnull, "w")))
    assert "0 seller(s) of Acme Agency matched" in again
