"""django-q2 tasks: each takes ids, loads, calls a service. All are safe to run twice."""

from __future__ import annotations

from datetime import datetime
from functools import partial

import django_q.tasks
from django.db import transaction
from django.utils import timezone

from sellers.models import Event, Grant
from sellers.selectors import grants_due
from sellers.services.events import event_record
from sellers.services.refresh_claims import grants_refresh_claim, refresh_claim_release, refresh_claims_expire
from sellers.services.reviews import identity_reviews_expire
from sellers.services.tokens import RefreshOutcome, grant_refresh
from sellers.services.webhooks import webhook_deliver as _webhook_deliver

REFRESH_GROUP = "token-refresh"


def grants_refresh_due() -> str:
    """Every 5 minutes: enqueue one refresh task per due grant that no earlier task still holds.

    A grant whose task is queued or running keeps its claim and is left out, so a queue that
    drains slowly (LWA hanging) does not grow; a claim that expired is released as lost first.
    """
    now = timezone.now()
    lost = refresh_claims_expire(now=now)
    due = list(grants_due(now=now).values_list("pk", flat=True))
    ids, claimed_until = grants_refresh_claim(grant_ids=due, now=now)
    for grant_id in ids:
        transaction.on_commit(
            partial(
                django_q.tasks.async_task,
                "sellers.tasks.grant_refresh_task",
                grant_id,
                claimed_until=claimed_until,
                group=REFRESH_GROUP,
                task_name=f"refresh-grant-{grant_id}",
            )
        )
    report = f"enqueued {len(ids)} refresh task(s)"
    if len(due) > len(ids):
        report += f"; {len(due) - len(ids)} due grant(s) still have a task queued or running"
    if lost:
        report += f"; {lost} earlier task(s) never reported back"
    return report


def grant_refresh_task(
    grant_id: int, force: bool = False, actor: str = "system", claimed_until: datetime | None = None
) -> str:
    """Refresh one grant if it still needs it; a second run for a fresh token is a no-op.

    Failures are handled by the service (backoff, counters, events), so the task succeeds and
    django-q2 does not retry on top of the backoff. `force` and a staff `actor` come from the
    admin's "refresh now" on many sellers: LWA is called even for a fresh token, and the
    outcome goes to the seller's history as the admin reports it for a few sellers.
    `claimed_until`: the sweep's claim this task answers, released once it has run (also when
    it raised: django-q2 records that failure, so the task is not lost).
    """
    try:
        return _grant_refresh(grant_id, force=force, actor=actor)
    finally:
        if claimed_until is not None:
            refresh_claim_release(grant_id=grant_id, claimed_until=claimed_until)


def _grant_refresh(grant_id: int, *, force: bool, actor: str) -> str:
    grant = Grant.objects.filter(pk=grant_id).only("id").first()
    if grant is None:
        return "skipped: the grant no longer exists"
    result = grant_refresh(grant=grant, actor=actor, force=force)
    if actor != "system" and result.grant is not None:
        event_record(
            seller=result.grant.seller,
            kind=Event.Kind.REFRESH_REQUESTED,
            detail=f"{RefreshOutcome(result.outcome).label}: {result.detail}",
            data={"outcome": result.outcome},
            actor=actor,
        )
    return f"{result.outcome}: {result.detail}"


def grant_refresh_enqueue(*, grant_ids: list[int], actor: str, force: bool = False) -> None:
    """Queue one refresh task per grant, sent when the current transaction commits."""
    for grant_id in grant_ids:
        transaction.on_commit(
            partial(
                django_q.tasks.async_task, "sellers.tasks.grant_refresh_task", grant_id, force=force, actor=actor,
                group=REFRESH_GROUP, task_name=f"refresh-grant-{grant_id}-requested",
            )
        )


def webhook_deliver(tenant_id: int, body: str, attempt: int = 1, message_id: str = "") -> str:
    """Deliver one signed webhook; failures schedule the next attempt (same message id) and raise
    (recorded by django-q2)."""
    return _webhook_deliver(tenant_id=tenant_id, body=body, attempt=attempt, message_id=message_id)


def identity_reviews_expire_task() -> str:
    """Hourly: identity reviews nobody decided within 7 days lose their held tokens."""
    return f"expired {identity_reviews_expire()} identity review(s)"
