"""The hourly cleanup of consent-flow leftovers: expired OAuth states and sessions go, live ones stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.models import Schedule

from authflow.cleanup import flow_leftovers_delete
from authflow.models import OAuthState

from .test_login_uri import GENUINE, open_login_uri

pytestmark = pytest.mark.django_db


def anonymous_starts(tenant, n: int) -> list[str]:
    """n browsers open the Login URI once each; returns their session keys."""
    keys = []
    for i in range(n):
        browser = Client()
        assert open_login_uri(browser, tenant, amazon_callback_uri=GENUINE, selling_partner_id=f"A1CLEAN{i}").status_code == 302
        keys.append(browser.cookies["sessionid"].value)
    assert OAuthState.objects.count() == Session.objects.count() == n
    return keys


def test_cleanup_deletes_expired_states_and_sessions_and_keeps_live_ones(tenant):
    keys = anonymous_starts(tenant, 4)
    states = list(OAuthState.objects.order_by("pk"))
    now = timezone.now()
    # Two abandoned starts: their states expired two days ago, their sessions yesterday.
    OAuthState.objects.filter(pk__in=[states[0].pk, states[1].pk]).update(expires_at=now - timedelta(days=2))
    Session.objects.filter(session_key__in=keys[:2]).update(expire_date=now - timedelta(days=1))
    # Used and expired an hour ago: kept for a while, so a late seller hears "expired", not "unknown".
    OAuthState.objects.filter(pk=states[2].pk).update(used_at=now - timedelta(hours=2), expires_at=now - timedelta(hours=1))

    result = flow_leftovers_delete(now=now)

    assert (result.states, result.sessions) == (2, 2)
    assert set(OAuthState.objects.values_list("pk", flat=True)) == {states[2].pk, states[3].pk}
    assert set(Session.objects.values_list("session_key", flat=True)) == set(keys[2:])
    assert flow_leftovers_delete(now=now) == result.__class__(states=0, sessions=0)  # safe to run twice

    later = flow_leftovers_delete(now=now + timedelta(days=15))  # past the margin and the session age
    assert (later.states, later.sessions) == (2, 2)
    assert not OAuthState.objects.exists() and not Session.objects.exists()


def test_an_hourly_schedule_runs_the_cleanup(tenant):
    schedule = Schedule.objects.get(name="flow-leftovers-delete")
    assert (schedule.func, schedule.schedule_type, schedule.minutes, schedule.repeats) == (
        "authflow.tasks.flow_leftovers_delete_task", Schedule.MINUTES, 60, -1,
    )
    anonymous_starts(tenant, 2)
    OAuthState.objects.update(expires_at=timezone.now() - timedelta(days=2))
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))
    assert import_string(schedule.func)() == "deleted 2 expired state(s) and 2 expired session(s)"
    assert not OAuthState.objects.exists() and not Session.objects.exists()


def test_signed_cookie_sessions_leave_nothing_to_delete(tenant, settings):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
    assert flow_leftovers_delete().sessions is None
