"""Reads: the questions spconnect asks of its tables, each answered in one place.

`sellers/services/` changes things; the functions here only read (HackSoft's selectors), with
keyword-only arguments, and return querysets or plain values. Views, the admin, commands,
tasks and services all come here, so a rule such as "a tenant's required scopes" or "renewal
due" has one home. None of them reads a token column.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from sellers.models import ONBOARDING_STATUSES, TENANT_SECRET_FIELDS, Event, Grant, Invitation, ScopeRequirement, Seller, Tenant
from sellers.scopes import CATALOG, validate_scopes

# --- Tenants -------------------------------------------------------------------------------------


def tenant_for_notices(*, tenant_id: int) -> Tenant:
    """The tenant as announcing a change needs it (name, staff, webhook URL), without its secrets:
    a revocation or status change must be recorded and announced even when a secret of the
    tenant cannot be decrypted."""
    return Tenant.objects.defer(*TENANT_SECRET_FIELDS).get(pk=tenant_id)


# --- Scopes a tenant asks for -----------------------------------------------------------------


def required_scopes_by_tenant(*, tenant_ids: Iterable[int]) -> dict[int, list[str]]:
    """Each tenant's required scopes in catalog order, in one query; tenants without any are
    left out. A stored scope outside the catalog is ignored: no grant can hold it."""
    found: dict[int, set[str]] = {}
    for tenant_id, scope in ScopeRequirement.objects.filter(
        tenant_id__in=list(tenant_ids), kind=ScopeRequirement.Kind.REQUIRED
    ).values_list("tenant_id", "scope"):
        found.setdefault(tenant_id, set()).add(scope)
    return {tenant_id: [s for s in CATALOG if s in scopes] for tenant_id, scopes in found.items()}


def required_scopes(*, tenant_id: int) -> list[str]:
    """The scopes a seller of this tenant must grant to be `active`, in catalog order."""
    return required_scopes_by_tenant(tenant_ids=[tenant_id]).get(tenant_id, [])


def requested_scopes(*, tenant_id: int) -> list[str]:
    """Every scope the tenant asks sellers for, required and optional, in catalog order.

    Raises InvalidScope (the seed's `invalid_scope` wording) for a scope outside the catalog:
    this is the one check before a seller is sent to Amazon's consent page.
    """
    return validate_scopes(ScopeRequirement.objects.filter(tenant_id=tenant_id).values_list("scope", flat=True))


# --- Scopes a grant holds (portable JSON filters) ---------------------------------------------


def json_list_has_q(path: str, value: str) -> Q:
    """`value` is an element of the JSON list at `path`, on SQLite and PostgreSQL alike.

    `__contains` on a JSONField means "JSON containment" on PostgreSQL but is not supported on
    SQLite; a case-insensitive match of the quoted, JSON-encoded value on the column's text
    works on both. Scope names never contain one another once quoted.
    """
    return Q(**{f"{path}__icontains": json.dumps(value)})


def scope_held_q(scope: str, prefix: str = "") -> Q:
    """An active grant whose effective scopes (granted, not refused by Amazon) include `scope`.

    `prefix` reaches the grant from another model (`"grant__"` from Seller).
    """
    return (
        Q(**{f"{prefix}status": Grant.Status.ACTIVE})
        & json_list_has_q(f"{prefix}granted_scopes", scope)
        & ~json_list_has_q(f"{prefix}refused_scopes", scope)
    )


def sellers_holding_scope(*, sellers: QuerySet[Seller], scope: str) -> QuerySet[Seller]:
    return sellers.filter(id__in=Grant.objects.filter(scope_held_q(scope)).values("seller_id"))


def sellers_missing_required_scope(*, sellers: QuerySet[Seller], scope: str) -> QuerySet[Seller]:
    """Sellers whose tenant requires `scope` and whose grant does not hold it (or no grant)."""
    required = ScopeRequirement.objects.filter(
        tenant_id=OuterRef("tenant_id"), scope=scope, kind=ScopeRequirement.Kind.REQUIRED
    )
    holding = Grant.objects.filter(scope_held_q(scope)).values("seller_id")
    return sellers.filter(Exists(required)).exclude(id__in=holding)


# --- Yearly renewal ---------------------------------------------------------------------------


def renewal_cutoff(*, at: datetime) -> datetime:
    """Authorizations given at or before this instant are due for renewal by `at`.

    `Grant.renewal_due_at <= at` written on the indexed `authorized_at` column, so SQL can
    filter by it: Amazon makes every seller consent again SPCONNECT_RENEWAL_DAYS after
    authorizing.
    """
    return at - timedelta(days=settings.SPCONNECT_RENEWAL_DAYS)


def renewal_due_q(*, now: datetime, within_days: int = 0, overdue: bool = True, prefix: str = "grant__") -> Q:
    """An active grant whose renewal falls due by `now + within_days`; `overdue=False` leaves out
    those already past it (expired). `prefix` reaches the grant (`""` on Grant itself)."""
    q = Q(
        **{
            f"{prefix}status": Grant.Status.ACTIVE,
            f"{prefix}authorized_at__lte": renewal_cutoff(at=now + timedelta(days=within_days)),
        }
    )
    if not overdue:
        q &= Q(**{f"{prefix}authorized_at__gt": renewal_cutoff(at=now)})
    return q


def renewal_bucket_q(*, now: datetime, start: int, end: int, prefix: str = "grant__") -> Q:
    """An active grant whose renewal falls due between `start` (included) and `end` days from now:
    the dashboard's renewal bars and the sellers list's filter behind them."""
    return Q(
        **{
            f"{prefix}status": Grant.Status.ACTIVE,
            f"{prefix}authorized_at__gte": renewal_cutoff(at=now + timedelta(days=start)),
            f"{prefix}authorized_at__lt": renewal_cutoff(at=now + timedelta(days=end)),
        }
    )


def renewals_due(*, tenant: Tenant, now: datetime | None = None, window_days: int | None = None) -> QuerySet[Seller]:
    """The tenant's sellers with an active grant whose renewal is due within the window
    (SPCONNECT_RENEWAL_WINDOW_DAYS by default), not yet expired."""
    days = settings.SPCONNECT_RENEWAL_WINDOW_DAYS if window_days is None else window_days
    return Seller.objects.filter(tenant=tenant).filter(
        renewal_due_q(now=now or timezone.now(), within_days=days, overdue=False)
    )


def sellers_to_expire(*, now: datetime) -> QuerySet[Seller]:
    """Sellers whose active grant is past its renewal date but whose stored status does not say
    so yet (revoked sellers stay revoked)."""
    return Seller.objects.filter(renewal_due_q(now=now)).exclude(
        status__in=[Seller.Status.EXPIRED, Seller.Status.REVOKED]
    )


# --- Links ------------------------------------------------------------------------------------


def grant_version(*, seller: Seller | None) -> int | None:
    """The version of the seller's grant (None: no grant), without reading any token."""
    if seller is None:
        return None
    return Grant.objects.filter(seller=seller).values_list("version", flat=True).first()


def seller_open_links(*, seller_ids: Collection[int], now: datetime | None = None) -> QuerySet[Invitation]:
    """The sellers' links that can still be used (unexpired, not completed), each seller's
    newest first: the first row per seller is its open link."""
    return Invitation.objects.filter(
        seller_id__in=list(seller_ids), expires_at__gt=now or timezone.now(), completed_at__isnull=True
    ).order_by("seller_id", "-expires_at")


# --- Token refresh ----------------------------------------------------------------------------


# How far back the dashboard and /healthz count lost refresh tasks.
REFRESH_LOST_PERIOD = timedelta(hours=1)


def refresh_window() -> timedelta:
    """How long before expiry an access token is refreshed: the refresh window, never less than
    the margin under which a token is no longer handed out."""
    margin = timedelta(seconds=settings.SPCONNECT_ACCESS_TOKEN_MARGIN_SECONDS)
    return max(margin, timedelta(seconds=settings.SPCONNECT_REFRESH_WINDOW_SECONDS))


def grants_due(*, tenant: Tenant | None = None, now: datetime | None = None) -> QuerySet[Grant]:
    """Active grants whose access token expires within the refresh window, not backing off.

    While a tenant's app credentials are rejected, only its soonest-expiring grant is due (a
    probe): hundreds of requests bound to fail would only annoy LWA. Its success clears the flag.
    """
    now = now or timezone.now()
    qs = Grant.objects.filter(status=Grant.Status.ACTIVE).filter(
        Q(access_token_expires_at__isnull=True) | Q(access_token_expires_at__lte=now + refresh_window())
    ).filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
    if tenant is not None:
        qs = qs.filter(seller__tenant=tenant)
    healthy = qs.filter(seller__tenant__credentials_failing_since__isnull=True)
    probes = []
    failing_tenants = qs.filter(seller__tenant__credentials_failing_since__isnull=False).values_list(
        "seller__tenant_id", flat=True
    ).distinct()
    for tenant_id in failing_tenants:
        first = qs.filter(seller__tenant_id=tenant_id).order_by("access_token_expires_at", "pk").values_list("pk", flat=True).first()
        if first is not None:
            probes.append(first)
    if probes:
        return Grant.objects.filter(Q(pk__in=healthy.values("pk")) | Q(pk__in=probes)).order_by("access_token_expires_at", "pk")
    return healthy.order_by("access_token_expires_at", "pk")


def refresh_lost_q(*, since: datetime, now: datetime) -> Q:
    """A grant whose scheduled refresh task never reported back within its window, noticed by a
    sweep since `since` (`refresh_lost_at`) or expired and not yet noticed (the claim still set)."""
    return Q(refresh_lost_at__gte=since) | Q(refresh_claimed_until__lte=now)


def grants_refresh_lost_count(*, since: datetime, now: datetime | None = None) -> int:
    """How many grants lost a scheduled refresh task since `since` (see `refresh_lost_q`)."""
    return Grant.objects.filter(refresh_lost_q(since=since, now=now or timezone.now())).count()


# --- Re-authorization campaigns ---------------------------------------------------------------

# Without any filter a campaign targets the sellers that cannot be served as they are, plus
# those whose yearly renewal falls within SPCONNECT_RENEWAL_WINDOW_DAYS. `failing` is left out:
# it is a transient LWA problem that a new consent does not fix.
DEFAULT_STATUSES = (Seller.Status.REVOKED, Seller.Status.PARTIAL, Seller.Status.EXPIRED)


@dataclass(frozen=True)
class ReauthSelection:
    """Which of a tenant's sellers a campaign targets. Filters combine with AND.

    Built and checked by `services.campaigns.reauth_selection_build`.
    """

    tenant: Tenant
    statuses: tuple[str, ...] = ()
    missing_scopes: tuple[str, ...] = ()
    renewal_due_within_days: int | None = None
    selling_partner_ids: tuple[str, ...] = ()

    @property
    def is_default(self) -> bool:
        return not (self.statuses or self.missing_scopes or self.selling_partner_ids) and self.renewal_due_within_days is None


def reauth_candidates(*, selection: ReauthSelection, now: datetime | None = None) -> QuerySet[Seller]:
    """Sellers matching every SQL-expressible filter. The missing-scope filter needs the grant's
    JSON scope lists and is applied per chunk by `reauth_run` (JSON containment is not portable
    to SQLite)."""
    now = now or timezone.now()
    qs = Seller.objects.filter(tenant=selection.tenant)
    if selection.is_default:
        # Due within the window, or already overdue (an expired authorization needs renewing most).
        return qs.filter(
            Q(status__in=DEFAULT_STATUSES) | renewal_due_q(now=now, within_days=settings.SPCONNECT_RENEWAL_WINDOW_DAYS)
        )
    if selection.statuses:
        qs = qs.filter(status__in=selection.statuses)
    if selection.renewal_due_within_days is not None:
        qs = qs.filter(renewal_due_q(now=now, within_days=selection.renewal_due_within_days))
    if selection.selling_partner_ids:
        qs = qs.filter(selling_partner_id__in=selection.selling_partner_ids)
    if selection.missing_scopes:
        qs = qs.filter(grant__isnull=False)  # a seller never connected has no scope to lack
    return qs


# --- The admin index dashboard ----------------------------------------------------------------


def seller_counts_by_status(*, tenant_ids: Collection[int]) -> dict[int, dict[str, int]]:
    """{tenant id: {status: number of sellers}}, one grouped query."""
    counts: dict[int, dict[str, int]] = {}
    for tenant_id, status, n in (
        Seller.objects.filter(tenant_id__in=list(tenant_ids))
        .values_list("tenant_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        counts.setdefault(tenant_id, {})[status] = n
    return counts


def grant_figures_by_tenant(
    *, tenant_ids: Collection[int], now: datetime, renewal_buckets: Iterable[tuple[int, int]]
) -> dict[int, dict[str, int]]:
    """Per tenant, in one grouped query: `authorized` (active grants), `failing`, `refresh_lost`
    (grants whose scheduled refresh task was lost in the last REFRESH_LOST_PERIOD), `scope_<i>`
    (active grants holding the i-th catalog scope) and `renewal_<i>` (active grants whose renewal
    falls due in the i-th [start, end) days from `now`)."""
    aggregates = {
        "authorized": Count("id", filter=Q(status=Grant.Status.ACTIVE)),
        "failing": Count("id", filter=Q(status=Grant.Status.ACTIVE, failing_since__isnull=False)),
        "refresh_lost": Count("id", filter=refresh_lost_q(since=now - REFRESH_LOST_PERIOD, now=now)),
    }
    for i, scope in enumerate(CATALOG):
        aggregates[f"scope_{i}"] = Count("id", filter=scope_held_q(scope))
    for i, (start, end) in enumerate(renewal_buckets):
        aggregates[f"renewal_{i}"] = Count("id", filter=renewal_bucket_q(now=now, start=start, end=end, prefix=""))
    return {
        row.pop("seller__tenant_id"): row
        for row in Grant.objects.filter(seller__tenant_id__in=list(tenant_ids))
        .values("seller__tenant_id")
        .annotate(**aggregates)
        .order_by()
    }


# --- Onboarding funnel and what needs attention -----------------------------------------------

FUNNEL_DAYS = 30
# History kinds that show a seller got at least as far as opening its link / Amazon's page.
_AT_AMAZON_KINDS = (Event.Kind.CONSENT_STARTED, Event.Kind.DENIED, Event.Kind.CONSENT_ERROR, Event.Kind.EXCHANGE_FAILED)
_OPENED_KINDS = (Event.Kind.LINK_OPENED, *_AT_AMAZON_KINDS)


class FunnelStep:
    INVITED = "invited"
    OPENED = "opened"
    AT_AMAZON = "at_amazon"
    CONNECTED = "connected"
    DECLINED = "declined"
    LINK_EXPIRED = "link_expired"

    # (value, label): the funnel left to right, then what is shown beside it.
    choices = (
        (INVITED, "Invited"), (OPENED, "Opened the link"), (AT_AMAZON, "Went to Amazon"), (CONNECTED, "Connected"),
        (DECLINED, "Declined"), (LINK_EXPIRED, "Link expired"),
    )


def funnel_q(step: str, *, now: datetime) -> Q:
    """Sellers invited in the last FUNNEL_DAYS days that reached `step` (or, for declined and
    link expired, are there now). The dashboard's counts and the sellers list's filter both use
    it, so a count and the list behind it always agree."""
    def reached(statuses: tuple[str, ...], kinds: tuple[Event.Kind, ...]) -> Q:
        # The stored status or a grant says so for most sellers; the history is read only for
        # those whose status does not tell (invited again, link expired, back from an error).
        told = Q(status__in=statuses) | Q(grant__isnull=False)
        forgotten = Q(status__in=[s for s in ONBOARDING_STATUSES if s not in statuses]) & Q(
            Exists(Event.objects.filter(seller_id=OuterRef("pk"), kind__in=kinds))
        )
        return told | forgotten

    cohort = Q(created_at__gte=now - timedelta(days=FUNNEL_DAYS))
    went = (Seller.Status.AT_AMAZON, Seller.Status.DECLINED)
    by_step = {
        FunnelStep.INVITED: Q(),
        FunnelStep.OPENED: reached((Seller.Status.OPENED, *went), _OPENED_KINDS),
        FunnelStep.AT_AMAZON: reached(went, _AT_AMAZON_KINDS),
        FunnelStep.CONNECTED: Q(grant__isnull=False),
        FunnelStep.DECLINED: Q(status=Seller.Status.DECLINED),
        FunnelStep.LINK_EXPIRED: Q(status=Seller.Status.LINK_EXPIRED),
    }
    return cohort & by_step[step]


def funnel_by_tenant(*, tenant_ids: Collection[int], now: datetime) -> dict[int, dict[str, int]]:
    """{tenant id: {funnel step: sellers}}, one grouped query."""
    aggregates = {step: Count("id", filter=funnel_q(step, now=now)) for step, _ in FunnelStep.choices}
    return {
        row.pop("tenant_id"): row
        for row in Seller.objects.filter(tenant_id__in=list(tenant_ids), created_at__gte=now - timedelta(days=FUNNEL_DAYS))
        .values("tenant_id")
        .annotate(**aggregates)
        .order_by()
    }


# Renewals due within this many days need attention now (the campaign window is wider).
ATTENTION_RENEWAL_DAYS = 7
# Most urgent first: a revoked or failing connection already stops the agency's work.
ATTENTION_STATUSES = (
    Seller.Status.REVOKED, Seller.Status.FAILING, Seller.Status.DECLINED, Seller.Status.LINK_EXPIRED, Seller.Status.PARTIAL,
)


def attention_renewal_q(*, now: datetime) -> Q:
    return Q(status=Seller.Status.ACTIVE) & renewal_bucket_q(now=now, start=0, end=ATTENTION_RENEWAL_DAYS)


def sellers_needing_attention(*, tenant_ids: Collection[int], now: datetime, per_tenant: int) -> list[Seller]:
    """Up to `per_tenant` sellers of each tenant to act on now (ATTENTION_STATUSES, then renewals
    due within ATTENTION_RENEWAL_DAYS), most urgent first, in one query. Each row has `urgency`
    (its index in ATTENTION_STATUSES; renewals last) and the grant's `authorized_at`."""
    urgency = Case(
        *(When(status=s, then=Value(i)) for i, s in enumerate(ATTENTION_STATUSES)),
        default=Value(len(ATTENTION_STATUSES)),
        output_field=IntegerField(),
    )
    rows = (
        Seller.objects.filter(tenant_id__in=list(tenant_ids))
        .filter(Q(status__in=ATTENTION_STATUSES) | attention_renewal_q(now=now))
        .annotate(
            urgency=urgency,
            authorized_at=F("grant__authorized_at"),
            rank=Window(RowNumber(), partition_by=[F("tenant_id")], order_by=[urgency.asc(), F("updated_at").desc(), F("id").asc()]),
        )
        .filter(rank__lte=per_tenant)
        .only("id", "tenant_id", "name", "status", "selling_partner_id", "updated_at")
        .order_by("tenant_id", "rank")
    )
    return list(rows)


def attention_counts_by_tenant(*, tenant_ids: Collection[int], now: datetime) -> dict[int, int]:
    """{tenant id: renewals due within ATTENTION_RENEWAL_DAYS}; the statuses' counts come from
    `seller_counts_by_status`."""
    return dict(
        Seller.objects.filter(tenant_id__in=list(tenant_ids))
        .filter(attention_renewal_q(now=now))
        .values_list("tenant_id")
        .annotate(n=Count("id"))
        .order_by()
    )
