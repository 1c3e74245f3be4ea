"""django-q2 schedules the app needs, created idempotently after every `migrate`
(and by `manage.py setup_schedules`). Add an entry here; never create schedules by hand.
"""

from __future__ import annotations

from dataclasses import dataclass


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
]


def schedules_ensure() -> list[str]:
    """Create or update each schedule by name; returns the names created."""
    from django_q.models import Schedule

    created = []
    for spec in SCHEDULES:
        _, was_created = Schedule.objects.update_or_create(
            name=spec.name,
            defaults={"func": spec.func, "schedule_type": Schedule.MINUTES, "minutes": spec.minutes, "repeats": -1},
        )
        if was_created:
            created.append(spec.name)
    return created
