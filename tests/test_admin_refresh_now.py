"""The admin's "refresh now": a few sellers are refreshed in the request, many are queued; either
way the events Amazon's answers cause name the staff member who asked."""

from __future__ import annotations

import os

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from sellers.models import Event, Grant, TenantMembership
from sellers.services.tokens import access_token_cache_clear
from sellers.tasks import grant_refresh_task

from .test_tokens import connected

pytestmark = pytest.mark.django_db

FEW = 5  # refreshed in the request (sellers.admin.MAX_INLINE_REFRESHES); one more is queued


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


@pytest.fixture
def manager(tenant, make_user, client):
    client.force_login(make_user("manny", tenant=tenant, role=TenantMembership.Role.MANAGER))


@pytest.fixture
def queued(monkeypatch):
    """Tasks handed to django-q2, kept instead of run (the suite's cluster runs them inline)."""
    import django_q.tasks

    tasks: list[tuple[str, tuple, dict]] = []
    monkeypatch.setattr(django_q.tasks, "async_task", lambda func, *args, **kwargs: tasks.append((func, args, kwargs)))
    return tasks


def refresh_now(client, sellers, django_capture_on_commit_callbacks) -> str:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:sellers_seller_changelist"),
            {"action": "refresh_now", "_selected_action": [s.pk for s in sellers], "index": 0},
            follow=True,
        )
    assert response.status_code == 200
    return response.content.decode()


def test_many_sellers_are_queued_not_refreshed_in_the_request(
    tenant, manager, client, amazon_calls, queued, django_capture_on_commit_callbacks
):
    pairs = [connected(tenant, f"Shop {n}") for n in range(FEW + 1)]
    body = refresh_now(client, [seller for seller, _ in pairs], django_capture_on_commit_callbacks)

    assert f"{FEW + 1} sellers queued for a refresh in the background" in body
    assert amazon_calls.token_calls == []  # the request itself called LWA for nobody
    assert sorted(args[0] for _, args, _ in queued) == sorted(grant.pk for _, grant in pairs)
    assert {func for func, _, _ in queued} == {"sellers.tasks.grant_refresh_task"}
    assert all(kwargs["force"] is True and kwargs["actor"] == "staff:manny" for _, _, kwargs in queued)
    assert Event.objects.filter(kind=Event.Kind.REFRESH_REQUESTED, data__outcome="queued").count() == len(pairs)

    # The workers then refresh each one (forced: the tokens were still fresh) and say so in history.
    for _func, args, kwargs in queued:
        grant_refresh_task(*args, force=kwargs["force"], actor=kwargs["actor"])
    assert len(amazon_calls.token_calls) == len(pairs)
    assert all(Grant.objects.get(pk=grant.pk).refresh_count == 1 for _, grant in pairs)
    done = Event.objects.filter(kind=Event.Kind.REFRESH_REQUESTED, data__outcome="refreshed", actor="staff:manny")
    assert done.count() == len(pairs)


def test_a_few_sellers_are_still_refreshed_in_the_request(
    tenant, manager, client, amazon_calls, queued, django_capture_on_commit_callbacks
):
    pairs = [connected(tenant, f"Shop {n}") for n in range(FEW)]
    body = refresh_now(client, [seller for seller, _ in pairs], django_capture_on_commit_callbacks)
    assert f"Refresh: {FEW} refreshed." in body
    assert queued == []
    assert len(amazon_calls.token_calls) == FEW


def test_staff_refresh_names_the_staff_member_in_the_events_amazon_caused(
    tenant, manager, client, amazon_calls, queued, django_capture_on_commit_callbacks
):
    failing, failing_grant = connected(tenant, "Was failing")
    Grant.objects.filter(pk=failing_grant.pk).update(failing_since=timezone.now(), consecutive_failures=3)
    gone, _ = connected(tenant, "Gone")
    call_command("sandbox", "revoke", gone.selling_partner_id, stdout=open(os.devnull, "w"))

    refresh_now(client, [failing, gone], django_capture_on_commit_callbacks)

    recovered = Event.objects.get(seller=failing, kind=Event.Kind.REFRESH_RECOVERED)
    assert recovered.actor == "amazon" and recovered.data["requested_by"] == "staff:manny"
    revoked = Event.objects.get(seller=gone, kind=Event.Kind.REVOKED)
    assert revoked.actor == "amazon" and revoked.detail.endswith("Refresh requested by staff:manny.")


def test_a_queued_staff_refresh_names_the_staff_member_too(tenant, amazon_calls, settings):
    settings.SPCONNECT_FAILING_THRESHOLD = 1
    seller, grant = connected(tenant, "Flaky")
    amazon_calls.lwa_error("server_error", status=503)
    grant_refresh_task(grant.pk, force=True, actor="staff:manny")
    failing = Event.objects.get(seller=seller, kind=Event.Kind.REFRESH_FAILING)
    assert failing.actor == "amazon" and failing.data["requested_by"] == "staff:manny"

    Grant.objects.filter(pk=grant.pk).update(next_attempt_at=timezone.now())
    grant_refresh_task(grant.pk, force=True)  # a refresh the system asked for names nobody
    recovered = Event.objects.get(seller=seller, kind=Event.Kind.REFRESH_RECOVERED)
    assert "requested_by" not in recovered.data
