"""Access tokens on demand: cached, refreshed at LWA by exactly one caller at a time.

`grant_access_token` is the hot path. A token valid for longer than the margin costs no LWA call
and no query when the caller holds a loaded grant (the token is on the instance, or in the
in-process cache keyed by grant id + `Grant.version` + expiry when the caller deferred the
encrypted columns), and one small query otherwise.

Single flight, so that however many threads and processes ask for one expiring grant, one
request reaches LWA and everybody else uses its answer:

* every caller first takes the grant's lock (`locks.py`: a lock inside the process, so threads
  queue there instead of in the database, and on a SQLite file a byte-range lock that processes
  share);
* PostgreSQL: the refresh runs inside a transaction that re-reads the row with
  `SELECT … FOR UPDATE` (of the grant row only, never the tenant's, which would serialise a
  whole tenant). Whoever waited on the row lock re-reads a token that is already fresh.
* SQLite has no row locks, and holding its database-wide write lock across an HTTP call would
  stall every writer (including the local sandbox answering that very call from the same file):
  the row is re-read once the byte lock is held, with no transaction open across the call, and
  the result is written in a short transaction.
* every write is conditional on the version read under the lock, so a grant that staff revoked
  or a seller re-authorized meanwhile is never overwritten with a token from an older grant.

`actor` names whoever asked for the refresh: "system" (the schedule, callers needing a token),
"staff:<username>" (the admin's "refresh now", also when queued), "command:refresh_tokens".
The events a refresh writes keep "amazon" as their actor, since Amazon's answer caused them, and
name any other requester in `data["requested_by"]`; the revocation and the status change after
new scopes are written by services that take only a text, which then ends "Refresh requested
by …".

Over 400 lines on purpose: the lock, the re-read under it, the writes conditional on what was
read and what each LWA answer does are one protocol, checked most easily in one file.
"""

from __future__ import annotations

import contextlib
import functools
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.models import Event, Grant
from sellers.scopes import CATALOG
from sellers.selectors import refresh_window

from ..credentials import tenant_lwa_call
from ..grants import grant_mark_revoked
from ..status import seller_status_sync, seller_status_transition
from ..tenants import tenant_credentials_failed, tenant_credentials_ok
from .cache import cache_forget, cache_put, cached_token
from .errors import AppCredentialsRejected, TokenUnavailable, reauthorization_required
from .locks import grant_lock

# Backoff after a transient failure: base * 2^(n-1), capped, with "equal jitter" (half fixed,
# half random) so a fleet of grants that failed together does not retry together.
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
SYSTEM = "system"  # the actor of refreshes nobody in particular asked for


class RefreshOutcome(models.TextChoices):
    REFRESHED = "refreshed", "Refreshed"
    SKIPPED = "skipped", "Skipped"
    REVOKED = "revoked", "Revoked"
    CREDENTIALS_FAILED = "credentials_failed", "App credentials rejected"
    TRANSIENT_FAILURE = "transient_failure", "Transient failure"
    UNDECRYPTABLE = "undecryptable", "Cannot be decrypted"


@dataclass(frozen=True)
class RefreshResult:
    outcome: str
    detail: str = ""
    # The grant as read under the lock (and updated); None when it no longer exists.
    grant: Grant | None = field(default=None, repr=False)
    lwa_called: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (RefreshOutcome.REFRESHED, RefreshOutcome.SKIPPED)


def access_token_margin() -> timedelta:
    """A token valid for less than this is refreshed before it is handed out."""
    return timedelta(seconds=settings.SPCONNECT_ACCESS_TOKEN_MARGIN_SECONDS)


def _requested_by(actor: str) -> dict:
    """Event data naming whoever asked for the refresh, unless the system did."""
    return {} if actor == SYSTEM else {"requested_by": actor}


def _requested_by_note(actor: str) -> str:
    return "" if actor == SYSTEM else f" Refresh requested by {actor}."


def _changed_meanwhile() -> RefreshResult:
    return RefreshResult(
        RefreshOutcome.SKIPPED, "The grant changed during the refresh (re-authorized or revoked); result discarded.",
        None, lwa_called=True,
    )


def _backoff(failures: int, retry_after: float | None) -> timedelta:
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    seconds = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after:
        seconds = max(seconds, min(retry_after, BACKOFF_CAP_SECONDS))
    return timedelta(seconds=seconds)


# --- Reading and writing under the lock ------------------------------------------------------


def _read_for_refresh(grant_id: int) -> Grant | None:
    qs = Grant.objects.select_related("seller__tenant").filter(pk=grant_id)
    if connection.features.has_select_for_update:
        # Lock the grant row only: locking the joined tenant row would serialise its sellers.
        qs = qs.select_for_update(of=("self",))
    # Iterate rather than .first(): no ORDER BY to compile for a primary-key lookup.
    return next(iter(qs), None)


# Fields that change without a version bump (failure bookkeeping) or that decide a refresh.
_VOLATILE = ("version", "status", "access_token_expires_at", "next_attempt_at", "consecutive_failures", "failing_since", "last_error")
_VOLATILE_DATETIMES = frozenset({"access_token_expires_at", "next_attempt_at", "failing_since"})

# A refresh runs one re-read under the lock (sweeps) and one conditional UPDATE per grant.
# Built through the ORM they cost 0.5-1 ms more client CPU per refresh (query building and
# compiling), which made the sweep 6-24 % slower in paired runs even with 20 ms of LWA latency
# at concurrency 8 (docs/benchmarks.md, "Refresh path: ORM or hand-built SQL"). Written here
# once per field set, they cost a string lookup. Values still go through each field's own
# preparation (encryption, datetime adaptation), so what is stored is what the ORM would store.


def _field(name: str) -> models.Field:
    field = Grant._meta.get_field(name)
    assert isinstance(field, models.Field)  # a column of the grant, not a relation's other side
    return field


@functools.lru_cache(maxsize=64)
def _update_sql(vendor: str, fields: tuple[str, ...]) -> str:
    qn = connection.ops.quote_name
    columns = ", ".join(f"{qn(_field(name).column)} = %s" for name in fields)
    where = f"{qn(_field('id').column)} = %s AND {qn('version')} = %s AND {qn('status')} = %s"
    return f"UPDATE {qn(Grant._meta.db_table)} SET {columns} WHERE {where}"


def _update_if_current(grant: Grant, values: dict) -> int:
    """UPDATE the grant with `values` if it still has the version read and is active; rows changed."""
    fields = tuple(values)
    params = [_field(name).get_db_prep_save(values[name], connection) for name in fields]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(connection.vendor, fields), [*params, grant.pk, grant.version, Grant.Status.ACTIVE])
        return cursor.rowcount


@functools.lru_cache(maxsize=4)
def _reread_sql(vendor: str, lock: bool) -> str:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(_field(name).column) for name in _VOLATILE)
    sql = f"SELECT {columns} FROM {qn(Grant._meta.db_table)} WHERE {qn(_field('id').column)} = %s"
    return sql + " FOR UPDATE" if lock else sql


def _aware(value):
    """A datetime read by raw SQL as the ORM would return it (SQLite hands back naive UTC)."""
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value, UTC)


def _reread(preloaded: Grant) -> Grant | None:
    """Under the lock, check a grant loaded in bulk moments ago: one narrow query when unchanged."""
    with connection.cursor() as cursor:
        cursor.execute(_reread_sql(connection.vendor, connection.features.has_select_for_update), [preloaded.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    if row[0] != preloaded.version:
        return _read_for_refresh(preloaded.pk)  # its tokens changed: read them again
    for name, value in zip(_VOLATILE, row, strict=True):
        setattr(preloaded, name, _aware(value) if name in _VOLATILE_DATETIMES else value)
    return preloaded


def _token_is_fresh(grant: Grant, now: datetime, margin: timedelta) -> bool:
    return bool(grant.access_token) and grant.access_token_expires_at is not None and grant.access_token_expires_at > now + margin


# --- Refresh ---------------------------------------------------------------------------------


def _refresh(
    grant_id: int,
    *,
    actor: str,
    force: bool,
    fresh_margin: timedelta,
    stale_token: str | None = None,
    preloaded: Grant | None = None,
) -> RefreshResult:
    with grant_lock(grant_id):
        # PostgreSQL: the transaction holds the row lock across the LWA call. SQLite: no
        # transaction here (the byte lock serialises), only short ones for the writes.
        guard = transaction.atomic() if connection.features.has_select_for_update else contextlib.nullcontext()
        with guard:
            grant = _reread(preloaded) if preloaded is not None else _read_for_refresh(grant_id)
            if grant is None:
                return RefreshResult(RefreshOutcome.SKIPPED, "The grant no longer exists.")
            now = timezone.now()
            if grant.status == Grant.Status.REVOKED:
                return RefreshResult(RefreshOutcome.REVOKED, "The grant is revoked; the seller must re-authorize.", grant)
            if stale_token is not None and grant.access_token != stale_token and _token_is_fresh(grant, now, timedelta(0)):
                # Amazon refused the token the caller used, and somebody has replaced it since.
                return RefreshResult(RefreshOutcome.SKIPPED, "Another caller already refreshed the token.", grant)
            if not force and stale_token is None and _token_is_fresh(grant, now, fresh_margin):
                return RefreshResult(RefreshOutcome.SKIPPED, "The access token is still valid.", grant)
            if not force and grant.next_attempt_at is not None and grant.next_attempt_at > now:
                return RefreshResult(
                    RefreshOutcome.SKIPPED, f"Backing off after a failure until {grant.next_attempt_at:%H:%M:%S} UTC.", grant
                )
            return _call_lwa_and_store(grant, actor=actor)


@sensitive_variables("refresh_token")
def _call_lwa_and_store(grant: Grant, *, actor: str) -> RefreshResult:
    tenant = grant.seller.tenant
    refresh_token = grant.refresh_token
    try:
        token = tenant_lwa_call(
            tenant=tenant,
            call=lambda secret: amazon.lwa_refresh(
                client_id=tenant.client_id, client_secret=secret, refresh_token=refresh_token
            ),
        )
    except amazon.LwaInvalidGrant as exc:
        return _on_revoked(grant, exc, actor=actor)
    except amazon.LwaInvalidClient as exc:
        return _on_credentials_failed(grant, exc)
    except amazon.LwaError as exc:  # LwaTransient, and LwaRejected (invalid_request, …) alike
        return _on_transient(grant, exc, actor=actor)
    return _on_success(grant, token, actor=actor)


def _success_values(grant: Grant, token: amazon.TokenResponse, now: datetime) -> tuple[dict, bool]:
    """The columns a successful refresh writes, and whether they change the granted scopes."""
    values: dict = dict(
        access_token=token.access_token,
        access_token_expires_at=now + timedelta(seconds=token.expires_in),
        last_refreshed_at=now,
        # Plain values, not F(): the row is locked (or the update below is conditional on version).
        refresh_count=grant.refresh_count + 1,
        consecutive_failures=0,
        failing_since=None,
        next_attempt_at=None,
        last_error="",
        version=grant.version + 1,
        updated_at=now,
    )
    if token.refresh_token and token.refresh_token != grant.refresh_token:
        # Same statement as the access token: a rotated refresh token is never lost.
        values["refresh_token"] = token.refresh_token
    if token.scopes is None:
        return values, False
    named = set(token.scopes)
    scopes = [s for s in CATALOG if s in named]
    if scopes == list(grant.granted_scopes or []) and grant.scopes_confirmed:
        return values, False
    values.update(granted_scopes=scopes, scopes_confirmed=True)
    return values, True


def _on_success(grant: Grant, token: amazon.TokenResponse, *, actor: str) -> RefreshResult:
    seller, tenant = grant.seller, grant.seller.tenant
    values, scopes_changed = _success_values(grant, token, timezone.now())
    rotated = "refresh_token" in values
    was_failing = grant.failing_since is not None
    credentials_failing = tenant.credentials_failing_since is not None
    # The routine case is one UPDATE (atomic by itself); follow-up writes share a transaction.
    follow_ups = was_failing or scopes_changed or credentials_failing
    with transaction.atomic() if follow_ups else contextlib.nullcontext():
        if not _update_if_current(grant, values):
            return _changed_meanwhile()
        for name, value in values.items():  # the instance reflects the update without another query
            setattr(grant, name, value)
        if credentials_failing:
            # Read with the grant a moment ago; skipping the UPDATE when clear saves a query per refresh.
            tenant_credentials_ok(tenant=tenant)
        if was_failing:
            seller_status_transition(
                seller=seller,
                grant=grant,
                kind=Event.Kind.REFRESH_RECOVERED,
                detail="Token refresh works again.",
                data=_requested_by(actor),
                actor="amazon",
                notice=lambda status: (
                    f"Token refresh recovered for {seller.name}",
                    f"Refreshing {seller.name}'s access token works again; the seller is {status} now.",
                ),
            )
        elif scopes_changed:
            cause = "LWA answered the refresh with another scope list." + _requested_by_note(actor)
            seller_status_sync(seller=seller, grant=grant, cause=cause, actor="amazon")
    cache_put(grant.pk, grant.version, grant.access_token_expires_at, grant.access_token)
    detail = "Access token refreshed." + (" LWA returned a new refresh token; stored." if rotated else "")
    return RefreshResult(RefreshOutcome.REFRESHED, detail, grant, lwa_called=True)


def _on_revoked(grant: Grant, exc: amazon.LwaError, *, actor: str) -> RefreshResult:
    description = exc.description or "LWA answered invalid_grant."
    revoked = grant_mark_revoked(
        seller=grant.seller,
        reason=f"LWA refused the refresh token (invalid_grant): {description}" + _requested_by_note(actor),
        actor="amazon",
        expected_version=grant.version,
    )
    cache_forget(grant.pk)
    if not revoked:
        # The seller re-authorized (or staff revoked) while LWA was answering: that refusal was
        # about tokens this grant no longer holds.
        return _changed_meanwhile()
    grant.refresh_from_db()
    return RefreshResult(RefreshOutcome.REVOKED, f"invalid_grant: {description}", grant, lwa_called=True)


def _on_credentials_failed(grant: Grant, exc: amazon.LwaError) -> RefreshResult:
    tenant = grant.seller.tenant
    tenant_credentials_failed(tenant=tenant, error=exc)
    # The seller did nothing wrong: no failure count, no status change, no revocation.
    message = f"App credentials rejected ({exc.error}); the seller is not affected."[:500]
    Grant.objects.filter(pk=grant.pk, version=grant.version).update(last_error=message)
    grant.last_error = message
    return RefreshResult(RefreshOutcome.CREDENTIALS_FAILED, f"{exc.error}: {exc.description}".strip(": "), grant, lwa_called=True)


def _on_transient(grant: Grant, exc: amazon.LwaError, *, actor: str) -> RefreshResult:
    now = timezone.now()
    seller = grant.seller
    failures = grant.consecutive_failures + 1
    next_attempt = now + _backoff(failures, exc.retry_after)
    message = f"{exc.error}: {exc.description}".strip(": ")[:500]
    starts_failing = grant.failing_since is None and failures >= settings.SPCONNECT_FAILING_THRESHOLD
    values = dict(consecutive_failures=failures, next_attempt_at=next_attempt, last_error=message, updated_at=now)
    if starts_failing:
        values["failing_since"] = now
    with transaction.atomic():
        if Grant.objects.filter(pk=grant.pk, version=grant.version).update(**values):
            for name, value in values.items():
                setattr(grant, name, value)
            if starts_failing:
                seller_status_transition(
                    seller=seller,
                    grant=grant,
                    kind=Event.Kind.REFRESH_FAILING,
                    detail=f"{failures} refresh attempts in a row failed; last: {message}",
                    data={"failures": failures, "error": exc.error, "status_code": exc.status_code, **_requested_by(actor)},
                    actor="amazon",
                    notice=lambda _status: (
                        f"Token refresh failing for {seller.name}",
                        f"{failures} attempts in a row to refresh {seller.name}'s access token failed "
                        f"(last: {message}). This looks temporary on Amazon's side; spconnect keeps retrying "
                        "with backoff and the seller stays connected.",
                    ),
                )
    return RefreshResult(
        RefreshOutcome.TRANSIENT_FAILURE,
        f"{message} (failure {failures}; next attempt after {next_attempt:%H:%M:%S} UTC)",
        grant,
        lwa_called=True,
    )


def grant_refresh(
    *, grant: Grant, actor: str = SYSTEM, force: bool = False, stale_token: str | None = None
) -> RefreshResult:
    """Refresh the grant's access token at LWA, unless there is no need (single flight).

    Without `force`, a token still valid beyond the refresh window, or a grant backing off after a
    failure, is skipped: a second run right after a refresh is a no-op. `force` (staff "refresh
    now") calls LWA even then. A revoked grant is never refreshed. `stale_token`: Amazon refused
    this token; refresh unless another caller replaced it already. `actor`: who asked, named in
    the events the refresh writes unless it is the system.
    """
    return _refresh(grant.pk, actor=actor, force=force, fresh_margin=refresh_window(), stale_token=stale_token)


def grant_access_token(*, grant: Grant) -> str:
    """A valid access token for the grant, refreshed at LWA only when it is about to expire.

    Raises ReauthorizationRequired (revoked), AppCredentialsRejected (the tenant's client
    secret), TokenUnavailable (LWA failing transiently and no valid token left).
    """
    loaded = grant.__dict__
    now = timezone.now()
    if loaded.get("status") == Grant.Status.REVOKED:
        raise reauthorization_required(seller=grant.seller, reason="access was revoked.")
    expires_at = loaded.get("access_token_expires_at")
    fresh_until = now + access_token_margin()
    if "access_token" in loaded:
        token = loaded["access_token"]
        if token and expires_at is not None and expires_at > fresh_until:
            return token
    elif expires_at is not None and "version" in loaded and expires_at > fresh_until:
        token = cached_token(grant.pk, version=loaded["version"], expires_at=expires_at)
        if token is not None:
            return token

    # One small read without any lock: another caller (or process) may have refreshed already.
    rows = Grant.objects.filter(pk=grant.pk).only("id", "status", "version", "access_token", "access_token_expires_at")
    row = next(iter(rows), None)
    if row is not None and row.status == Grant.Status.ACTIVE and _token_is_fresh(row, now, access_token_margin()):
        grant.access_token, grant.access_token_expires_at, grant.version = row.access_token, row.access_token_expires_at, row.version
        cache_put(row.pk, row.version, row.access_token_expires_at, row.access_token)
        return row.access_token

    result = _refresh(grant.pk, actor=SYSTEM, force=False, fresh_margin=access_token_margin())
    fresh = result.grant
    if fresh is not None:
        # The caller's instance now reflects the stored token (fewer trips next time).
        for name in ("access_token", "access_token_expires_at", "version", "status", "refresh_token"):
            setattr(grant, name, getattr(fresh, name))
    if result.outcome == RefreshOutcome.REVOKED:
        raise reauthorization_required(seller=(fresh or grant).seller, reason=result.detail)
    if fresh is None:
        if result.lwa_called:
            raise TokenUnavailable("The grant changed while refreshing; try again.")
        raise TokenUnavailable("The grant no longer exists.")
    if fresh.access_token and fresh.access_token_expires_at and fresh.access_token_expires_at > timezone.now():
        # Fresh, or (after a failure or while backing off) stale but still accepted by Amazon.
        cache_put(fresh.pk, fresh.version, fresh.access_token_expires_at, fresh.access_token)
        return fresh.access_token
    if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
        raise AppCredentialsRejected(
            f"LWA rejected the app credentials of {fresh.seller.tenant.name} ({result.detail}). Check the client secret."
        )
    raise TokenUnavailable(f"No valid access token: {result.detail}", retry_at=fresh.next_attempt_at)
