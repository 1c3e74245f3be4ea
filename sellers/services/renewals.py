"""Yearly renewals: Amazon makes every seller consent again 365 days after authorizing.

* `renewals_announce` — once per authorization, a RENEWAL_DUE event (webhook `connection.expiring`)
  when its renewal comes within SPCONNECT_RENEWAL_WINDOW_DAYS;
* `renewals_expire` — the sweep: a status is stored, so sellers whose authorization crossed 365
  days are re-synced to `expired`, each with an EXPIRED event (webhook `connection.expired`);
* `renewal_digest_send` — one email a day to each tenant's staff listing renewals due, expired,
  partial and revoked sellers; nothing is sent when there is nothing to say.

Which sellers are due or past their renewal is asked of `sellers.selectors` (`renewals_due`,
`sellers_to_expire`), where the 365-day rule lives.

`renewals_expire_task` and `renewal_digests_task` are the django-q2 entry points
(sellers/schedules.py); both are safe to run twice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.template.loader import render_to_string
from django.utils import timezone

from sellers.models import Event, Grant, Seller, Tenant
from sellers.scopes import short_name
from sellers.selectors import (
    renewal_due_q,
    renewals_due,
    required_scopes,
    required_scopes_by_tenant,
    sellers_to_expire,
)

from .events import event_record
from .notifications import notify_staff
from .requirements import STATUS_GRANT_FIELDS
from .status import seller_status_transition
from .webhooks import webhook_enqueue

# Sellers listed per section of the digest; the rest are counted ("and 120 more").
DIGEST_LIST_LIMIT = 25
# The digest is daily; the guard outlives a day so a task redelivered late does not resend.
DIGEST_GUARD_SECONDS = 36 * 3600


def renewals_announce(*, now: datetime | None = None, chunk_size: int = 1000) -> int:
    """Record RENEWAL_DUE once for each active authorization whose renewal now falls within
    SPCONNECT_RENEWAL_WINDOW_DAYS; returns how many were announced.

    "Once" is per authorization: an event recorded after the grant's `authorized_at` belongs to
    it, so a seller who authorizes again is announced again a year later. Running it twice
    announces nothing the second time.
    """
    now = now or timezone.now()
    announced = Event.objects.filter(
        seller_id=OuterRef("pk"), kind=Event.Kind.RENEWAL_DUE, created_at__gte=OuterRef("grant__authorized_at")
    )
    candidates = (
        Seller.objects.filter(renewal_due_q(now=now, within_days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS, overdue=False))
        .exclude(Exists(announced))
        .select_related("grant")
        .only("id", "tenant_id", "grant__authorized_at")
        .order_by("id")
    )
    count = 0
    for seller in candidates[:chunk_size]:  # the hourly schedule takes the rest next time
        due = seller.grant.renewal_due_at
        with transaction.atomic():
            event = event_record(
                kind=Event.Kind.RENEWAL_DUE,
                seller=seller,
                detail=f"Amazon requires this seller to authorize again by {due:%Y-%m-%d}; send a re-authorization link.",
                data={"authorized_at": seller.grant.authorized_at.isoformat(), "renewal_due_at": due.isoformat()},
            )
            webhook_enqueue(event=event)
        count += 1
    return count


def renewals_expire(*, now: datetime | None = None, tenant: Tenant | None = None, chunk_size: int = 1000) -> int:
    """Mark `expired` every seller whose authorization is 365 days old; returns how many moved.

    Revoked sellers stay revoked (the status precedence says so); each seller that moves gets an
    EXPIRED event. Running it twice changes nothing the second time.
    """
    now = now or timezone.now()
    candidates = sellers_to_expire(now=now)
    if tenant is not None:
        candidates = candidates.filter(tenant=tenant)
    moved = 0
    last_id = 0
    required_cache: dict[int, list[str]] = {}
    while True:
        chunk = list(candidates.filter(id__gt=last_id).only("id", "tenant_id", "status", "name").order_by("id")[:chunk_size])
        if not chunk:
            return moved
        last_id = chunk[-1].id
        missing_tenants = {s.tenant_id for s in chunk} - set(required_cache)
        if missing_tenants:
            found = required_scopes_by_tenant(tenant_ids=missing_tenants)
            required_cache.update({tid: found.get(tid, []) for tid in missing_tenants})
        grants = {g.seller_id: g for g in Grant.objects.filter(seller_id__in=[s.id for s in chunk]).only(*STATUS_GRANT_FIELDS)}
        for seller in chunk:
            grant = grants[seller.id]
            with transaction.atomic():
                transition = seller_status_transition(
                    seller=seller,
                    grant=grant,
                    required=required_cache[seller.tenant_id],
                    kind=Event.Kind.EXPIRED,
                    detail=f"The authorization given on {grant.authorized_at:%Y-%m-%d} is {settings.SPCONNECT_RENEWAL_DAYS} days old; "
                    "Amazon requires the seller to authorize again.",
                    data={"authorized_at": grant.authorized_at.isoformat()},
                    only_when_moved=True,
                )
                if transition.event is not None:
                    webhook_enqueue(event=transition.event)  # staff read it in the daily digest
            moved += transition.moved


@dataclass
class DigestSection:
    short: str  # for the subject line: "3 renewals due, 1 revoked"
    title: str
    total: int
    rows: list[str] = field(default_factory=list)

    @property
    def more(self) -> int:
        return self.total - len(self.rows)


@dataclass
class RenewalDigest:
    tenant: Tenant
    window_days: int
    sections: list[DigestSection]

    @property
    def empty(self) -> bool:
        return not any(s.total for s in self.sections)

    @property
    def subject(self) -> str:
        parts = [f"{s.total} {s.short}" for s in self.sections if s.total]
        return "Renewals and re-authorizations: " + ", ".join(parts)


def _label(seller: Seller) -> str:
    return f"{seller.name} ({seller.selling_partner_id or 'not connected'})"


def _listed(sellers: QuerySet[Seller], *grant_fields: str) -> list[tuple[Seller, Grant]]:
    """The first DIGEST_LIST_LIMIT sellers with their grant, in one query; never a token column."""
    rows = sellers.select_related("grant").only("name", "selling_partner_id", *(f"grant__{f}" for f in grant_fields))
    # A seller listed as expired, partial or revoked has a grant; a status stored before its
    # grant went away would still be listed, with an empty one.
    return [(seller, getattr(seller, "grant", None) or Grant()) for seller in rows[:DIGEST_LIST_LIMIT]]


def _due_line(seller: Seller, grant: Grant, now: datetime) -> str:
    days = max(0, math.ceil((grant.renewal_due_at - now).total_seconds() / 86400))
    return f"{_label(seller)}: due {grant.renewal_due_at:%Y-%m-%d} (in {days} day{'s' if days != 1 else ''})"


def _missing_line(seller: Seller, grant: Grant, required: list[str]) -> str:
    missing = [short_name(s) for s in required if s not in set(grant.effective_scopes)]
    return f"{_label(seller)}: missing {', '.join(missing) or 'a required scope'}"


def renewal_digest_build(*, tenant: Tenant, now: datetime | None = None) -> RenewalDigest:
    """What a tenant's staff should know today. Grant columns are read with only(): no token."""
    now = now or timezone.now()
    window = settings.SPCONNECT_RENEWAL_WINDOW_DAYS
    sellers = Seller.objects.filter(tenant=tenant).order_by("name", "id")
    required = required_scopes(tenant_id=tenant.pk)

    due_qs = renewals_due(tenant=tenant, now=now).order_by("grant__authorized_at", "id")
    due_rows = [_due_line(seller, grant, now) for seller, grant in _listed(due_qs, "authorized_at")]
    expired_qs = sellers.filter(status=Seller.Status.EXPIRED)
    expired_rows = [
        f"{_label(seller)}: authorized {grant.authorized_at:%Y-%m-%d}, expired {grant.renewal_due_at:%Y-%m-%d}"
        for seller, grant in _listed(expired_qs, "authorized_at")
    ]
    partial_qs = sellers.filter(status=Seller.Status.PARTIAL)
    partial_rows = [
        _missing_line(seller, grant, required) for seller, grant in _listed(partial_qs, "granted_scopes", "refused_scopes")
    ]
    revoked_qs = sellers.filter(status=Seller.Status.REVOKED)
    revoked_rows = [
        _label(seller) + (f": revoked {grant.revoked_at:%Y-%m-%d}" if grant.revoked_at else "")
        for seller, grant in _listed(revoked_qs, "revoked_at")
    ]
    return RenewalDigest(
        tenant=tenant,
        window_days=window,
        sections=[
            DigestSection("renewals due", f"Renewals due within {window} days", due_qs.count(), due_rows),
            DigestSection("expired", "Expired (renewal overdue)", expired_qs.count(), expired_rows),
            DigestSection("partial", "Partial (a required permission is missing)", partial_qs.count(), partial_rows),
            DigestSection("revoked", "Revoked", revoked_qs.count(), revoked_rows),
        ],
    )


def renewal_digest_send(*, tenant: Tenant, now: datetime | None = None, force: bool = False) -> bool:
    """Email the tenant's owners and managers today's digest. False when there was nothing to say
    or it was already sent today (unless `force`)."""
    now = now or timezone.now()
    digest = renewal_digest_build(tenant=tenant, now=now)
    if digest.empty:
        return False
    # A daily guard in the shared cache (Redis in production): a task delivered twice sends once.
    guard = f"spconnect:renewal-digest:{tenant.pk}:{now:%Y-%m-%d}"
    if not cache.add(guard, 1, DIGEST_GUARD_SECONDS) and not force:
        return False
    body = render_to_string("email/renewal_digest.txt", {"digest": digest, "tenant": tenant, "now": now})
    notify_staff(tenant=tenant, subject=digest.subject, body=body)
    return True


# --- django-q2 entry points (listed in sellers/schedules.py) -----------------------------------


def renewals_expire_task() -> str:
    """Hourly: announce renewals coming due, and turn authorizations past 365 days into `expired`."""
    announced = renewals_announce()
    return f"{announced} renewal(s) announced; {renewals_expire()} seller(s) expired"


def renewal_digests_task() -> str:
    """Daily: the expiry sweep, then one digest per tenant that has something to report."""
    expired = renewals_expire()
    sent = 0
    for tenant in Tenant.objects.order_by("pk"):
        with transaction.atomic():  # notify_staff sends on commit
            sent += renewal_digest_send(tenant=tenant)
    return f"{expired} seller(s) expired; digest sent to {sent} tenant(s)"
