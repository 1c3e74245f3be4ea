"""Access tokens on demand: cached, refreshed at LWA by exactly one caller at a time.

`grant_access_token` is the hot path. A token valid for longer than the margin costs no LWA call
and no query when the caller holds a loaded grant (the token is on the instance, or in the
in-process cache keyed by grant id + `Grant.version` + expiry when the caller deferred the
encrypted columns), and one small query otherwise.

Single flight, so that however many threads and processes ask for one expiring grant, one
request reaches LWA and everybody else uses its answer:

* every caller first takes a per-grant lock inside its process (threads queue there instead of
  in the database);
* PostgreSQL: the refresh runs inside a transaction that re-reads the row with
  `SELECT … FOR UPDATE` (of the grant row only, never the tenant's, which would serialise a
  whole tenant). Whoever waited on the row lock re-reads a token that is already fresh.
* SQLite has no row locks, and holding its database-wide write lock across an HTTP call would
  stall every writer (including the local sandbox answering that very call from the same
  file). Processes sharing a database file instead take a POSIX byte-range lock, one byte per
  grant id, on a lock file beside the database file, re-read the row after getting it
  and write the result in a short transaction. An in-memory database cannot be shared by processes, so the thread lock suffices.
* every write is conditional on the version read under the lock, so a grant that staff revoked
  or a seller re-authorized meanwhile is never overwritten with a token from an older grant.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import random
import threading
import time
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Callable, Iterable, Iterator

from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.fields import UndecryptableValue
from sellers.models import Event, Grant, Invitation, Seller
from sellers.scopes import CATALOG

from .credentials import tenant_lwa_call
from .events import event_record
from .grants import grant_mark_revoked
from .invitations import reauthorization_link_get_or_create
from .notifications import notify_staff
from .status import seller_status_sync
from .tenants import tenant_credentials_failed, tenant_credentials_ok

logger = logging.getLogger(__name__)

# Backoff after a transient failure: base * 2^(n-1), capped, with "equal jitter" (half fixed,
# half random) so a fleet of grants that failed together does not retry together.
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
# How long a caller waits for another process's refresh of the same grant before giving up.
LOCK_WAIT_SECONDS = 60.0
CACHE_MAX_ENTRIES = 50_000
BATCH_SIZE = 200  # grants loaded per query by sweeps


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


class TokenError(Exception):
    """Base of the errors `grant_access_token` raises. Messages never carry a token."""


class ReauthorizationRequired(TokenError):
    """The seller revoked access (or never authorized): only a new consent helps.

    `.link` is the seller's current re-authorization Invitation (`.link.url` to send it).
    """

    def __init__(self, *, seller: Seller, link: Invitation, reason: str = ""):
        self.seller = seller
        self.link = link
        self.reason = reason
        super().__init__(
            f"{seller.name} ({seller.selling_partner_id or 'not connected'}) must re-authorize the app"
            + (f": {reason}" if reason else ".")
        )


class TokenUnavailable(TokenError):
    """LWA failed for a transient reason (or we are backing off) and no valid token is stored."""

    def __init__(self, message: str, *, retry_at: datetime | None = None):
        self.retry_at = retry_at
        super().__init__(message)


class AppCredentialsRejected(TokenError):
    """LWA rejected the tenant's client id/secret: an app problem, not the seller's."""


# --- In-process cache ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Cached:
    version: int
    expires_at: datetime
    token: str = field(repr=False)


_cache: dict[int, _Cached] = {}
_cache_guard = threading.Lock()


def _cache_put(grant_id: int, version: int, expires_at: datetime | None, token: str) -> None:
    if not token or expires_at is None:
        _cache.pop(grant_id, None)
        return
    with _cache_guard:
        if grant_id not in _cache and len(_cache) >= CACHE_MAX_ENTRIES:
            # Dicts keep insertion order: drop the oldest entry (FIFO is enough here).
            _cache.pop(next(iter(_cache)), None)
        _cache[grant_id] = _Cached(version, expires_at, token)


def access_token_cache_clear() -> None:
    """Forget every cached access token of this process (tests, benchmarks)."""
    with _cache_guard:
        _cache.clear()


def _margin() -> timedelta:
    return timedelta(seconds=settings.SPCONNECT_ACCESS_TOKEN_MARGIN_SECONDS)


def _window() -> timedelta:
    return max(_margin(), timedelta(seconds=settings.SPCONNECT_REFRESH_WINDOW_SECONDS))


# --- Locks ----------------------------------------------------------------------------------


class _GrantLock:
    __slots__ = ("lock", "__weakref__")

    def __init__(self):
        self.lock = threading.Lock()


# One lock per grant id while anybody holds or waits for it; entries vanish afterwards.
_thread_locks: "weakref.WeakValueDictionary[int, _GrantLock]" = weakref.WeakValueDictionary()
_thread_locks_guard = threading.Lock()
_lock_files: dict[tuple[int, str], int] = {}


def _sqlite_lock_file() -> int | None:
    """A descriptor of the lock file of this SQLite database file, else None.

    It lives beside the database (`db.sqlite3-grant-locks`), so every process using that
    database finds the same file. Not in a shared temporary directory: there anyone can create
    a predictable name first, as a symlink to a file of ours or as a file they hold locks on.
    The database's directory is written by the app only, and the file is never opened through
    a symlink.
    """
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return None
    path = os.path.realpath(str(connection.settings_dict["NAME"])) + "-grant-locks"
    # POSIX locks belong to a process; a forked worker opens its own descriptor. Descriptors are
    # never closed: closing any descriptor of a file drops all of the process's locks on it.
    key = (os.getpid(), path)
    fd = _lock_files.get(key)
    if fd is None:
        with _thread_locks_guard:
            fd = _lock_files.get(key)
            if fd is None:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
                _lock_files[key] = fd
    return fd


@contextlib.contextmanager
def _file_byte_lock(fd: int, offset: int, deadline: float) -> Iterator[None]:
    import fcntl

    delay = 0.002
    while True:
        try:
            # Non-blocking and polled: a blocking F_SETLKW can report a false EDEADLK when two
            # multi-threaded processes wait on each other's bytes (locks are per process).
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
            break
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if time.monotonic() >= deadline:
                raise TokenUnavailable("Another process is refreshing this grant; try again shortly.") from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
    try:
        yield
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)


@contextlib.contextmanager
def _grant_lock(grant_id: int) -> Iterator[None]:
    """Serialise refreshes of one grant across this process's threads (and SQLite processes)."""
    with _thread_locks_guard:
        holder = _thread_locks.get(grant_id)
        if holder is None:
            holder = _GrantLock()
            _thread_locks[grant_id] = holder
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    if not holder.lock.acquire(timeout=LOCK_WAIT_SECONDS):
        raise TokenUnavailable("Another thread is refreshing this grant; try again shortly.")
    try:
        fd = _sqlite_lock_file()
        if fd is None:
            yield
        else:
            with _file_byte_lock(fd, grant_id, deadline):
                yield
    finally:
        holder.lock.release()


# --- Refresh ---------------------------------------------------------------------------------


def _backoff(failures: int, retry_after: float | None) -> timedelta:
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    seconds = ceiling / 2 + random.uniform(0, ceiling / 2)
    if retry_after:
        seconds = max(seconds, min(retry_after, BACKOFF_CAP_SECONDS))
    return timedelta(seconds=seconds)


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


# --- The sweep's two statements --------------------------------------------------------------------
# A sweep runs one re-read and one conditional UPDATE per grant. Built through the ORM, each costs
# more client CPU than the HTTP request to LWA itself (query building and compiling); written
# here once per field set, they cost a string lookup. Values still go through each field's own
# preparation (encryption, datetime adaptation), so what is stored is what the ORM would store.


@functools.lru_cache(maxsize=64)
def _update_sql(vendor: str, fields: tuple[str, ...]) -> str:
    qn = connection.ops.quote_name
    columns = ", ".join(f"{qn(Grant._meta.get_field(name).column)} = %s" for name in fields)
    where = f"{qn(Grant._meta.pk.column)} = %s AND {qn('version')} = %s AND {qn('status')} = %s"
    return f"UPDATE {qn(Grant._meta.db_table)} SET {columns} WHERE {where}"


def _update_if_current(grant: Grant, values: dict) -> int:
    """UPDATE the grant with `values` if it still has the version read and is active; rows changed."""
    fields = tuple(values)
    params = [Grant._meta.get_field(name).get_db_prep_save(values[name], connection) for name in fields]
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(connection.vendor, fields), [*params, grant.pk, grant.version, Grant.Status.ACTIVE])
        return cursor.rowcount


@functools.lru_cache(maxsize=4)
def _reread_sql(vendor: str, lock: bool) -> str:
    qn = connection.ops.quote_name
    columns = ", ".join(qn(Grant._meta.get_field(name).column) for name in _VOLATILE)
    sql = f"SELECT {columns} FROM {qn(Grant._meta.db_table)} WHERE {qn(Grant._meta.pk.column)} = %s"
    return sql + " FOR UPDATE" if lock else sql


def _aware(value):
    """A datetime read by raw SQL as the ORM would return it (SQLite hands back naive UTC)."""
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value, dt_timezone.utc)


def _reread(preloaded: Grant) -> Grant | None:
    """Under the lock, check a grant loaded in bulk moments ago: one narrow query when unchanged."""
    with connection.cursor() as cursor:
        cursor.execute(_reread_sql(connection.vendor, connection.features.has_select_for_update), [preloaded.pk])
        row = cursor.fetchone()
    if row is None:
        return None
    if row[0] != preloaded.version:
        return _read_for_refresh(preloaded.pk)  # its tokens changed: read them again
    for name, value in zip(_VOLATILE, row):
        setattr(preloaded, name, _aware(value) if name in _VOLATILE_DATETIMES else value)
    return preloaded


def _token_is_fresh(grant: Grant, now: datetime, margin: timedelta) -> bool:
    return bool(grant.access_token) and grant.access_token_expires_at is not None and grant.access_token_expires_at > now + margin


def _refresh(
    grant_id: int,
    *,
    actor: str,
    force: bool,
    fresh_margin: timedelta,
    respect_backoff: bool,
    stale_token: str | None = None,
    preloaded: Grant | None = None,
) -> RefreshResult:
    with _grant_lock(grant_id):
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
            if not force and respect_backoff and grant.next_attempt_at is not None and grant.next_attempt_at > now:
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
        return _on_transient(grant, exc)
    return _on_success(grant, token)


def _on_success(grant: Grant, token: amazon.TokenResponse) -> RefreshResult:
    now = timezone.now()
    seller, tenant = grant.seller, grant.seller.tenant
    expires_at = now + timedelta(seconds=token.expires_in)
    values: dict = dict(
        access_token=token.access_token,
        access_token_expires_at=expires_at,
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
    rotated = bool(token.refresh_token) and token.refresh_token != grant.refresh_token
    if rotated:
        # Same statement as the access token: a rotated refresh token is never lost.
        values["refresh_token"] = token.refresh_token
    new_scopes = None
    if token.scopes is not None:
        named = set(token.scopes)
        new_scopes = [s for s in CATALOG if s in named]
        if new_scopes != list(grant.granted_scopes or []) or not grant.scopes_confirmed:
            values.update(granted_scopes=new_scopes, scopes_confirmed=True)
        else:
            new_scopes = None
    was_failing = grant.failing_since is not None
    # The routine case is one UPDATE (atomic by itself); follow-up writes share a transaction.
    follow_ups = was_failing or new_scopes is not None or tenant.credentials_failing_since is not None
    with transaction.atomic() if follow_ups else contextlib.nullcontext():
        updated = _update_if_current(grant, values)
        if not updated:
            return RefreshResult(
                RefreshOutcome.SKIPPED, "The grant changed during the refresh (re-authorized or revoked); result discarded.",
                None, lwa_called=True,
            )
        # Reflect the update on the instance without another query.
        grant.access_token, grant.access_token_expires_at = token.access_token, expires_at
        grant.last_refreshed_at, grant.refresh_count = now, grant.refresh_count + 1
        grant.consecutive_failures, grant.failing_since, grant.next_attempt_at, grant.last_error = 0, None, None, ""
        grant.version += 1
        grant.updated_at = now
        if rotated:
            grant.refresh_token = token.refresh_token
        if new_scopes is not None:
            grant.granted_scopes, grant.scopes_confirmed = new_scopes, True
        if tenant.credentials_failing_since is not None:
            # Read with the grant a moment ago; skipping the UPDATE when clear saves a query per refresh.
            tenant_credentials_ok(tenant=tenant)
        if was_failing:
            old = seller.status
            new = seller_status_sync(seller=seller, grant=grant, record=False)
            event = event_record(
                seller=seller,
                kind=Event.Kind.REFRESH_RECOVERED,
                detail="Token refresh works again.",
                data={"from": old, "to": new},
                actor="amazon",
            )
            notify_staff(
                tenant=tenant,
                subject=f"Token refresh recovered for {seller.name}",
                body=f"Refreshing {seller.name}'s access token works again; the seller is {new} now.",
                event=event,
            )
        elif new_scopes is not None:
            seller_status_sync(seller=seller, grant=grant, cause="LWA answered the refresh with another scope list.", actor="amazon")
    _cache_put(grant.pk, grant.version, expires_at, token.access_token)
    detail = "Access token refreshed." + (" LWA returned a new refresh token; stored." if rotated else "")
    return RefreshResult(RefreshOutcome.REFRESHED, detail, grant, lwa_called=True)


def _on_revoked(grant: Grant, exc: amazon.LwaError, *, actor: str) -> RefreshResult:
    description = exc.description or "LWA answered invalid_grant."
    revoked = grant_mark_revoked(
        seller=grant.seller,
        reason=f"LWA refused the refresh token (invalid_grant): {description}",
        actor="amazon",
        expected_version=grant.version,
    )
    _cache.pop(grant.pk, None)
    if not revoked:
        # The seller re-authorized (or staff revoked) while LWA was answering: that refusal was
        # about tokens this grant no longer holds.
        return RefreshResult(
            RefreshOutcome.SKIPPED, "The grant changed during the refresh (re-authorized or revoked); result discarded.",
            None, lwa_called=True,
        )
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


def _on_transient(grant: Grant, exc: amazon.LwaError) -> RefreshResult:
    now = timezone.now()
    seller, tenant = grant.seller, grant.seller.tenant
    failures = grant.consecutive_failures + 1
    next_attempt = now + _backoff(failures, exc.retry_after)
    message = f"{exc.error}: {exc.description}".strip(": ")[:500]
    starts_failing = grant.failing_since is None and failures >= settings.SPCONNECT_FAILING_THRESHOLD
    values = dict(consecutive_failures=failures, next_attempt_at=next_attempt, last_error=message, updated_at=now)
    if starts_failing:
        values["failing_since"] = now
    with transaction.atomic():
        updated = Grant.objects.filter(pk=grant.pk, version=grant.version).update(**values)
        if updated:
            grant.consecutive_failures, grant.next_attempt_at, grant.last_error = failures, next_attempt, message
            if starts_failing:
                grant.failing_since = now
                old = seller.status
                new = seller_status_sync(seller=seller, grant=grant, record=False)
                event = event_record(
                    seller=seller,
                    kind=Event.Kind.REFRESH_FAILING,
                    detail=f"{failures} refresh attempts in a row failed; last: {message}",
                    data={"from": old, "to": new, "failures": failures, "error": exc.error, "status_code": exc.status_code},
                    actor="amazon",
                )
                notify_staff(
                    tenant=tenant,
                    subject=f"Token refresh failing for {seller.name}",
                    body=(
                        f"{failures} attempts in a row to refresh {seller.name}'s access token failed "
                        f"(last: {message}). This looks temporary on Amazon's side; spconnect keeps retrying "
                        "with backoff and the seller stays connected."
                    ),
                    event=event,
                )
    return RefreshResult(
        RefreshOutcome.TRANSIENT_FAILURE,
        f"{message} (failure {failures}; next attempt after {next_attempt:%H:%M:%S} UTC)",
        grant,
        lwa_called=True,
    )


def grant_refresh(
    *, grant: Grant, actor: str = "system", force: bool = False, stale_token: str | None = None
) -> RefreshResult:
    """Refresh the grant's access token at LWA, unless there is no need (single flight).

    Without `force`, a token still valid beyond the refresh window, or a grant backing off after a
    failure, is skipped: a second run right after a refresh is a no-op. `force` (staff "refresh
    now") calls LWA even then. A revoked grant is never refreshed. `stale_token`: Amazon refused
    this token; refresh unless another caller replaced it already.
    """
    return _refresh(grant.pk, actor=actor, force=force, fresh_margin=_window(), respect_backoff=True, stale_token=stale_token)


def _reauthorization_required(grant: Grant, reason: str) -> ReauthorizationRequired:
    seller = grant.seller
    link, _ = reauthorization_link_get_or_create(seller=seller, actor="system")
    return ReauthorizationRequired(seller=seller, link=link, reason=reason)


def grant_access_token(*, grant: Grant) -> str:
    """A valid access token for the grant, refreshed at LWA only when it is about to expire.

    Raises ReauthorizationRequired (revoked), AppCredentialsRejected (the tenant's client
    secret), TokenUnavailable (LWA failing transiently and no valid token left).
    """
    loaded = grant.__dict__
    now = timezone.now()
    if loaded.get("status") == Grant.Status.REVOKED:
        raise _reauthorization_required(grant, "access was revoked.")
    expires_at = loaded.get("access_token_expires_at")
    fresh_until = now + _margin()
    if "access_token" in loaded:
        token = loaded["access_token"]
        if token and expires_at is not None and expires_at > fresh_until:
            return token
    elif expires_at is not None and "version" in loaded:
        hit = _cache.get(grant.pk)
        if hit is not None and hit.version == loaded["version"] and hit.expires_at == expires_at and expires_at > fresh_until:
            return hit.token

    # One small read without any lock: another caller (or process) may have refreshed already.
    rows = Grant.objects.filter(pk=grant.pk).only("id", "status", "version", "access_token", "access_token_expires_at")
    row = next(iter(rows), None)
    if row is not None and row.status == Grant.Status.ACTIVE and _token_is_fresh(row, now, _margin()):
        grant.access_token, grant.access_token_expires_at, grant.version = row.access_token, row.access_token_expires_at, row.version
        _cache_put(row.pk, row.version, row.access_token_expires_at, row.access_token)
        return row.access_token

    result = _refresh(grant.pk, actor="system", force=False, fresh_margin=_margin(), respect_backoff=True)
    fresh = result.grant
    if fresh is not None:
        # The caller's instance now reflects the stored token (fewer trips next time).
        for name in ("access_token", "access_token_expires_at", "version", "status", "refresh_token"):
            setattr(grant, name, getattr(fresh, name))
    if result.outcome == RefreshOutcome.REVOKED:
        raise _reauthorization_required(fresh or grant, result.detail)
    if fresh is None:
        if result.lwa_called:
            raise TokenUnavailable("The grant changed while refreshing; try again.")
        raise TokenUnavailable("The grant no longer exists.")
    if fresh.access_token and fresh.access_token_expires_at and fresh.access_token_expires_at > timezone.now():
        # Fresh, or (after a failure or while backing off) stale but still accepted by Amazon.
        _cache_put(fresh.pk, fresh.version, fresh.access_token_expires_at, fresh.access_token)
        return fresh.access_token
    if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
        raise AppCredentialsRejected(
            f"LWA rejected the app credentials of {fresh.seller.tenant.name} ({result.detail}). Check the client secret."
        )
    raise TokenUnavailable(f"No valid access token: {result.detail}", retry_at=fresh.next_attempt_at)


# --- Sweeps ------------------------------------------------------------------------------------


def grants_due(*, tenant=None, now: datetime | None = None) -> models.QuerySet[Grant]:
    """Active grants whose access token expires within the refresh window, not backing off.

    While a tenant's app credentials are rejected, only its soonest-expiring grant is due (a
    probe): hundreds of requests bound to fail would only annoy LWA. Its success clears the flag.
    """
    now = now or timezone.now()
    qs = Grant.objects.filter(status=Grant.Status.ACTIVE).filter(
        models.Q(access_token_expires_at__isnull=True) | models.Q(access_token_expires_at__lte=now + _window())
    ).filter(models.Q(next_attempt_at__isnull=True) | models.Q(next_attempt_at__lte=now))
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
        return Grant.objects.filter(models.Q(pk__in=healthy.values("pk")) | models.Q(pk__in=probes)).order_by("access_token_expires_at", "pk")
    return healthy.order_by("access_token_expires_at", "pk")


@dataclass
class RefreshSummary:
    counts: dict[str, int] = field(default_factory=lambda: {o: 0 for o in RefreshOutcome.values})

    def add(self, result: RefreshResult) -> None:
        self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1

    @property
    def failed(self) -> int:
        c = self.counts
        return c[RefreshOutcome.CREDENTIALS_FAILED] + c[RefreshOutcome.TRANSIENT_FAILURE] + c[RefreshOutcome.UNDECRYPTABLE]

    def __str__(self) -> str:
        c = self.counts
        undecryptable = c[RefreshOutcome.UNDECRYPTABLE]
        return (
            f"refreshed {c[RefreshOutcome.REFRESHED]}, revoked {c[RefreshOutcome.REVOKED]}, "
            f"failed {self.failed} (app credentials {c[RefreshOutcome.CREDENTIALS_FAILED]}, "
            f"transient {c[RefreshOutcome.TRANSIENT_FAILURE]}"
            + (f", cannot be decrypted {undecryptable}" if undecryptable else "")
            + f"), skipped {c[RefreshOutcome.SKIPPED]}"
        )


UNDECRYPTABLE_DETAIL = (
    "The stored tokens cannot be decrypted with the configured keys (FIELD_ENCRYPTION_KEY); "
    "not refreshed. Restore the key they were written under, or have the seller re-authorize."
)


def _undecryptable(grant_id: int, *, actor: str) -> RefreshResult:
    """Report a grant whose tokens no configured key decrypts, and record it in its history."""
    grant = (
        Grant.objects.select_related("seller__tenant")
        .defer("refresh_token", "access_token", "mws_auth_token")
        .filter(pk=grant_id)
        .first()
    )
    if grant is None:
        return RefreshResult(RefreshOutcome.SKIPPED, "The grant no longer exists.")
    event_record(
        seller=grant.seller,
        kind=Event.Kind.REFRESH_FAILING,
        detail=UNDECRYPTABLE_DETAIL,
        data={"error": "undecryptable"},
        actor=actor,
    )
    return RefreshResult(RefreshOutcome.UNDECRYPTABLE, UNDECRYPTABLE_DETAIL, grant)


def grants_refresh(
    *,
    grant_ids: Iterable[int],
    actor: str = "system",
    force: bool = False,
    workers: int = 1,
    on_result: Callable[[int, RefreshResult], None] | None = None,
) -> RefreshSummary:
    """Refresh many grants synchronously (`refresh_tokens`), optionally with worker threads."""
    summary = RefreshSummary()
    lock = threading.Lock()

    def load(chunk: list[int]) -> tuple[dict[int, Grant], set[int]]:
        """(grants by id, ids whose tokens no configured key decrypts)."""
        qs = Grant.objects.select_related("seller__tenant")
        try:
            return qs.in_bulk(chunk), set()
        except UndecryptableValue:
            # One row decrypted with the batch would fail every grant of it: read the batch
            # again one grant at a time so that only the bad ones are left out.
            loaded, bad = {}, set()
            for grant_id in chunk:
                try:
                    loaded.update(qs.in_bulk([grant_id]))
                except UndecryptableValue:
                    bad.add(grant_id)
            return loaded, bad

    def batch(chunk: list[int]) -> None:
        # One query loads a batch with sellers and tenants; under each grant's lock a narrow
        # query then confirms the row did not change meanwhile (else it is read again).
        loaded, undecryptable = load(chunk)
        for grant_id in chunk:
            if grant_id in undecryptable:
                result = _undecryptable(grant_id, actor=actor)
            elif grant_id in loaded:
                try:
                    result = _refresh(
                        grant_id, actor=actor, force=force, fresh_margin=_window(), respect_backoff=True,
                        preloaded=loaded[grant_id],
                    )
                except UndecryptableValue:  # re-read under the lock after a change: now unreadable
                    result = _undecryptable(grant_id, actor=actor)
            else:
                result = RefreshResult(RefreshOutcome.SKIPPED, "The grant no longer exists.")
            with lock:
                summary.add(result)
                if on_result is not None:
                    on_result(grant_id, result)

    def one_by_one(chunk: list[int]) -> None:
        for start in range(0, len(chunk), BATCH_SIZE):
            batch(chunk[start : start + BATCH_SIZE])

    ids = list(grant_ids)
    if workers <= 1:
        one_by_one(ids)
        return summary

    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections

    def run(chunk: list[int]) -> None:
        try:
            one_by_one(chunk)
        finally:
            connections.close_all()  # this thread's connections

    chunks = [ids[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, chunk) for chunk in chunks if chunk]:
            future.result()
    return summary
