"""Identity reviews: new authorizations held until staff confirm whose Amazon account they are.

Opened by the callback when the account check (`identity.py`) cannot show that new tokens belong
to the account they would replace, or to the account behind an id another seller holds. The
tokens wait here, encrypted and unused. An owner or manager compares both fingerprints in the
admin and approves (the tokens become the seller's grant; another seller holding the id gives it
up) or rejects (the tokens are discarded). Undecided reviews expire after seven days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.fields import UndecryptableValue
from sellers.models import TOKEN_FIELDS, Event, Grant, IdentityReview, Invitation, Seller
from sellers.selectors import grant_version

from .events import event_record
from .grants import AuthorizationOutcome, grant_store_authorization
from .identity import AccountCheck, AccountFingerprint, Verdict, account_fingerprint
from .notifications import notify_staff
from .status import seller_status_sync
from .webhooks import webhook_enqueue

logger = logging.getLogger(__name__)

REVIEW_TTL = timedelta(days=7)
# The held authorization: encrypted, read only on approval, blanked on every decision.
HELD_FIELDS = TOKEN_FIELDS


class ReviewClosed(Exception):
    """The review was already decided or has expired; nothing was changed."""


@dataclass(frozen=True)
class HeldForReview:
    """The callback's outcome when the new authorization waits for staff."""

    review: IdentityReview
    seller: Seller


def review_admin_url(review: IdentityReview) -> str:
    return settings.SITE_URL + reverse("admin:sellers_identityreview_change", args=[review.pk])


@sensitive_variables("token", "mws_auth_token")
@transaction.atomic
def identity_review_open(
    *,
    seller: Seller,
    holder: Seller | None,
    invitation: Invitation | None,
    selling_partner_id: str,
    region: str,
    token: amazon.TokenResponse,
    mws_auth_token: str,
    requested_scopes: list[str],
    check: AccountCheck,
) -> IdentityReview:
    """Hold `token` for staff; record it on the seller (and the holder); tell staff.

    A second authorization of the same account for the same seller while a review is open
    replaces the held tokens of that review instead of opening (and announcing) another.
    """
    now = timezone.now()
    holder = holder if holder is not None and holder.pk != seller.pk else None
    new_json = check.new.as_json() if check.new else {}
    held = {
        "refresh_token": token.refresh_token or "",
        "access_token": token.access_token,
        "access_token_expires_at": now + timedelta(seconds=token.expires_in),
        "mws_auth_token": mws_auth_token,
        "scopes": token.scopes,
        "requested_scopes": list(requested_scopes),
        "seller_grant_version": grant_version(seller=seller),
        "holder_grant_version": grant_version(seller=holder),
    }
    open_same = IdentityReview.objects.filter(
        seller=seller, holder=holder, selling_partner_id=selling_partner_id, region=region,
        status=IdentityReview.Status.OPEN, expires_at__gt=now,
    ).only("pk", "new_fingerprint", "public_id", "reason")
    # Only a known account is "the same account trying again": two authorizations nobody could
    # check may be two different people, and the second must not replace what staff will see.
    existing = next((r for r in open_same if new_json.get("store_names") and r.new_fingerprint == new_json), None)
    if existing is not None:
        return _held_replace(existing, held=held, seller=seller, selling_partner_id=selling_partner_id)
    review = IdentityReview.objects.create(
        tenant_id=seller.tenant_id,
        seller=seller,
        holder=holder,
        invitation=invitation,
        selling_partner_id=selling_partner_id,
        region=region,
        reason=IdentityReview.Reason.CONFLICT if check.verdict == Verdict.DIFFERENT else IdentityReview.Reason.UNVERIFIED,
        detail=check.detail[:500],
        reference_fingerprint=check.reference.as_json() if check.reference else {},
        new_fingerprint=new_json,
        expires_at=now + REVIEW_TTL,
        **held,
    )
    _review_announce(review, check=check)
    return review


@sensitive_variables("held")
def _held_replace(existing: IdentityReview, *, held: dict, seller: Seller, selling_partner_id: str) -> IdentityReview:
    """The same account tried again: its newest tokens replace the held ones, nobody is told twice."""
    plain = {k: v for k, v in held.items() if k not in HELD_FIELDS}
    IdentityReview.objects.filter(pk=existing.pk).update(**plain)
    # Encrypted fields are assigned and saved through the model: update() would store them in clear.
    review = IdentityReview.objects.defer(*HELD_FIELDS).get(pk=existing.pk)
    for name in HELD_FIELDS:
        setattr(review, name, held[name])
    review.save(update_fields=list(HELD_FIELDS))
    event_record(
        seller=seller,
        kind=Event.Kind.IDENTITY_REVIEW_OPENED,
        detail=f"Another authorization for {selling_partner_id} of the same account replaced the one held for review.",
        data={"review": str(existing.public_id), "reason": existing.reason, "selling_partner_id": selling_partner_id},
        actor="seller",
    )
    return review


def _review_announce(review: IdentityReview, *, check: AccountCheck) -> None:
    """History on the seller (and the holder), an email to staff and the tenant's webhook."""
    seller, spid = review.seller, review.selling_partner_id
    data = {"review": str(review.public_id), "reason": review.reason, "selling_partner_id": spid}
    detail = f"A new authorization for {spid or 'this seller'} waits for staff: {review.get_reason_display().lower()}. {check.detail}"
    event = event_record(seller=seller, kind=Event.Kind.IDENTITY_REVIEW_OPENED, detail=detail, data=data, actor="seller")
    if review.holder is not None:
        event_record(seller=review.holder, kind=Event.Kind.IDENTITY_REVIEW_OPENED, detail=detail, data=data, actor="seller")
    notify_staff(
        tenant=seller.tenant,
        subject=f"Confirm the Amazon account of {seller.name}",
        body=(
            f"Someone authorized the app for {spid or seller.name} from {seller.name}'s "
            f"{'link' if review.invitation_id else 'Seller Central'}, but spconnect could not confirm it is the same "
            f"Amazon account ({check.detail}). The new authorization is held, unused. Compare both accounts and "
            f"approve or reject it within {REVIEW_TTL.days} days: {review_admin_url(review)}"
        ),
        event=event,
    )


def _close(review: IdentityReview, *, status: str, actor: str, now: datetime) -> None:
    """Discard the held tokens and record the decision. An UPDATE, so tokens that no longer
    decrypt (a changed key) can still be discarded."""
    IdentityReview.objects.filter(pk=review.pk).update(
        status=status, decided_at=now, decided_by=actor[:150],
        refresh_token="", access_token="", mws_auth_token="", access_token_expires_at=None,
    )
    review.status, review.decided_at, review.decided_by = status, now, actor[:150]


def _locked_open(review: IdentityReview, now: datetime) -> IdentityReview:
    """The review, locked, if it can still be decided (tokens not read). Call `_expire_if_due`
    first, outside the decision's transaction, so an expiry is kept although the decision is
    refused."""
    current = (
        IdentityReview.objects.select_for_update(of=("self",))
        .select_related("seller", "seller__tenant", "holder")
        .defer(*HELD_FIELDS)
        .get(pk=review.pk)
    )
    if current.status != IdentityReview.Status.OPEN:
        raise ReviewClosed(f"This review was already {current.get_status_display().lower()}.")
    return current


def _expire_if_due(review: IdentityReview, now: datetime) -> None:
    if identity_reviews_expire(now=now, pks=[review.pk]):
        raise ReviewClosed("This review has expired; its authorization was discarded.")


def _release(holder: Seller, *, to: Seller, selling_partner_id: str, actor: str) -> None:
    """Another seller held the id: it gives up the id and its grant's tokens."""
    Grant.objects.filter(seller=holder).delete()
    Seller.objects.filter(pk=holder.pk).update(selling_partner_id="", updated_at=timezone.now())
    holder.selling_partner_id = ""
    event_record(
        seller=holder,
        kind=Event.Kind.ACCOUNT_RELEASED,
        detail=f"{selling_partner_id} now belongs to {to.name} after an identity review; this seller's tokens were discarded.",
        data={"selling_partner_id": selling_partner_id, "to": str(to.public_id)},
        actor=actor,
    )
    seller_status_sync(seller=holder, grant=None, actor=actor, cause="Amazon account released")


def _still_as_reviewed(review: IdentityReview) -> None:
    """Refuse to act on a picture that is no longer true."""
    holder = review.holder
    if review.selling_partner_id:
        taken = Seller.objects.filter(
            tenant_id=review.tenant_id, region=review.region, selling_partner_id=review.selling_partner_id
        ).exclude(pk__in=[review.seller_id, review.holder_id or 0])
        if taken.exists():
            raise ReviewClosed(
                f"{review.selling_partner_id} was connected to another seller since this review opened; it can only be rejected now."
            )
    if grant_version(seller=review.seller) != review.seller_grant_version:
        raise ReviewClosed(
            f"{review.seller.name}'s connection changed since this review opened; it can only be rejected now."
        )
    if holder is not None and (
        holder.selling_partner_id != review.selling_partner_id or grant_version(seller=holder) != review.holder_grant_version
    ):
        raise ReviewClosed(f"{holder.name}'s connection changed since this review opened; it can only be rejected now.")


def identity_review_approve(*, review: IdentityReview, actor: str) -> AuthorizationOutcome:
    """The held authorization becomes the seller's grant, replacing whatever was there."""
    now = timezone.now()
    _expire_if_due(review, now)
    try:
        with transaction.atomic():
            return _approve(_locked_open(review, now), actor=actor, now=now)
    except IntegrityError:
        # Another seller took the id between the check and the store: nothing was changed.
        raise ReviewClosed(
            f"{review.selling_partner_id} was connected to another seller meanwhile; it can only be rejected now."
        ) from None


def _held_token(review: IdentityReview, now: datetime) -> tuple[amazon.TokenResponse, str]:
    try:
        held = IdentityReview.objects.only(*HELD_FIELDS, "access_token_expires_at", "scopes").get(pk=review.pk)
    except UndecryptableValue:
        raise ReviewClosed("The held authorization cannot be decrypted with the configured keys; reject it.") from None
    remaining = (held.access_token_expires_at - now).total_seconds() if held.access_token_expires_at else 0
    token = amazon.TokenResponse(
        access_token=held.access_token, expires_in=max(0, int(remaining)), refresh_token=held.refresh_token, scopes=held.scopes
    )
    return token, held.mws_auth_token


def _approve(review: IdentityReview, *, actor: str, now: datetime) -> AuthorizationOutcome:
    _still_as_reviewed(review)
    seller = review.seller
    token, mws_auth_token = _held_token(review, now)
    # Only the holder recorded when the review opened gives up the id (never "every seller
    # without an id", which is what an empty id would match).
    holder = review.holder
    if holder is not None and review.selling_partner_id:
        _release(holder, to=seller, selling_partner_id=review.selling_partner_id, actor=actor)
    # What the approved tokens' account is, asked now if they still answer: the grant must
    # never keep describing the account it replaced.
    live = account_fingerprint(region=review.region, access_token=token.access_token) if token.expires_in else None
    shown = AccountFingerprint.from_json(review.new_fingerprint)
    if live is not None and live.store_names and shown is not None and shown.store_names and live != shown:
        # Staff decided on what the review showed; tokens that now show another account are not that.
        raise ReviewClosed("The held authorization now shows another account than the one compared; reject it.")
    fingerprint = live or shown
    outcome = grant_store_authorization(
        seller=seller,
        token=token,
        selling_partner_id=review.selling_partner_id,
        mws_auth_token=mws_auth_token,
        requested_scopes=review.requested_scopes,
        actor=actor,
        verification=f"approved by {actor} after an identity review.",
        fingerprint=fingerprint,
    )
    if review.invitation_id and not outcome.missing_required:
        Invitation.objects.filter(pk=review.invitation_id, completed_at__isnull=True).update(completed_at=now)
    _close(review, status=IdentityReview.Status.APPROVED, actor=actor, now=now)
    approved = event_record(
        seller=seller,
        kind=Event.Kind.IDENTITY_REVIEW_APPROVED,
        detail=f"Approved: the authorization for {review.selling_partner_id or seller.name} is now this seller's grant.",
        data={"review": str(review.public_id)},
        actor=actor,
    )
    webhook_enqueue(event=approved)
    return outcome


def identity_review_reject(*, review: IdentityReview, actor: str) -> None:
    """Discard the held authorization; the seller's grant (if any) stays as it was."""
    now = timezone.now()
    _expire_if_due(review, now)
    with transaction.atomic():
        review = _locked_open(review, now)
        _close(review, status=IdentityReview.Status.REJECTED, actor=actor, now=now)
        rejected = event_record(
            seller=review.seller,
            kind=Event.Kind.IDENTITY_REVIEW_REJECTED,
            detail=f"Rejected: the authorization for {review.selling_partner_id or review.seller.name} was discarded.",
            data={"review": str(review.public_id)},
            actor=actor,
        )
        webhook_enqueue(event=rejected)


def _expire(review: IdentityReview, now: datetime) -> None:
    _close(review, status=IdentityReview.Status.EXPIRED, actor="system", now=now)
    expired = event_record(
        seller=review.seller,
        kind=Event.Kind.IDENTITY_REVIEW_EXPIRED,
        detail=f"Nobody decided within {REVIEW_TTL.days} days: the authorization for "
        f"{review.selling_partner_id or review.seller.name} was discarded.",
        data={"review": str(review.public_id)},
    )
    webhook_enqueue(event=expired)


def identity_reviews_expire(*, now: datetime | None = None, pks: list[int] | None = None) -> int:
    """Discard the tokens of every open review past its deadline. Safe to run twice; the
    held tokens are never read, so one that no longer decrypts cannot stall the others."""
    now = now or timezone.now()
    expired = 0
    due = IdentityReview.objects.filter(status=IdentityReview.Status.OPEN, expires_at__lte=now)
    if pks is not None:
        due = due.filter(pk__in=pks)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            review = (
                IdentityReview.objects.select_for_update(of=("self",)).select_related("seller").defer(*HELD_FIELDS)
                .filter(pk=pk, status=IdentityReview.Status.OPEN).first()
            )
            if review is not None:
                _expire(review, now)
                expired += 1
    if expired:
        logger.info("Identity reviews expired: %d", expired)
    return expired
