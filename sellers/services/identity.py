"""Is a new authorization of the same Amazon account as the grant it would replace?

Amazon does not sign the `selling_partner_id` it appends to the redirect, so someone holding a
seller's link (or anyone, through the public Login URI) could authorize their *own* account and
claim the seller's id. Before tokens replace a working grant, both tokens are asked for the
account's marketplace participations, whose `storeName` tells two accounts apart. A mismatch
refuses the replacement; when either side cannot answer, the check is inconclusive and the
history says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.models import Grant

logger = logging.getLogger(__name__)

PARTICIPATIONS_PATH = "/sellers/v1/marketplaceParticipations"


@dataclass(frozen=True)
class AccountFingerprint:
    store_names: frozenset[str]
    marketplaces: frozenset[str]


@sensitive_variables("access_token")
def account_fingerprint(*, region: str, access_token: str) -> AccountFingerprint | None:
    """The account's store names and marketplaces, or None when SP-API gives no usable answer."""
    try:
        response = amazon.spapi_send(region=region, method="GET", path=PARTICIPATIONS_PATH, access_token=access_token)
    except amazon.SpapiTransportError:
        return None
    if response.status_code != 200 or not isinstance(response.body, dict):
        return None
    items = response.body.get("payload")
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
    return AccountFingerprint(frozenset(stores), frozenset(marketplaces))


@dataclass(frozen=True)
class SameAccountVerdict:
    same: bool | None  # True: verified same; False: different account; None: could not tell
    detail: str


@sensitive_variables("new_access_token")
def grant_same_account_check(*, grant: Grant, region: str, new_access_token: str) -> SameAccountVerdict:
    """Compare the account behind `grant`'s tokens with the one behind `new_access_token`."""
    from .tokens import TokenError, grant_access_token

    if grant.status != Grant.Status.ACTIVE:
        return SameAccountVerdict(None, "The previous grant is revoked; nothing to compare with.")
    try:
        old_token = grant_access_token(grant=grant)
    except TokenError:
        return SameAccountVerdict(None, "The previous grant no longer works; nothing to compare with.")
    old = account_fingerprint(region=region, access_token=old_token)
    if old is None:
        return SameAccountVerdict(None, "The previous grant could not be checked with Amazon.")
    new = account_fingerprint(region=region, access_token=new_access_token)
    if new is None:
        return SameAccountVerdict(None, "The new authorization could not be checked with Amazon.")
    if old.store_names and new.store_names:
        if old.store_names != new.store_names:
            return SameAccountVerdict(False, "The new authorization belongs to another Amazon store.")
        return SameAccountVerdict(True, "Same Amazon store as before.")
    return SameAccountVerdict(None, "Amazon named no store to compare.")
