"""Claims on grants queued for a scheduled refresh: each due grant has at most one task at a time.

The schedule enqueues a task per due grant every 5 minutes. While LWA hangs, each task waits
SPAPI_HTTP_READ_TIMEOUT and the queue drains more slowly than sweeps would refill it, and
django-q2 cannot tell which grants still have a task waiting (the Redis broker keeps no
receipts). So the grant says it: `refresh_claimed_until` is set by a conditional UPDATE when the
sweep enqueues a task, and cleared by that task once it has refreshed or tried to.

A claim still set after it expires belongs to a task that never reported back: lost with a
crashed worker or a restarted Redis, never enqueued because the broker was down, or still
waiting in a queue longer than the window. The next sweep records it in `refresh_lost_at`,
logs a warning and enqueues the grant again if it is still due.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from sellers.models import Grant

logger = logging.getLogger(__name__)

CHUNK_SIZE = 500  # ids per UPDATE … WHERE id IN (…)


def refresh_claim_window() -> timedelta:
    return timedelta(seconds=settings.SPCONNECT_REFRESH_CLAIM_SECONDS)


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK_SIZE):
        yield ids[start : start + CHUNK_SIZE]


def refresh_claims_expire(*, now: datetime) -> int:
    """Release the claims whose task did not report back in time, recording each as lost.

    Returns how many; logs a warning naming a few grants when there are any.
    """
    ids = list(Grant.objects.filter(refresh_claimed_until__lte=now).values_list("pk", flat=True))
    lost = 0
    for chunk in _chunks(ids):
        # The condition again: a task that reported back since the read is not lost.
        lost += Grant.objects.filter(pk__in=chunk, refresh_claimed_until__lte=now).update(
            refresh_claimed_until=None, refresh_lost_at=now
        )
    if lost:
        shown = ", ".join(str(i) for i in ids[:10]) + (", …" if len(ids) > 10 else "")
        logger.warning(
            "%d refresh task(s) never reported back within SPCONNECT_REFRESH_CLAIM_SECONDS=%d (grants %s): "
            "lost, or waiting in a longer queue; enqueuing those still due again.",
            lost, settings.SPCONNECT_REFRESH_CLAIM_SECONDS, shown,
        )
    return lost


def grants_refresh_claim(*, grant_ids: Iterable[int], now: datetime) -> tuple[list[int], datetime]:
    """Claim the grants that no task holds: (the ids claimed, in the order given; the claim).

    The claim's expiry is also its token: the task enqueued for it carries the value, and
    `refresh_claim_release` clears only a claim that still has it.
    """
    until = now + refresh_claim_window()
    ids = list(grant_ids)
    claimed: set[int] = set()
    for chunk in _chunks(ids):
        # One UPDATE per chunk, then read back which rows now hold this claim (portable, unlike
        # UPDATE … RETURNING). A concurrent sweep's UPDATE waits for this transaction and then no
        # longer matches `IS NULL`; two sweeps computing the same microsecond are not a concern.
        with transaction.atomic():
            Grant.objects.filter(pk__in=chunk, refresh_claimed_until__isnull=True).update(refresh_claimed_until=until)
            claimed.update(Grant.objects.filter(pk__in=chunk, refresh_claimed_until=until).values_list("pk", flat=True))
    return [grant_id for grant_id in ids if grant_id in claimed], until


def refresh_claim_release(*, grant_id: int, claimed_until: datetime) -> bool:
    """The task of this claim reported back: let the next sweep enqueue the grant again.

    A claim that expired and was taken by a later sweep is left alone: its own task is queued.
    """
    return bool(
        Grant.objects.filter(pk=grant_id, refresh_claimed_until=claimed_until).update(refresh_claimed_until=None)
    )
