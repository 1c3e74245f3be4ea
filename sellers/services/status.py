"""Seller status: derived from the grant, the tenant's required scopes and the clock.

Stored on the seller (so lists and filters are one indexed query) and recomputed by
`seller_status_sync` whenever one of its inputs changes; the renewal sweep recomputes sellers
whose authorization crossed 365 days. `seller_status_transition` is the same recomputation
when something else happened to the seller: one event says what and how the status moved, and
staff are told.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from sellers.models import ONBOARDING_STATUSES, TOKEN_FIELDS, Event, Grant, Invitation, Seller
from sellers.selectors import required_scopes, tenant_for_notices

from .events import event_record
from .notifications import notify_staff


def missing_required_scopes(*, grant: Grant | None, required: list[str]) -> list[str]:
    have = set(grant.effective_scopes) if grant is not None else set()
    return [s for s in required if s not in have]


def seller_status_compute(
    *, grant: Grant | None, required: list[str], now: datetime | None = None, step: str = Seller.Status.INVITED
) -> str:
    """Precedence: revoked > expired > failing > partial > active. Without a grant the seller is
    still onboarding: its stored `step` (invited, opened, at Amazon, declined, link expired)."""
    now = now or timezone.now()
    if grant is None:
        return step if step in ONBOARDING_STATUSES else Seller.Status.INVITED
    if grant.status == Grant.Status.REVOKED:
        return Seller.Status.REVOKED
    if grant.renewal_due_at <= now:
        return Seller.Status.EXPIRED
    if grant.failing_since is not None:
        return Seller.Status.FAILING
    if missing_required_scopes(grant=grant, required=required):
        return Seller.Status.PARTIAL
    return Seller.Status.ACTIVE


def seller_status_sync(
    *,
    seller: Seller,
    grant: Grant | None = None,
    required: list[str] | None = None,
    cause: str = "",
    actor: str = "system",
    record: bool = True,
) -> str:
    """Recompute and store the seller's status; append a STATUS_CHANGED event when it moved.

    Callers that already wrote a more specific event (granted, revoked, …) pass record=False.
    """
    if grant is None:
        # No token is needed for a status, and a grant that no key decrypts must still get one
        # (marking it revoked is the way out when its key is lost).
        grant = Grant.objects.filter(seller=seller).defer(*TOKEN_FIELDS).first()
    if required is None:
        required = required_scopes(tenant_id=seller.tenant_id)
    new = seller_status_compute(grant=grant, required=required, step=seller.status)
    old = seller.status
    if new != old:
        Seller.objects.filter(pk=seller.pk).update(status=new, updated_at=timezone.now())
        seller.status = new
        if record:
            event_record(
                seller=seller,
                kind=Event.Kind.STATUS_CHANGED,
                detail=f"{old} → {new}" + (f": {cause}" if cause else ""),
                data={"from": old, "to": new},
                actor=actor,
            )
    return new


@dataclass(frozen=True)
class StatusTransition:
    """What `seller_status_transition` did: the status before and after, and the event if one
    was recorded."""

    old: str
    new: str
    event: Event | None

    @property
    def moved(self) -> bool:
        return self.new != self.old


def seller_status_transition(
    *,
    seller: Seller,
    grant: Grant | None,
    kind: str,
    detail: str,
    data: dict[str, Any] | None = None,
    actor: str = "system",
    required: list[str] | None = None,
    notice: Callable[[str], tuple[str, str]] | None = None,
    only_when_moved: bool = False,
    step: str | None = None,
    step_when: Q | None = None,
) -> StatusTransition:
    """Re-derive the seller's status after something happened to it, and say so once.

    The status is synced quietly (no STATUS_CHANGED event); instead one `kind` event records
    what happened with `{"from": old, "to": new}` added to `data`. `notice(new status)` gives
    the (subject, body) of the email to the tenant's staff, if they must be told.
    `only_when_moved`: nothing is recorded or sent when the status stayed the same.
    `step`: the onboarding status the seller reached (opened, at Amazon, …); stored only while
    the seller has never connected, so a re-authorization never demotes a connected seller;
    `step_when` adds a condition checked in the same UPDATE (what the caller read may be stale).
    """
    old = seller.status
    if step is not None and not _onboarding_step_store(seller=seller, step=step, when=step_when):
        old = seller.status  # as stored now: the step did not happen
    new = seller_status_sync(seller=seller, grant=grant, required=required, record=False)
    if only_when_moved and new == old:
        return StatusTransition(old, new, None)
    event = event_record(
        seller=seller, kind=kind, detail=detail, data={**(data or {}), "from": old, "to": new}, actor=actor
    )
    if notice is not None:
        subject, body = notice(new)
        notify_staff(tenant=tenant_for_notices(tenant_id=seller.tenant_id), subject=subject, body=body, event=event)
    return StatusTransition(old, new, event)


def _onboarding_step_store(*, seller: Seller, step: str, when: Q | None = None) -> bool:
    """One conditional UPDATE: a seller that has a grant (or got one a moment ago) is left alone.
    True when stored; otherwise `seller.status` is refreshed from the database."""
    if step not in ONBOARDING_STATUSES:
        raise ValueError(f"{step!r} is not an onboarding status")
    target = Seller.objects.filter(pk=seller.pk, status__in=ONBOARDING_STATUSES, grant__isnull=True)
    if when is not None:
        target = target.filter(when)
    stored = target.update(status=step, updated_at=timezone.now())
    if stored:
        seller.status = step
        return True
    seller.status = Seller.objects.filter(pk=seller.pk).values_list("status", flat=True).first() or seller.status
    return False


def onboarding_links_expire(*, now: datetime | None = None) -> int:
    """Mark `link_expired` the never-connected sellers whose every link expired unused.

    Idempotent (a seller already marked is not looked at again); declined sellers keep
    `declined`, the more useful thing to know. Returns how many sellers moved.
    """
    now = now or timezone.now()
    waiting = (Seller.Status.INVITED, Seller.Status.OPENED, Seller.Status.AT_AMAZON)
    stale = (
        Seller.objects.filter(status__in=waiting, grant__isnull=True, invitations__isnull=False)
        .exclude(invitations__expires_at__gt=now)
        .select_related("tenant")
        .distinct()
    )
    moved = 0
    for seller in stale:
        # Checked again as it is written: a seller who declined or got a new link since the
        # query above keeps that.
        still_waiting = Q(status__in=waiting) & ~Q(
            Exists(Invitation.objects.filter(seller_id=OuterRef("pk"), expires_at__gt=now))
        )
        done = seller_status_transition(
            seller=seller, grant=None, kind=Event.Kind.LINK_EXPIRED, step=Seller.Status.LINK_EXPIRED,
            step_when=still_waiting,
            detail="The link expired before the seller connected; send a new one.", only_when_moved=True,
        )
        moved += done.moved
    return moved


def onboarding_links_expire_task() -> int:
    return onboarding_links_expire()
