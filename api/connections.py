"""Connections (a tenant's sellers) as the API shows them, and their access tokens.

Reads never decrypt a token except the one handed out by `connection_access_token`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from django.core import signing
from django.core.exceptions import ObjectDoesNotExist
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sellers.fields import UndecryptableValue
from sellers.models import TOKEN_FIELDS, Grant, Seller
from sellers.selectors import required_scopes
from sellers.services.status import missing_required_scopes
from sellers.services.tokens import (
    UNDECRYPTABLE_DETAIL,
    AppCredentialsRejected,
    RefreshOutcome,
    TokenUnavailable,
    grant_refresh,
    reauthorization_required,
)

# Encrypted columns a connection record never needs; the access token is read only by the token
# endpoint, which needs nothing else encrypted.
_TOKEN_COLUMNS = tuple(f"grant__{name}" for name in TOKEN_FIELDS)
_CURSOR_SALT = "api.connections.cursor"


class BadCursor(ValueError):
    pass


def grant_of(seller: Seller) -> Grant | None:
    try:
        return seller.grant
    except ObjectDoesNotExist:
        return None


def connection_record(seller: Seller, *, required: list[str]) -> dict:
    """The API's view of a seller (`ConnectionOut`)."""
    grant = grant_of(seller)
    token_expires = grant.access_token_expires_at if grant is not None and grant.status == Grant.Status.ACTIVE else None
    return {
        "id": seller.public_id,
        "name": seller.name,
        "selling_partner_id": seller.selling_partner_id or None,
        "region": seller.region,
        "status": seller.status,
        "granted_scopes": list(grant.effective_scopes) if grant else [],
        "missing_scopes": missing_required_scopes(grant=grant, required=required),
        "scopes_confirmed": bool(grant and grant.scopes_confirmed),
        "authorized_at": grant.authorized_at if grant else None,
        "renewal_due_at": grant.renewal_due_at if grant else None,
        "access_token_expires_at": token_expires,
        "last_refreshed_at": grant.last_refreshed_at if grant else None,
        "created_at": seller.created_at,
    }


def tenant_connections(*, tenant_id: int) -> QuerySet[Seller]:
    """The tenant's sellers with their grants, token columns left unread."""
    return Seller.objects.filter(tenant_id=tenant_id).select_related("grant").defer(*_TOKEN_COLUMNS)


def connection_get(*, tenant_id: int, connection_id: UUID) -> dict | None:
    """One connection of the tenant, or None: another tenant's id is as unknown as a made-up one."""
    seller = tenant_connections(tenant_id=tenant_id).filter(public_id=connection_id).first()
    if seller is None:
        return None
    return connection_record(seller, required=required_scopes(tenant_id=tenant_id))


@dataclass(frozen=True)
class ConnectionPage:
    data: list[dict]
    next_cursor: str | None


def _cursor_for(seller: Seller) -> str:
    return signing.dumps([seller.created_at.isoformat(), seller.public_id.hex], salt=_CURSOR_SALT, compress=True)


def _cursor_position(cursor: str) -> tuple[datetime, UUID]:
    try:
        created, public_id = signing.loads(cursor, salt=_CURSOR_SALT)
        at = parse_datetime(created)
        if at is None:
            raise ValueError(created)
        return at, UUID(public_id)
    except (signing.BadSignature, ValueError, TypeError):
        raise BadCursor("cursor is not one this API handed out; start again without it.") from None


def connections_page(
    *,
    tenant_id: int,
    status: str | None = None,
    region: str | None = None,
    selling_partner_id: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> ConnectionPage:
    """A page of the tenant's connections, oldest first (creation time, then id: a stable order
    that new connections only extend). The cursor is signed and opaque: it names the last row
    seen, never a database id. Raises BadCursor."""
    sellers = tenant_connections(tenant_id=tenant_id)
    if status:
        sellers = sellers.filter(status=status)
    if region:
        sellers = sellers.filter(region=region)
    if selling_partner_id:
        sellers = sellers.filter(selling_partner_id=selling_partner_id)
    if q:
        sellers = sellers.filter(Q(name__icontains=q) | Q(selling_partner_id__icontains=q))
    if cursor:
        at, public_id = _cursor_position(cursor)
        sellers = sellers.filter(Q(created_at__gt=at) | Q(created_at=at, public_id__gt=public_id))
    rows = list(sellers.order_by("created_at", "public_id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    required = required_scopes(tenant_id=tenant_id) if rows else []
    return ConnectionPage(
        data=[connection_record(s, required=required) for s in rows],
        next_cursor=_cursor_for(rows[-1]) if more else None,
    )


# --- Access tokens ---------------------------------------------------------------------------


# What the token endpoint reads: nothing else is loaded (anything else is read on demand).
TOKEN_PATH_SELLER_FIELDS = ("id", "tenant", "public_id", "name", "region", "selling_partner_id", "status")
TOKEN_PATH_GRANT_FIELDS = ("id", "seller", "status", "access_token", "access_token_expires_at", "authorized_at", "version")


def _in_model_order(model, names: tuple[str, ...]) -> list:
    wanted = set(names)
    return [f for f in model._meta.concrete_fields if f.name in wanted]


@dataclass(frozen=True)
class _Columns:
    """One model's columns in the token query, with the converters the ORM would apply to them
    (datetimes and UUIDs on SQLite, the strict decryption of encrypted fields)."""

    model: type
    attnames: list[str]
    converters: list[tuple]

    def instance(self, values):
        converted = []
        for (converters, col), value in zip(self.converters, values, strict=True):
            for convert in converters:
                value = convert(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.attnames, converted)


def _columns(model, names: tuple[str, ...]) -> _Columns:
    fields = _in_model_order(model, names)
    converters = []
    for field in fields:
        col = field.get_col(model._meta.db_table)
        converters.append((connection.ops.get_db_converters(col) + field.get_db_converters(connection), col))
    return _Columns(model, [f.attname for f in fields], converters)


# The proxy also checks the path's scope against the grant before sending anything.
PROXY_PATH_GRANT_FIELDS = (*TOKEN_PATH_GRANT_FIELDS, "granted_scopes", "refused_scopes", "scopes_confirmed")


@functools.cache
def _token_path_sql(vendor: str, grant_names: tuple[str, ...] = TOKEN_PATH_GRANT_FIELDS) -> tuple[str, _Columns, _Columns]:
    """The one SELECT of the token endpoint (and the proxy), built once per database vendor and
    column set from the models."""
    qn = connection.ops.quote_name
    seller_fields = _in_model_order(Seller, TOKEN_PATH_SELLER_FIELDS)
    grant_fields = _in_model_order(Grant, grant_names)
    columns = [f"s.{qn(f.column)}" for f in seller_fields] + [f"g.{qn(f.column)}" for f in grant_fields]
    sql = (
        f"SELECT {', '.join(columns)} FROM {qn(Seller._meta.db_table)} s "
        f"LEFT JOIN {qn(Grant._meta.db_table)} g ON g.{qn(Grant._meta.get_field('seller').column)} = s.{qn('id')} "
        f"WHERE s.{qn(Seller._meta.get_field('tenant').column)} = %s AND s.{qn(Seller._meta.get_field('public_id').column)} = %s"
    )
    return sql, _columns(Seller, TOKEN_PATH_SELLER_FIELDS), _columns(Grant, grant_names)


def connection_for_token(
    *, tenant_id: int, connection_id: UUID, grant_fields: tuple[str, ...] = TOKEN_PATH_GRANT_FIELDS
) -> Seller | None:
    """The seller with its grant and access token (the only encrypted column decrypted): one query.

    Hand-built from the models' own metadata rather than compiled by the ORM on every call:
    compiling the join took most of this hot path's time, and the token endpoint must keep up
    with a trivial authenticated view (`bench/bench_api.py`; `tests/test_api_token_cost.py`
    checks it reads what the ORM would).
    """
    sql, seller_columns, grant_columns = _token_path_sql(connection.vendor, grant_fields)
    public_id = Seller._meta.get_field("public_id").get_db_prep_value(connection_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(sql, [tenant_id, public_id])
        row = cursor.fetchone()
    if row is None:
        return None
    try:
        split = len(seller_columns.attnames)
        seller = seller_columns.instance(row[:split])
        grant = grant_columns.instance(row[split:]) if row[split] is not None else None
    except UndecryptableValue:
        raise TokenUnavailable(UNDECRYPTABLE_DETAIL) from None
    # As select_related would: seller.grant answers from memory (or raises DoesNotExist).
    Seller.grant.related.set_cached_value(seller, grant)
    if grant is not None:
        Grant.seller.field.set_cached_value(grant, seller)
    return seller


def _lasts(grant: Grant, now: datetime, min_ttl: int) -> bool:
    expires = grant.access_token_expires_at
    return bool(grant.access_token) and expires is not None and expires - now > timedelta(seconds=min_ttl)


def connection_access_token(*, seller: Seller, min_ttl: int, force: bool, actor: str) -> Grant:
    """The seller's grant holding an access token valid for more than `min_ttl` seconds.

    A stored token that lasts long enough is returned as it is: no LWA call, no query. Otherwise
    (or with `force`) the grant is refreshed, single flight: callers that wait on the same
    refresh share its token instead of calling LWA again, and a grant backing off after LWA
    failures is not retried early (TokenUnavailable with the time to retry).

    Raises ReauthorizationRequired (never authorized, revoked, or the yearly re-authorization
    due; it carries the seller's link), AppCredentialsRejected, TokenUnavailable.
    """
    grant = grant_of(seller)
    now = timezone.now()
    if grant is None:
        raise reauthorization_required(seller=seller, reason="the seller has not authorized the app yet.")
    if grant.status == Grant.Status.REVOKED:
        raise reauthorization_required(seller=seller, reason="access was revoked.")
    if grant.renewal_due_at <= now:
        # LWA refuses refresh tokens a year old: only a new consent helps.
        raise reauthorization_required(seller=seller, reason="the yearly re-authorization is due.")
    if not force and _lasts(grant, now, min_ttl):
        return grant

    held = grant.access_token
    try:
        # `stale_token`: refresh unless another caller has replaced this token meanwhile.
        result = grant_refresh(grant=grant, actor=actor, stale_token=held)
    except UndecryptableValue:
        raise TokenUnavailable(UNDECRYPTABLE_DETAIL) from None
    fresh = result.grant
    if result.outcome == RefreshOutcome.REVOKED:
        raise reauthorization_required(seller=seller, reason=result.detail)
    if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
        raise AppCredentialsRejected("Login with Amazon rejected the app's credentials; the tenant's owner must check the client secret.")
    if fresh is None:
        raise TokenUnavailable(f"{result.detail} Try again.", retry_at=timezone.now() + timedelta(seconds=1))
    if _lasts(fresh, timezone.now(), min_ttl) and (not force or fresh.access_token != held):
        return fresh
    raise TokenUnavailable(
        f"No access token valid for more than {min_ttl} s: {result.detail}",
        retry_at=fresh.next_attempt_at,
    )
