"""What staff should do next about a seller, in words: the dashboard's "Needs attention" and
the one sentence at the top of a seller's page."""

from __future__ import annotations

from datetime import datetime

from sellers.admin_html import scope_labels_in, when
from sellers.models import Event, Seller

S = Seller.Status
NEXT_STEPS: dict[str, str] = {
    S.INVITED: "wait for the seller to open the link, or email it again",
    S.OPENED: "the seller saw the page but did not go on to Amazon: remind them, or email the link again",
    S.AT_AMAZON: "the seller went to Amazon's consent page and has not come back: remind them to finish",
    S.DECLINED: "ask the seller why they declined, then re-send the link",
    S.LINK_EXPIRED: "send a new link",
    S.ACTIVE: "nothing to do",
    S.PARTIAL: "send a re-authorization link so the seller grants the missing required scopes",
    S.REVOKED: "send a re-authorization link: the seller must authorize the app again",
    S.EXPIRED: "send a re-authorization link: Amazon asks for a new consent every year",
    S.FAILING: "refresh now or test the connection; if it keeps failing, check the app's credentials",
}


def next_step(status: str, *, renewal_due: datetime | None = None) -> str:
    """The next step for a seller in `status`; an active seller whose renewal is near is asked to renew."""
    if status == S.ACTIVE and renewal_due is not None:
        return f"renewal due {when(renewal_due, date_only=True)}: send a re-authorization link before then"
    return NEXT_STEPS.get(status, "open the seller's history")


def headline(*, status: str, last: Event | None, renewal_due: datetime | None = None) -> str:
    """One sentence: what happened last, and what to do next."""
    step = next_step(status, renewal_due=renewal_due)
    if last is None:
        return f"Nothing recorded yet; next: {step}."
    detail = scope_labels_in(last.detail).rstrip(".")
    happened = f"{last.get_kind_display()} ({detail})" if detail else last.get_kind_display()
    return f"Last: {happened}, {when(last.created_at)} UTC; next: {step}."
