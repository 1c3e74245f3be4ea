"""Storing what a seller granted: the outcome of a completed consent flow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from sellers.amazon import TokenResponse
from sellers.models import TOKEN_FIELDS, Event, Grant, Seller, Tenant
from sellers.scopes import CATALOG, scopes_given_by_roles
from sellers.selectors import required_scopes, tenant_for_notices

from .events import event_record
from .identity import AccountFingerprint
from .notifications import notify_staff
from .status import missing_required_scopes, seller_status_sync
from .webhooks import webhook_enqueue


@dataclass
class AuthorizationOutcome:
    seller: Seller
    grant: Grant
    status: str
    granted_scopes: list[str]
    missing_required: list[str]
    missing_optional: list[str] = field(default_factory=list)
    scopes_confirmed: bool = False
    reauthorized: bool = False


def granted_scopes_from(*, tenant: Tenant, token: TokenResponse) -> tuple[list[str], bool]:
    """(scopes, confirmed): the seed's `scope` field when present, else the app's registration:
    the scopes its recorded roles give (real Amazon), or its registered scopes when none are."""
    if token.scopes is not None:
        names = set(token.scopes)
        confirmed = True
    elif tenant.app_roles:
        names = set(scopes_given_by_roles(tenant.app_roles))
        confirmed = False
    else:
        names = set(tenant.registered_scopes or [])
        confirmed = False
    # Anything outside the catalog is ignored: we cannot gate calls on a scope we do not know.
    return [s for s in CATALOG if s in names], confirmed


@transaction.atomic
def grant_store_authorization(
    *,
    seller: Seller,
    token: TokenResponse,
    selling_partner_id: str = "",
    mws_auth_token: str = "",
    requested_scopes: list[str] | None = None,
    actor: str = "seller",
    verification: str = "",
    fingerprint: AccountFingerprint | None = None,
) -> AuthorizationOutcome:
    """Create the seller's grant, or replace its tokens in place on re-authorization.

    The caller has already checked that `selling_partner_id` may be attached to this seller,
    and that the new tokens are of the same account as any grant they replace (`identity.py`).
    `requested_scopes` are every scope the consent asked for; those the tenant does not
    require, and the seller did not grant, are reported as `missing_optional`.
    `fingerprint` is what SP-API said about the new tokens' account, kept for later checks.
    """
    if not token.refresh_token:
        raise ValueError("An authorization without a refresh token cannot be stored.")
    tenant = seller.tenant
    now = timezone.now()
    seller = Seller.objects.select_for_update().get(pk=seller.pk)
    if selling_partner_id and seller.selling_partner_id != selling_partner_id:
        seller.selling_partner_id = selling_partner_id
        seller.save(update_fields=["selling_partner_id", "updated_at"])

    scopes, confirmed = granted_scopes_from(tenant=tenant, token=token)
    grant, reauthorized = _grant_replace(
        seller=seller,
        values=_grant_values(token=token, mws_auth_token=mws_auth_token, scopes=scopes, confirmed=confirmed, now=now),
        fingerprint=fingerprint,
        now=now,
    )
    required = required_scopes(tenant_id=tenant.pk)
    missing_required = missing_required_scopes(grant=grant, required=required)
    missing_optional = [s for s in (requested_scopes or []) if s not in required and s not in set(scopes)]
    status = seller_status_sync(seller=seller, grant=grant, required=required, record=False)
    _authorization_record(
        seller=seller, tenant=tenant, scopes=scopes, confirmed=confirmed, missing_required=missing_required,
        reauthorized=reauthorized, status=status, actor=actor, verification=verification,
    )
    return AuthorizationOutcome(
        seller=seller,
        grant=grant,
        status=status,
        granted_scopes=scopes,
        missing_required=missing_required,
        missing_optional=missing_optional,
        scopes_confirmed=confirmed,
        reauthorized=reauthorized,
    )


def _grant_values(
    *, token: TokenResponse, mws_auth_token: str, scopes: list[str], confirmed: bool, now: datetime
) -> dict[str, Any]:
    """Every column a new authorization sets: new tokens, a fresh 365 days, no failure history."""
    return dict(
        refresh_token=token.refresh_token,
        access_token=token.access_token,
        access_token_expires_at=now + timedelta(seconds=token.expires_in),
        mws_auth_token=mws_auth_token,
        granted_scopes=scopes,
        scopes_confirmed=confirmed,
        refused_scopes=[],
        status=Grant.Status.ACTIVE,
        authorized_at=now,
        revoked_at=None,
        last_refreshed_at=now,
        consecutive_failures=0,
        failing_since=None,
        next_attempt_at=None,
        last_error="",
    )


def _grant_replace(
    *, seller: Seller, values: dict[str, Any], fingerprint: AccountFingerprint | None, now: datetime
) -> tuple[Grant, bool]:
    """(the seller's grant with `values`, whether it replaced an earlier one)."""
    # Unknown: forget the old account's fingerprint rather than let it describe new tokens.
    values.update(
        account_fingerprint=fingerprint.as_json() if fingerprint is not None else {},
        account_checked_at=now if fingerprint is not None else None,
    )
    # Deferred: every token is replaced, so one that no longer decrypts must not stop that. The
    # refresh claims too, so that save() (which then writes loaded fields only) cannot put back a
    # claim a refresh task released meanwhile.
    grant = (
        Grant.objects.defer(*TOKEN_FIELDS, "refresh_claimed_until", "refresh_lost_at")
        .filter(seller=seller)
        .first()
    )
    if grant is None:
        return Grant.objects.create(seller=seller, **values), False
    for key, value in values.items():
        setattr(grant, key, value)
    grant.version = F("version") + 1
    grant.save()
    grant.refresh_from_db()
    return grant, True


def _authorization_record(
    *,
    seller: Seller,
    tenant: Tenant,
    scopes: list[str],
    confirmed: bool,
    missing_required: list[str],
    reauthorized: bool,
    status: str,
    actor: str,
    verification: str,
) -> None:
    """The history event of a stored authorization; staff are told when it is partial."""
    if missing_required:
        kind, detail = Event.Kind.PARTIALLY_GRANTED, "Missing required: " + ", ".join(missing_required)
    elif reauthorized:
        kind, detail = Event.Kind.REAUTHORIZED, "Re-authorized with all required scopes."
    else:
        kind, detail = Event.Kind.GRANTED, "Authorized with all required scopes."
    if not confirmed:
        detail += " Scopes assumed from the app's registration (Amazon did not return them)."
    if verification:
        detail += f" Account check: {verification}"
    event = event_record(
        seller=seller,
        kind=kind,
        detail=detail,
        data={
            "granted": scopes,
            "missing_required": missing_required,
            "scopes_confirmed": confirmed,
            "reauthorized": reauthorized,
            "status": status,
        },
        actor=actor,
    )
    if missing_required:
        notify_staff(
            tenant=tenant,
            subject=f"{seller.name} granted only part of the required permissions",
            body=f"{seller.name} authorized the app without: {', '.join(missing_required)}. Calls needing them will be refused.",
            event=event,
        )
    else:
        # Staff are not emailed about a complete authorization; the agency's programs are told.
        webhook_enqueue(event=event, tenant=tenant)


@transaction.atomic
def grant_mark_revoked(
    *, seller: Seller, reason: str, actor: str, kind: str = Event.Kind.REVOKED, expected_version: int | None = None
) -> bool:
    """Mark the seller's grant revoked (never refreshed again). False when already revoked/none.

    `expected_version`: revoke only the grant as it was when the caller read it. A refresh that
    LWA answered with invalid_grant passes it, so a re-authorization stored while the refresh was
    in flight (new tokens, new version) is not revoked by the old token's answer.
    """
    now = timezone.now()
    current = Grant.objects.filter(seller=seller, status=Grant.Status.ACTIVE)
    if expected_version is not None:
        current = current.filter(version=expected_version)
    updated = current.update(
        status=Grant.Status.REVOKED, revoked_at=now, access_token="", version=F("version") + 1, updated_at=now
    )
    if not updated:
        return False
    event = event_record(seller=seller, kind=kind, detail=reason, actor=actor)
    seller_status_sync(seller=seller, record=False)
    notify_staff(
        tenant=tenant_for_notices(tenant_id=seller.tenant_id),
        subject=f"{seller.name} is revoked",
        body=(
            f"{seller.name}'s authorization is revoked ({reason}). spconnect will not refresh it again. "
            "Send the seller a re-authorization link from the admin to reconnect."
        ),
        event=event,
    )
    return True
