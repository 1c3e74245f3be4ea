"""What the hosted pages share: their headers, how they read Amazon's parameters, and their
problem pages (every problem the callback can meet is one row of CALLBACK_PROBLEMS)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache

from spconnect.views import method_not_allowed_page


def hosted_page(view):
    """Pages of the consent flow: never cached, they leak no URL (state, code) by Referer, and a
    wrong method (GET of a button's address) gets a page saying so, not an empty 405."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        response = method_not_allowed_page(request, view(request, *args, **kwargs))
        # strict-origin, not no-referrer: both send no path or query anywhere, but under
        # no-referrer browsers send `Origin: null` with our own form posts, which CSRF refuses.
        response["Referrer-Policy"] = "strict-origin"
        return response

    return never_cache(wrapper)


def read_query_params(request: HttpRequest, limits: dict[str, int]) -> dict[str, str]:
    """The named query parameters, each at most once and within its length, else ValueError."""
    values = {}
    for name, max_len in limits.items():
        found = request.GET.getlist(name)
        if len(found) > 1:
            raise ValueError(f"The parameter {name} was sent more than once.")
        if found:
            if len(found[0]) > max_len:
                raise ValueError(f"The parameter {name} is too long.")
            values[name] = found[0]
    return values


def problem_page(
    request: HttpRequest,
    *,
    title: str,
    message: str,
    status: int,
    retry_token: str | None = None,
    kind: str = "error",
    brand: str | None = None,
) -> HttpResponse:
    """The project's problem page; with `retry_token`, a button starts that invitation again.

    `kind` "declined", "review" and "info" are shown as information rather than as an error.
    `brand`: the agency's name in the header, as on the pages before (None: when not known).
    """
    retry_url = reverse("authflow:start", kwargs={"token": retry_token}) if retry_token else None
    return render(
        request,
        "problem.html",
        {"title": title, "message": message, "retry_url": retry_url, "kind": kind, "brand": brand},
        status=status,
    )


@dataclass(frozen=True)
class Problem:
    """One page of the callback. `title` and `message` may name {tenant}, {seller} or {detail}."""

    title: str
    message: str
    status: int = 400
    retry: bool = True  # offer "Try again" when the view has an invitation to start again
    kind: str = "error"


# "Connection attempt", not "sign-in": sellers sign in on Amazon's pages, never here.
_UNUSABLE = "This connection attempt cannot be used"
_NOT_COMPLETED = "The connection could not be completed"
_AMAZON_AWAY = "Amazon could not be reached to finish the connection. Please try again in a few minutes."

# Keys: `StateRejected.reason`, `CallbackFailed.kind`, Amazon's `error`, and the view's own.
CALLBACK_PROBLEMS: dict[str, Problem] = {
    "unreadable": Problem("We could not read Amazon's answer", "{detail} Start again from your link.", retry=False),
    # The state (authflow/state.py)
    "missing": Problem(_UNUSABLE, "The link back from Amazon had no state. Start again from your invitation link."),
    "unknown": Problem(_UNUSABLE, "This connection attempt is not one we started. Start again from your invitation link."),
    "expired": Problem(_UNUSABLE, "This connection attempt took longer than 10 minutes and expired. Start again."),
    "used": Problem(_UNUSABLE, "This connection attempt was already completed. Start again if you need to."),
    # Never offer the invitation to another browser: a leaked callback URL must not turn into
    # the seller's reusable link.
    "other_browser": Problem(
        _UNUSABLE,
        "This connection attempt was started in a different browser. Finish it in the browser where "
        "you started, or start again here.",
        status=403,
        retry=False,
    ),
    # Amazon's `error` parameter
    "access_denied": Problem(
        "You declined the connection",
        "Nothing was shared with {tenant}. If you declined by mistake, you can try again.",
        status=200,
        kind="declined",
    ),
    "invalid_scope": Problem(
        "Amazon refused a requested permission",
        "invalid_scope: The requested scope is invalid or not available. Please tell {tenant}.",
        retry=False,
    ),
    "consent_error": Problem(
        "Amazon could not complete the connection",
        "Amazon reported an error. You can try again; if it keeps happening, contact the agency.",
    ),
    "no_code": Problem("Amazon's answer was incomplete", "No authorization code came back. Please start again."),
    # Completion (authflow/flows.py)
    "invalid_account_id": Problem(_NOT_COMPLETED, "Amazon's answer named an invalid seller account."),
    "account_not_the_claimed_one": Problem(_NOT_COMPLETED, "Amazon named a different account than the one that started."),
    "account_not_named": Problem(_NOT_COMPLETED, "Amazon did not say which seller account was authorized."),
    "no_seller": Problem(_NOT_COMPLETED, "This connection attempt is not linked to a seller."),
    "renewal_account_not_named": Problem(
        _NOT_COMPLETED, "Amazon's answer did not name the seller account. Please start again."
    ),
    "account_mismatch": Problem(
        _NOT_COMPLETED,
        "You signed in with a different Amazon account than the one connected before. "
        "Sign in with the original account, or ask the agency for a new invitation.",
    ),
    "account_in_use": Problem(
        _NOT_COMPLETED,
        "This Amazon account is already connected to the agency under another invitation. "
        "Ask the agency for that seller's re-authorization link.",
    ),
    "credentials_refused": Problem(
        _NOT_COMPLETED,
        "The agency's Amazon app credentials were refused. The agency has been told; please try again later.",
    ),
    "code_refused": Problem(
        _NOT_COMPLETED,
        "Amazon did not accept the authorization (it may have expired after 5 minutes). Please start again.",
    ),
    "amazon_unavailable": Problem(_NOT_COMPLETED, _AMAZON_AWAY, status=502),
    "amazon_refused": Problem(_NOT_COMPLETED, _AMAZON_AWAY),
    "connected_concurrently": Problem(
        _NOT_COMPLETED, "This account was connected at the same moment in another window. Please start again."
    ),
    "review": Problem(
        "{tenant} will confirm your connection",
        # No seller name: through the public Login URI anyone could learn who the agency's
        # clients are by claiming ids.
        "Amazon accepted your approval. Before it is used, {tenant} will confirm this connection with you; "
        "you will hear from them. You do not need to do anything else now.",
        status=200,
        retry=False,
        kind="review",
    ),
}


def callback_problem(request: HttpRequest, key: str, *, retry_token: str | None = None, **names: str) -> HttpResponse:
    """The page of CALLBACK_PROBLEMS[key], its text filled in with `names` (`tenant`, when
    known, is also the page's brand)."""
    problem = CALLBACK_PROBLEMS[key]
    return problem_page(
        request,
        title=problem.title.format(**names),
        message=problem.message.format(**names),
        status=problem.status,
        retry_token=retry_token if problem.retry else None,
        kind=problem.kind,
        brand=names.get("tenant"),
    )
