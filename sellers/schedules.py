"""django-q2 schedules the app needs, created idempotently after every `migrate`
(and by `manage.py setup_schedules`). Add an entry here; never create schedules by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from django_q.models import Schedule


@dataclass(frozen=True)
class ScheduleSpec:
    name: str  # unique; the key that makes setup idempotent
    func: str  # dotted path of the task function
    minutes: int  # run every N minutes
    description: str = ""


SCHEDULES: list[ScheduleSpec] = [
    ScheduleSpec(
        name="refresh-due-tokens",
        func="sellers.tasks.grants_refresh_due",
        minutes=5,
        description="Enqueue a refresh for each grant whose access token expires within the refresh window.",
    ),
    ScheduleSpec(
        name="renewals-expire",
        func="sellers.services.renewals.renewals_expire_task",
        minutes=60,
        description="Mark expired the sellers whose authorization crossed 365 days (status is stored).",
    ),
    ScheduleSpec(
        name="onboarding-links-expire",
        func="sellers.services.status.onboarding_links_expire_task",
        minutes=60,
        description="Mark link_expired the never-connected sellers whose every link expired unused (status is stored).",
    ),
    ScheduleSpec(
        name="renewal-digest",
        func="sellers.services.renewals.renewal_digests_task",
        minutes=24 * 60,
        description="Daily: email each tenant's staff the renewals due, expired, partial and revoked sellers.",
    ),
    ScheduleSpec(
        name="identity-reviews-expire",
        func="sellers.tasks.identity_reviews_expire_task",
        minutes=60,
        description="Discard the held tokens of identity reviews nobody decided within 7 days.",
    ),
    ScheduleSpec(
        name="flow-leftovers-delete",
        func="authflow.tasks.flow_leftovers_delete_task",
        minutes=60,
        description="Delete OAuth states a day past their expiry and expired sessions (Login URI starts are anonymous).",
    ),
]


def schedules_ensure() -> list[str]:
    """Create or update each schedule by name; returns the names created."""
    created = []
    for spec in SCHEDULES:
        _, was_created = Schedule.objects.update_or_create(
            name=spec.name,
            defaults={"func": spec.func, "schedule_type": Schedule.MINUTES, "minutes": spec.minutes, "repeats": -1},
        )
        if was_created:
            created.append(spec.name)
    return created
