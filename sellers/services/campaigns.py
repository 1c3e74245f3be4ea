"""Re-authorization campaigns: pick the sellers who must consent again, give each a link, email it.

`reauth_selection_build` validates the filters (statuses, scopes, spids) into a
`selectors.ReauthSelection`; `reauth_run` walks the matching sellers
(`selectors.reauth_candidates`) in keyset-paginated chunks, so memory stays flat and the query count grows
with the number of chunks, not sellers. Per chunk it reads the sellers, their grants (without
the token columns) and their open links, bulk-creates the missing links with their history
events, and emails over one mail connection.

Idempotent: an open link is reused and a link already emailed is not emailed again unless
`resend`; a second run within the links' lifetime creates and sends nothing.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import get_connection
from django.db import transaction
from django.utils import timezone

from sellers.hashing import token_hash
from sellers.models import Event, Grant, Invitation, Seller, Tenant
from sellers.scopes import CATALOG
from sellers.selectors import ReauthSelection, reauth_candidates, required_scopes, seller_open_links

from .invitations import link_email_claim, link_email_release, reauthorization_email
from .status import missing_required_scopes

logger = logging.getLogger(__name__)

# Grant columns a campaign needs; tokens are never read (no decryption, nothing to leak).
GRANT_FIELDS = ("id", "seller_id", "status", "authorized_at", "granted_scopes", "refused_scopes")
SELLER_FIELDS = ("id", "tenant_id", "name", "email", "region", "selling_partner_id", "status")


class SelectionError(ValueError):
    """A filter names a status, scope or seller that does not exist; the message says which."""


def reauth_selection_build(
    *,
    tenant: Tenant,
    statuses: Iterable[str] = (),
    missing_scopes: Iterable[str] = (),
    renewal_due_within_days: int | None = None,
    selling_partner_ids: Iterable[str] = (),
) -> ReauthSelection:
    """Validate the filters; raises SelectionError naming what is unknown and what is allowed."""
    statuses = tuple(dict.fromkeys(s.strip().lower() for s in statuses if s.strip()))
    unknown = [s for s in statuses if s not in Seller.Status.values]
    if unknown:
        raise SelectionError(f"Unknown status {', '.join(unknown)}; use one of {', '.join(Seller.Status.values)}.")
    scopes = []
    for raw in missing_scopes:
        name = raw.strip()
        # Accept the short form (`orders`) as well as the catalog name.
        full = name if name in CATALOG else f"sellingpartnerapi::{name}"
        if full not in CATALOG:
            raise SelectionError(f"Unknown scope {name!r}; use one of {', '.join(CATALOG)}.")
        scopes.append(full)
    if renewal_due_within_days is not None and not 0 <= renewal_due_within_days <= settings.SPCONNECT_RENEWAL_DAYS:
        raise SelectionError(f"--renewal-due-within must be between 0 and {settings.SPCONNECT_RENEWAL_DAYS} days.")
    spids = tuple(dict.fromkeys(s.strip() for s in selling_partner_ids if s.strip()))
    if spids:
        known = set(
            Seller.objects.filter(tenant=tenant, selling_partner_id__in=spids).values_list("selling_partner_id", flat=True)
        )
        missing = [s for s in spids if s not in known]
        if missing:
            shown = ", ".join(spid[:40] for spid in missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise SelectionError(f"No seller of {tenant.slug} has selling_partner_id {shown}.")
    return ReauthSelection(
        tenant=tenant,
        statuses=statuses,
        missing_scopes=tuple(s for s in CATALOG if s in set(scopes)),
        renewal_due_within_days=renewal_due_within_days,
        selling_partner_ids=spids,
    )


@dataclass
class ReauthRow:
    """One seller's line in a campaign: what it lacks, its link, what happened."""

    seller_id: int
    name: str
    selling_partner_id: str
    status: str
    missing_scopes: list[str]
    link: str  # the URL, or "(new link)" in a dry run
    link_created: bool = False
    emailed: bool = False
    would_email: bool = False  # dry run: an email would be sent
    note: str = ""  # why no email went out (no address, already emailed, failed)


@dataclass
class ReauthSummary:
    matched: int = 0
    links_created: int = 0
    links_reused: int = 0
    emailed: int = 0
    would_email: int = 0
    not_emailed: dict[str, int] = field(default_factory=dict)

    def add(self, row: ReauthRow) -> None:
        self.matched += 1
        if row.link_created:
            self.links_created += 1
        else:
            self.links_reused += 1
        self.emailed += row.emailed
        self.would_email += row.would_email
        if row.note:
            self.not_emailed[row.note] = self.not_emailed.get(row.note, 0) + 1


def _missing(*, grant: Grant | None, required: list[str], selection: ReauthSelection) -> tuple[list[str], bool]:
    """(missing required scopes, matches the missing-scope filter)."""
    missing = missing_required_scopes(grant=grant, required=required)
    if not selection.missing_scopes:
        return missing, True
    have = set(grant.effective_scopes) if grant is not None else set()
    return missing, any(s not in have for s in selection.missing_scopes)


OPEN_LINK_FIELDS = ("id", "tenant_id", "seller_id", "purpose", "token", "expires_at", "last_emailed_at")


def _open_links(seller_ids: list[int], now: datetime) -> dict[int, Invitation]:
    """Each seller's open link (as reauthorization_link_get_or_create), in one query."""
    found: dict[int, Invitation] = {}
    for invitation in seller_open_links(seller_ids=seller_ids, now=now).only(*OPEN_LINK_FIELDS):
        found.setdefault(invitation.seller_id, invitation)
    return found


def _build_links(
    sellers: list[Seller], *, has_grant: set[int], actor: str, now: datetime
) -> tuple[dict[int, Invitation], dict[int, Invitation]]:
    """Create one link per seller with its REAUTH_LINK_CREATED event, two INSERTs per chunk.

    Returns (created, found): a link another run created meanwhile is used, not duplicated.
    """
    expires_at = now + timedelta(days=settings.SPCONNECT_INVITATION_TTL_DAYS)
    ids = [s.id for s in sellers]
    with transaction.atomic():
        # PostgreSQL: lock the chunk's sellers (in id order, so two runs cannot deadlock) and look
        # again, so two campaigns running at once give a seller one link, not two. SQLite
        # serialises writers by itself and ignores the lock.
        list(Seller.objects.select_for_update().filter(id__in=ids).order_by("id").values_list("id", flat=True))
        found = _open_links(ids, now)
        invitations = []
        for seller in sellers:
            if seller.id in found:
                continue
            token = secrets.token_urlsafe(32)
            invitations.append(
                Invitation(
                    tenant_id=seller.tenant_id,
                    seller_id=seller.id,
                    # As reauthorization_link_get_or_create: a seller never connected gets onboarding.
                    purpose=Invitation.Purpose.REAUTHORIZATION if seller.id in has_grant else Invitation.Purpose.ONBOARDING,
                    token=token,
                    token_hash=token_hash(token),
                    expires_at=expires_at,
                    created_by=actor[:150],
                )
            )
        Invitation.objects.bulk_create(invitations)
        Event.objects.bulk_create(
            [
                Event(
                    tenant_id=inv.tenant_id,
                    seller_id=inv.seller_id,
                    kind=Event.Kind.REAUTH_LINK_CREATED,
                    detail=f"Link valid until {expires_at:%Y-%m-%d}.",
                    data={"campaign": True},
                    actor=actor[:150],
                    created_at=now,
                )
                for inv in invitations
            ]
        )
    return {inv.seller_id: inv for inv in invitations}, found


def _send_emails(
    todo: list[tuple[Seller, Invitation, list[str]]], *, tenant: Tenant, resend: bool, actor: str
) -> dict[int, str]:
    """Claim, send and record each email; returns {seller id: note} for those not sent."""
    notes: dict[int, str] = {}
    now = timezone.now()
    claimed: list[tuple[Seller, Invitation, list[str], datetime | None]] = []
    # Claim with a conditional UPDATE per link, so two campaigns running at once never email the
    # same seller twice. One transaction per chunk: SQLite commits (fsync) once, not per row.
    with transaction.atomic():
        for seller, invitation, missing in todo:
            previous = invitation.last_emailed_at
            if link_email_claim(invitation, at=now):
                claimed.append((seller, invitation, missing, previous))
            else:
                notes[seller.id] = "emailed meanwhile by another run"
    if not claimed:
        return notes
    def give_back(seller: Seller, invitation: Invitation, previous: datetime | None) -> None:
        # Not sent: release the claim so the next run tries again.
        link_email_release(invitation, at=now, previous=previous)
        notes[seller.id] = "email failed"

    sent: list[tuple[Seller, Invitation]] = []
    # One connection for the chunk: an SMTP handshake per seller would dominate a large campaign.
    connection = get_connection()
    try:
        connection.open()
    except OSError as exc:  # smtplib errors are OSErrors
        logger.warning("Cannot reach the mail server for a re-authorization campaign: %s", type(exc).__name__)
        for seller, invitation, _, previous in claimed:
            give_back(seller, invitation, previous)
        return notes
    try:
        for seller, invitation, missing, previous in claimed:
            try:
                connection.send_messages([reauthorization_email(seller=seller, tenant=tenant, invitation=invitation, missing=missing)])
            except (OSError, ValueError) as exc:  # ValueError: a header Django refuses to send
                logger.warning("Re-authorization email to seller %s failed: %s", seller.pk, type(exc).__name__)
                give_back(seller, invitation, previous)
                continue
            invitation.last_emailed_at = now
            sent.append((seller, invitation))
    finally:
        connection.close()
    Event.objects.bulk_create(
        [
            Event(
                tenant_id=seller.tenant_id,
                seller_id=seller.id,
                kind=Event.Kind.REAUTH_LINK_EMAILED,
                detail=f"Link emailed to {seller.email}." + (" (resent)" if resend else ""),
                data={"campaign": True},
                actor=actor[:150],
                created_at=now,
            )
            for seller, _ in sent
        ]
    )
    return notes


def reauth_run(
    *,
    selection: ReauthSelection,
    send_email: bool = False,
    resend: bool = False,
    dry_run: bool = False,
    actor: str = "system",
    chunk_size: int = 500,
    on_scanned: Callable[[int], None] | None = None,
) -> Iterator[ReauthRow]:
    """Yield one ReauthRow per matching seller, creating and emailing links as it goes.

    `dry_run` reads only: no link is created, nothing is emailed or recorded; rows show the link
    that would be reused (or "(new link)") and whether an email would go out. `on_scanned(n)` is
    called after each chunk with the number of candidates looked at (for a progress bar).
    """
    tenant = selection.tenant
    now = timezone.now()
    required = required_scopes(tenant_id=tenant.pk)
    candidates = reauth_candidates(selection=selection, now=now).only(*SELLER_FIELDS).order_by("id")
    last_id = 0
    while True:
        # Keyset pagination on the primary key: each chunk is one indexed range read.
        chunk = list(candidates.filter(id__gt=last_id)[:chunk_size])
        if not chunk:
            return
        last_id = chunk[-1].id
        matched, grants = _matching(chunk, required=required, selection=selection)
        links, created = _links(matched, has_grant=set(grants), dry_run=dry_run, actor=actor, now=now)
        rows: list[ReauthRow] = []
        todo: list[tuple[Seller, Invitation, list[str]]] = []
        for seller, missing in matched:
            invitation = links.get(seller.id)
            row = ReauthRow(
                seller_id=seller.id,
                name=seller.name,
                selling_partner_id=seller.selling_partner_id,
                status=seller.status,
                missing_scopes=missing,
                link=invitation.url if invitation is not None else "(new link)",
                link_created=seller.id in created or invitation is None,
            )
            if send_email and _email_wanted(row, seller=seller, invitation=invitation, resend=resend, dry_run=dry_run):
                assert invitation is not None  # only a dry run leaves a seller without its link
                todo.append((seller, invitation, missing))
            rows.append(row)
        if todo:
            _email(rows, todo, tenant=tenant, resend=resend, actor=actor)
        if on_scanned is not None:
            on_scanned(len(chunk))
        yield from rows


def _matching(
    chunk: list[Seller], *, required: list[str], selection: ReauthSelection
) -> tuple[list[tuple[Seller, list[str]]], dict[int, Grant]]:
    """(the chunk's sellers the missing-scope filter keeps, with their missing required scopes;
    the chunk's grants by seller id), one query, tokens never read."""
    grants = {g.seller_id: g for g in Grant.objects.filter(seller_id__in=[s.id for s in chunk]).only(*GRANT_FIELDS)}
    matched: list[tuple[Seller, list[str]]] = []
    for seller in chunk:
        missing, keep = _missing(grant=grants.get(seller.id), required=required, selection=selection)
        if keep:
            matched.append((seller, missing))
    return matched, grants


def _links(
    matched: list[tuple[Seller, list[str]]], *, has_grant: set[int], dry_run: bool, actor: str, now: datetime
) -> tuple[dict[int, Invitation], set[int]]:
    """(each matched seller's link, the ids of sellers whose link this run created). In a dry
    run a seller without an open link has none."""
    links = _open_links([s.id for s, _ in matched], now) if matched else {}
    without = [s for s, _ in matched if s.id not in links]
    if not without or dry_run:
        return links, set()
    created, found = _build_links(without, has_grant=has_grant, actor=actor, now=now)
    return {**links, **found, **created}, set(created)


def _email_wanted(row: ReauthRow, *, seller: Seller, invitation: Invitation | None, resend: bool, dry_run: bool) -> bool:
    """Whether to email this seller now; otherwise notes on `row` why not (or that a dry run would)."""
    already = invitation is not None and invitation.last_emailed_at is not None
    if not seller.email:
        row.note = "no email address"
    elif already and not resend:
        row.note = "already emailed"
    elif dry_run:
        row.would_email = True
    else:
        return True
    return False


def _email(rows: list[ReauthRow], todo: list[tuple[Seller, Invitation, list[str]]], *, tenant: Tenant, resend: bool, actor: str) -> None:
    """Send the chunk's emails and mark each row emailed, or note why not."""
    notes = _send_emails(todo, tenant=tenant, resend=resend, actor=actor)
    sent_ids = {s.id for s, _, _ in todo} - set(notes)
    for row in rows:
        if row.seller_id in sent_ids:
            row.emailed = True
        elif row.seller_id in notes:
            row.note = notes[row.seller_id]
