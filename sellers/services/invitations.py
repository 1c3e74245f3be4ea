"""Invitation and re-authorization links to the hosted onboarding page."""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import models, transaction
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils import timezone

from sellers.hashing import token_hash
from sellers.models import Event, Invitation, Region, Seller, Tenant
from sellers.selectors import seller_open_links

from .events import event_record
from .status import seller_status_transition

logger = logging.getLogger(__name__)


def _new_invitation(*, seller: Seller, purpose: str, created_by: str, ttl_days: int | None) -> Invitation:
    token = secrets.token_urlsafe(32)
    days = ttl_days if ttl_days is not None else settings.SPCONNECT_INVITATION_TTL_DAYS
    return Invitation.objects.create(
        tenant_id=seller.tenant_id,
        seller=seller,
        purpose=purpose,
        token=token,
        token_hash=token_hash(token),
        expires_at=timezone.now() + timedelta(days=days),
        created_by=created_by[:150],
    )


@transaction.atomic
def invitation_create(
    *,
    tenant: Tenant,
    name: str,
    email: str = "",
    region: str = Region.NA,
    actor: str = "system",
    ttl_days: int | None = None,
) -> Invitation:
    """Create a pending seller and its onboarding link."""
    if region not in Region.values:
        raise ValueError(f"Unknown region {region!r}; use one of {', '.join(Region.values)}.")
    seller = Seller.objects.create(tenant=tenant, name=name.strip(), email=email.strip(), region=region)
    invitation = _new_invitation(
        seller=seller, purpose=Invitation.Purpose.ONBOARDING, created_by=actor, ttl_days=ttl_days
    )
    event_record(seller=seller, kind=Event.Kind.INVITED, detail=f"Invitation valid until {invitation.expires_at:%Y-%m-%d}.", actor=actor)
    return invitation


def reauthorization_link_get_or_create(
    *, seller: Seller, actor: str = "system", ttl_days: int | None = None, invite_again: bool = True
) -> tuple[Invitation, bool]:
    """The seller's newest unexpired link, or a new re-authorization link. Returns (link, created).

    `invite_again=False` (a link made only to be named in an error, nobody sends it): a seller who
    never connected keeps `declined` or `link_expired` rather than becoming `invited`.
    """
    current = seller_open_links(seller_ids=[seller.pk]).first()
    if current is not None:
        return current, False
    purpose = Invitation.Purpose.REAUTHORIZATION if hasattr(seller, "grant") else Invitation.Purpose.ONBOARDING
    with transaction.atomic():
        invitation = _new_invitation(seller=seller, purpose=purpose, created_by=actor, ttl_days=ttl_days)
        if not invite_again:
            event_record(
                seller=seller,
                kind=Event.Kind.REAUTH_LINK_CREATED,
                detail=f"Link valid until {invitation.expires_at:%Y-%m-%d}.",
                actor=actor,
            )
            return invitation, True
        # A seller that never connected (declined, link expired) is invited again.
        seller_status_transition(
            seller=seller,
            grant=None,
            kind=Event.Kind.REAUTH_LINK_CREATED,
            detail=f"Link valid until {invitation.expires_at:%Y-%m-%d}.",
            actor=actor,
            step=Seller.Status.INVITED,
        )
    return invitation, True


def invitation_resolve(token: str) -> Invitation | None:
    """The invitation for a URL token (expired ones included: the page explains), or None."""
    if not token or len(token) > 128:
        return None
    return (
        Invitation.objects.select_related("tenant", "seller")
        .filter(token_hash=token_hash(token))
        .first()
    )


def reauthorization_email(*, seller: Seller, tenant: Tenant, invitation: Invitation, missing: list[str]) -> EmailMessage:
    """The email carrying a seller's link (also sent in bulk by campaigns)."""
    body = render_to_string(
        "email/reauthorization_link.txt",
        {
            "seller": seller,
            "tenant": tenant,
            "url": invitation.url,
            "expires_at": invitation.expires_at,
            "reauthorize": invitation.purpose == Invitation.Purpose.REAUTHORIZATION,
            "missing": missing,
        },
    )
    verb = "Re-authorize" if invitation.purpose == Invitation.Purpose.REAUTHORIZATION else "Connect"
    return EmailMessage(f"{verb} {tenant.name}'s access to your Amazon account", body, None, [seller.email])


def link_email_claim(invitation: Invitation, *, at: datetime) -> bool:
    """Mark the link emailed at `at` unless somebody else did since it was read (one conditional
    UPDATE): of two senders at once, one gets True and sends, the other gets False."""
    previous = invitation.last_emailed_at
    guard = Q(last_emailed_at=previous) if previous is not None else Q(last_emailed_at__isnull=True)
    return bool(Invitation.objects.filter(guard, pk=invitation.pk).update(last_emailed_at=at))


def link_email_release(invitation: Invitation, *, at: datetime, previous: datetime | None) -> None:
    """The email claimed at `at` was not sent: give the claim back so the next attempt sends."""
    Invitation.objects.filter(pk=invitation.pk, last_emailed_at=at).update(last_emailed_at=previous)


class LinkEmail(models.TextChoices):
    SENT = "sent", "emailed"
    ALREADY = "already", "already emailed earlier"
    NO_ADDRESS = "no_address", "no email address"
    FAILED = "failed", "email failed"


def reauthorization_link_send(
    *,
    seller: Seller,
    actor: str = "system",
    resend: bool = False,
    missing: list[str] | None = None,
    connection=None,
) -> tuple[Invitation, LinkEmail]:
    """Email the seller its current link (creating one if needed). Returns (link, what happened).

    Idempotent and safe against double clicks: the link is claimed with a conditional UPDATE of
    `last_emailed_at` before sending, so two requests at once send one email; a failed send
    gives the claim back (the next attempt sends) and records nothing.
    """
    invitation, _ = reauthorization_link_get_or_create(seller=seller, actor=actor)
    if not seller.email:
        return invitation, LinkEmail.NO_ADDRESS
    previous = invitation.last_emailed_at
    if previous is not None and not resend:
        return invitation, LinkEmail.ALREADY
    now = timezone.now()
    if not link_email_claim(invitation, at=now):
        return invitation, LinkEmail.ALREADY  # another request claimed it a moment ago
    message = reauthorization_email(seller=seller, tenant=seller.tenant, invitation=invitation, missing=missing or [])
    message.connection = connection  # None: Django opens one for this message
    try:
        message.send()
    except (OSError, ValueError) as exc:  # smtplib errors are OSErrors; ValueError: a refused header
        logger.warning("Re-authorization email to seller %s failed: %s", seller.pk, type(exc).__name__)
        link_email_release(invitation, at=now, previous=previous)
        return invitation, LinkEmail.FAILED
    invitation.last_emailed_at = now
    event_record(
        seller=seller,
        kind=Event.Kind.REAUTH_LINK_EMAILED,
        detail=f"Link emailed to {seller.email}." + (" (resent)" if previous is not None else ""),
        actor=actor,
    )
    return invitation, LinkEmail.SENT
