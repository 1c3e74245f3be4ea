"""The admin's "refresh now": a few sellers are refreshed in the request, many are queued."""

from __future__ import annotations

import pytest
from django.urls import reverse

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
    for func, args, kwargs in queued:
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
