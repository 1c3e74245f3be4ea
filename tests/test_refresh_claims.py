"""Refresh claims: a sweep enqueues a due grant only when no earlier task of it is queued or
running, and a task that never reports back is counted lost and enqueued again after its window.

These tests use django-q2's ORM broker for real instead of the suite's inline tasks, so what a
sweep enqueues stays in the queue until `work` (a worker in the test's thread) takes it, and a
clock that only moves when told to (sweeps come every 5 minutes, LWA answers after 20 s).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import timedelta

import pytest
import requests
from django.utils import timezone
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from sellers.models import Grant
from sellers.selectors import grants_refresh_lost_count
from sellers.services.tokens import access_token_cache_clear
from sellers.tasks import grant_refresh_task, grants_refresh_due

from .conftest import Scripted
from .test_tokens import connected

pytestmark = pytest.mark.django_db

SWEEP_SECONDS = 300  # sellers/schedules.py: refresh-due-tokens every 5 minutes
LWA_TIMEOUT_SECONDS = 20  # SPAPI_HTTP_READ_TIMEOUT: how long a hanging LWA holds a task


class Clock:
    def __init__(self):
        self.start = self.now = timezone.now()

    def at(self, seconds: float) -> None:
        self.now = self.start + timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


@pytest.fixture
def queue(monkeypatch) -> Broker:
    """The ORM broker, whatever the run's configured broker: tasks stay queued in this test's
    database (nothing reaches the shared Redis) until `work` takes them."""
    access_token_cache_clear()
    monkeypatch.setattr(Conf, "SYNC", False)
    monkeypatch.setattr(Conf, "ORM", "default")
    return get_broker()


@pytest.fixture
def sweep(django_capture_on_commit_callbacks):
    def run() -> str:
        with django_capture_on_commit_callbacks(execute=True):  # the sweep enqueues on commit
            return grants_refresh_due()

    return run


@pytest.fixture
def lwa_hangs(amazon_calls, clock) -> list:
    """Every LWA call hangs until the read timeout. Callables appended to the returned list run,
    one per call, while the call hangs (a sweep coming meanwhile)."""
    during: list = []

    def hang(call):
        clock.advance(LWA_TIMEOUT_SECONDS / 2)
        if during:
            during.pop(0)()
        clock.advance(LWA_TIMEOUT_SECONDS / 2)
        raise requests.ReadTimeout("read timed out")

    amazon_calls.scripted.append(Scripted(lambda call: call.url.endswith("/auth/o2/token"), hang, times=None))
    return during


def queued_by_grant(broker: Broker) -> Counter:
    """Refresh tasks in the broker per grant id: waiting, or taken by a worker and not yet done."""
    tasks = [SignedPackage.loads(payload) for payload in OrmQ.objects.filter(key=broker.list_key).values_list("payload", flat=True)]
    return Counter(task["args"][0] for task in tasks if task["func"] == "sellers.tasks.grant_refresh_task")


def take(broker: Broker) -> tuple[int, dict]:
    """What a worker's fetch does: the oldest waiting task (first in, first out, as from Redis),
    locked for `retry` seconds. (id to acknowledge, the task)"""
    row = OrmQ.objects.filter(key=broker.list_key, lock__lt=timezone.now()).order_by("id").first()
    assert row is not None, "nothing queued"
    OrmQ.objects.filter(pk=row.pk).update(lock=timezone.now() + timedelta(seconds=Conf.RETRY))
    return row.pk, SignedPackage.loads(row.payload)


def work(broker: Broker, n: int) -> list[str]:
    """A django-q2 worker: take a task, run it, acknowledge it; n times."""
    results = []
    for _ in range(n):
        ack_id, task = take(broker)
        results.append(grant_refresh_task(*task["args"], **task["kwargs"]))
        broker.acknowledge(ack_id)
    return results


def due_grants(tenant, n: int) -> list[int]:
    ids = [connected(tenant, f"Due {i}", expires_in=120)[1].pk for i in range(n)]
    connected(tenant, "Fresh", expires_in=3600)  # never due in these tests
    return ids


def test_sweeps_while_lwa_hangs_keep_one_task_per_due_grant(tenant, clock, queue, sweep, lwa_hangs, amazon_calls, caplog):
    due = due_grants(tenant, 4)
    one_each = dict.fromkeys(due, 1)
    assert sweep() == "enqueued 4 refresh task(s)"
    assert queued_by_grant(queue) == one_each

    # A worker takes the first task and LWA hangs; the next sweep comes while it does.
    seen_meanwhile = []
    lwa_hangs.append(lambda: seen_meanwhile.append((sweep(), queued_by_grant(queue))))
    clock.advance(1)
    assert work(queue, 2)[0].startswith("transient_failure: readtimeout")
    assert seen_meanwhile == [("enqueued 0 refresh task(s); 4 due grant(s) still have a task queued or running", one_each)]

    # Sweeps every 5 minutes; between two, the worker gets through two tasks (each failing after
    # the timeout, backing off less than 5 minutes). Those two are enqueued again, the others wait.
    for n in (2, 3, 4):
        clock.at(SWEEP_SECONDS * (n - 1))
        assert sweep() == "enqueued 2 refresh task(s); 2 due grant(s) still have a task queued or running"
        assert queued_by_grant(queue) == one_each
        clock.advance(1)
        assert all(result.startswith("transient_failure") for result in work(queue, 2))

    assert len(amazon_calls.token_calls) == 8  # one LWA call per task run
    assert Grant.objects.filter(pk__in=due, refresh_claimed_until__isnull=False).count() == 2  # queued now
    assert grants_refresh_lost_count(since=clock.start) == 0
    assert "never reported back" not in caplog.text


def test_a_lost_task_is_enqueued_again_after_its_window_logged_and_counted(tenant, clock, queue, sweep, settings, caplog):
    due = due_grants(tenant, 3)
    assert sweep() == "enqueued 3 refresh task(s)"
    queue.purge_queue()  # Redis restarted (or a worker died with them): no trace of the tasks anywhere

    clock.at(SWEEP_SECONDS)  # within the window: maybe still queued, so not enqueued twice
    assert sweep() == "enqueued 0 refresh task(s); 3 due grant(s) still have a task queued or running"
    assert queued_by_grant(queue) == {}

    clock.at(2 * SWEEP_SECONDS)  # past SPCONNECT_REFRESH_CLAIM_SECONDS: lost
    assert settings.SPCONNECT_REFRESH_CLAIM_SECONDS < 2 * SWEEP_SECONDS
    assert grants_refresh_lost_count(since=clock.start) == 3  # expired claims count before any sweep notices
    with caplog.at_level(logging.WARNING, logger="sellers.services.refresh_claims"):
        assert sweep() == "enqueued 3 refresh task(s); 3 earlier task(s) never reported back"
    assert "3 refresh task(s) never reported back within SPCONNECT_REFRESH_CLAIM_SECONDS=540" in caplog.text
    assert queued_by_grant(queue) == dict.fromkeys(due, 1)

    clock.advance(1)
    assert all(result.startswith("refreshed") for result in work(queue, 3))  # LWA answers again
    assert not Grant.objects.filter(pk__in=due, refresh_claimed_until__isnull=False).exists()
    lost_at = clock.start + timedelta(seconds=2 * SWEEP_SECONDS)
    assert set(Grant.objects.filter(pk__in=due).values_list("refresh_lost_at", flat=True)) == {lost_at}
    assert grants_refresh_lost_count(since=clock.now - timedelta(hours=1)) == 3
    clock.at(2 * SWEEP_SECONDS + 3601)
    assert grants_refresh_lost_count(since=clock.now - timedelta(hours=1)) == 0


def test_a_late_task_leaves_the_claim_of_the_next_one_alone_and_runs_twice_harmlessly(tenant, clock, queue, sweep, amazon_calls):
    [grant_id] = due_grants(tenant, 1)
    sweep()
    clock.advance(1)
    late_id, late = take(queue)  # a worker takes it, then stalls

    clock.at(2 * SWEEP_SECONDS)
    assert sweep() == "enqueued 1 refresh task(s); 1 earlier task(s) never reported back"
    next_claim = Grant.objects.get(pk=grant_id).refresh_claimed_until
    assert next_claim is not None and next_claim != late["kwargs"]["claimed_until"]

    # The stalled worker finishes: it refreshes, but the claim belongs to the task queued since.
    assert grant_refresh_task(*late["args"], **late["kwargs"]).startswith("refreshed")
    queue.acknowledge(late_id)
    assert Grant.objects.get(pk=grant_id).refresh_claimed_until == next_claim
    assert sweep() == "enqueued 0 refresh task(s)"  # fresh now, and still claimed

    clock.advance(1)
    assert work(queue, 1) == ["skipped: The access token is still valid."]
    assert Grant.objects.get(pk=grant_id).refresh_claimed_until is None
    # Delivered once more (the ORM broker after `retry`): a no-op, the claim stays released.
    assert grant_refresh_task(grant_id, claimed_until=next_claim).startswith("skipped")
    assert Grant.objects.get(pk=grant_id).refresh_claimed_until is None
    assert len(amazon_calls.token_calls) == 1


def test_a_task_that_raises_still_releases_its_claim(tenant, clock, queue, sweep, monkeypatch):
    [grant_id] = due_grants(tenant, 1)
    sweep()
    assert Grant.objects.get(pk=grant_id).refresh_claimed_until is not None
    clock.advance(1)
    _, task = take(queue)

    def broken(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("sellers.tasks.grant_refresh", broken)
    with pytest.raises(RuntimeError):
        grant_refresh_task(*task["args"], **task["kwargs"])  # django-q2 records the failure: not lost
    assert Grant.objects.get(pk=grant_id).refresh_claimed_until is None
    assert grants_refresh_lost_count(since=clock.start) == 0
