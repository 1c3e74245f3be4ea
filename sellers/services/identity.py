"""Is a new authorization of the same Amazon account as the grant it would replace?

Amazon does not sign the `selling_partner_id` it appends to the redirect, so someone holding a
seller's link (or anyone, through the public Login URI) could authorize their *own* account and
claim another seller's id. SP-API's marketplace participations name the account's stores; their
`storeName`s tell two accounts apart. The answer is kept on the grant (its fingerprint) each time
it is read, so a grant whose tokens no longer work can still be compared.

The rule fails closed: only a positive match ("same stores, same region") lets new tokens replace
a grant or take an id another seller holds. A mismatch, or anything that cannot be told (SP-API
silent, a token of another region, no store named, nothing recorded), holds the new tokens for
an identity review (`sellers/services/reviews.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import models
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.fields import UndecryptableValue
from sellers.models import Grant

logger = logging.getLogger(__name__)

PARTICIPATIONS_PATH = "/sellers/v1/marketplaceParticipations"


@dataclass(frozen=True)
class AccountFingerprint:
    """What SP-API says about the account behind a token, asked in one region. Never a token."""

    region: str
    store_names: frozenset[str]
    marketplaces: frozenset[str]

    def as_json(self) -> dict[str, Any]:
        return {"region": self.region, "store_names": sorted(self.store_names), "marketplaces": sorted(self.marketplaces)}

    @classmethod
    def from_json(cls, data: Any) -> AccountFingerprint | None:
        if not isinstance(data, dict) or not isinstance(data.get("region"), str):
            return None
        stores = data.get("store_names") or []
        markets = data.get("marketplaces") or []
        if not isinstance(stores, list) or not isinstance(markets, list):
            return None
        return cls(data["region"], frozenset(map(str, stores)), frozenset(map(str, markets)))


@sensitive_variables("access_token")
def account_fingerprint(*, region: str, access_token: str) -> AccountFingerprint | None:
    """The account's stores and marketplaces as seen in `region`, or None without a usable answer.

    A token issued in another region gets no answer here: that is the point of asking in the
    region the authorization was started for.
    """
    try:
        response = amazon.spapi_send(region=region, method="GET", path=PARTICIPATIONS_PATH, access_token=access_token)
    except amazon.SpapiTransportError:
        return None
    if response.status_code != 200:
        return None
    return fingerprint_from_participations(region=region, body=response.body)


def fingerprint_from_participations(*, region: str, body: Any) -> AccountFingerprint | None:
    """Read getMarketplaceParticipations' answer; None when it is not one."""
    items = body.get("payload") if isinstance(body, dict) else None
    if not isinstance(items, list):
        return None
    stores, marketplaces = set(), set()
    for item in items:
        if not isinstance(item, dict):
            continue
        store = item.get("storeName")
        if isinstance(store, str) and store:
            stores.add(store)
        market = item.get("marketplace")
        if isinstance(market, dict) and isinstance(market.get("id"), str):
            marketplaces.add(market["id"])
    return AccountFingerprint(region, frozenset(stores), frozenset(marketplaces))


def grant_fingerprint_record(*, grant: Grant, fingerprint: AccountFingerprint) -> None:
    """Keep what SP-API said about the grant's account (a plain UPDATE: no token is touched)."""
    now = timezone.now()
    Grant.objects.filter(pk=grant.pk).update(account_fingerprint=fingerprint.as_json(), account_checked_at=now)
    grant.account_fingerprint, grant.account_checked_at = fingerprint.as_json(), now


class Verdict(models.TextChoices):
    SAME = "same", "Same Amazon account"
    DIFFERENT = "different", "Another Amazon account"
    UNKNOWN = "unknown", "Could not be verified"


@dataclass(frozen=True)
class AccountCheck:
    verdict: Verdict
    detail: str
    reference: AccountFingerprint | None
    new: AccountFingerprint | None

    @property
    def same(self) -> bool:
        return self.verdict == Verdict.SAME


def fingerprints_compare(
    *, reference: AccountFingerprint | None, new: AccountFingerprint | None, region: str
) -> AccountCheck:
    """SAME only when both name stores, in `region`, and stores and marketplaces are the same."""

    def check(verdict: Verdict, detail: str) -> AccountCheck:
        return AccountCheck(verdict, detail, reference, new)

    if new is None:
        return check(Verdict.UNKNOWN, f"SP-API ({region.upper()}) gave no answer for the new authorization.")
    if reference is None:
        return check(Verdict.UNKNOWN, "Nothing is known about the account of the existing grant.")
    if reference.region != region or new.region != region:
        return check(Verdict.UNKNOWN, "The two accounts were seen in different regions.")
    if not reference.store_names or not new.store_names:
        return check(Verdict.UNKNOWN, "Amazon named no store to compare.")
    if reference.store_names != new.store_names:
        return check(Verdict.DIFFERENT, "The new authorization belongs to another Amazon store.")
    # A store name is the seller's choice: the marketplaces must agree too.
    if reference.marketplaces != new.marketplaces:
        return check(Verdict.DIFFERENT, "Same store name, but the account sells in other marketplaces.")
    return check(Verdict.SAME, "Same Amazon store and marketplaces as before.")


def grant_reference_fingerprint(*, grant: Grant, region: str) -> AccountFingerprint | None:
    """The account behind `grant`: asked live while its tokens work, else as last recorded."""
    # Imported when called: the token services import `grants`, which imports this module.
    from .tokens import TokenError, grant_access_token

    if grant.status == Grant.Status.ACTIVE:
        try:
            old_token = grant_access_token(grant=grant)
        except (TokenError, UndecryptableValue):
            # Cannot answer live: the recorded fingerprint still can.
            old_token = None
        live = account_fingerprint(region=region, access_token=old_token) if old_token else None
        if live is not None and live.store_names:
            grant_fingerprint_record(grant=grant, fingerprint=live)
            return live
    return AccountFingerprint.from_json(grant.account_fingerprint)


def grant_account_check(*, grant: Grant | None, region: str, new: AccountFingerprint | None) -> AccountCheck:
    """Compare a new authorization's account with the one behind an existing grant (any status)."""
    reference = grant_reference_fingerprint(grant=grant, region=region) if grant is not None else None
    return fingerprints_compare(reference=reference, new=new, region=region)
