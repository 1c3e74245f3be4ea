"""The Login URI: where Amazon sends a seller who starts from the Appstore or renews from
"Manage Your Apps" (the Amazon-initiated authorization workflow).

Amazon opens `/authflow/login/<tenant public_id>/` with `amazon_callback_uri`, `amazon_state`,
`selling_partner_id` (and `version=beta` for drafts). We check `amazon_callback_uri` against
Seller/Vendor Central hosts; `authflow.flows.login_uri_start` creates a state bound to this
browser, and the browser goes back to `amazon_callback_uri` with `amazon_state`, our `state`,
`redirect_uri` (and `version=beta`).
Amazon then redirects to our callback, which completes like any other consent (Flow.AMAZON).

Anyone can open this URL, so opening it writes no history: the "consent started" event is
recorded when the seller comes back from Amazon with the state (`amazon_return_record`). The
state and the session it needs are removed after expiry by `authflow.cleanup`.

`amazon_callback_uri` arrives from anyone who can craft a link: it is an open-redirect vector
unless it is pinned to Amazon's hosts, so anything else gets a 400 page and never a redirect.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from sellers.models import Region, Tenant
from sellers.scopes import InvalidScope

from .flows import SELLING_PARTNER_ID_RE, login_uri_start
from .pages import hosted_page, problem_page, read_query_params

# Parameters Amazon sends, with the longest value we accept (Amazon's are far shorter).
LOGIN_PARAMS = {"amazon_callback_uri": 2048, "amazon_state": 1024, "selling_partner_id": 64, "version": 16}
# Anything a browser or URL parser might read differently from us is refused outright:
# backslashes (browsers treat them as slashes), whitespace and control characters.
_AMBIGUOUS_RE = re.compile(r"[\\\s\x00-\x1f\x7f]")


def login_uri_url(tenant: Tenant) -> str:
    """The absolute Login URI to register for the tenant's app in Seller Central's app settings."""
    return f"{settings.SITE_URL}{reverse('authflow:login_uri', kwargs={'tenant_id': tenant.public_id})}"


def _sandbox_region(parts) -> str | None:
    """In sandbox mode, the local stand-in's consent host of a region is Amazon too."""
    if not settings.SPAPI_SANDBOX:
        return None
    for region, base in settings.SPAPI_CONSENT_HOSTS.items():
        allowed = urlsplit(base)
        prefix = allowed.path.rstrip("/") + "/"
        if (parts.scheme, parts.netloc.lower()) == (allowed.scheme, allowed.netloc.lower()) and parts.path.startswith(prefix):
            return region
    return None


def amazon_callback_region(uri: str) -> str | None:
    """The region of an allowed `amazon_callback_uri`, or None when it must be refused.

    Allowed: https, no user info, no port, no fragment, a host listed in
    SPAPI_AMAZON_CALLBACK_HOSTS matched exactly (case-insensitively). In sandbox mode, also the
    sandbox's own consent hosts.
    """
    if not uri or len(uri) > LOGIN_PARAMS["amazon_callback_uri"] or _AMBIGUOUS_RE.search(uri):
        return None
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    if parts.fragment or "@" in parts.netloc:
        return None
    sandbox = _sandbox_region(parts)
    if sandbox is not None:
        return sandbox
    if parts.scheme != "https" or (parts.path and not parts.path.startswith("/")):
        return None
    # The netloc itself, not .hostname: "host:443", "host." and "user@host" never match.
    region = settings.SPAPI_AMAZON_CALLBACK_HOSTS.get(parts.netloc.lower())
    return region if region in Region.values else None


@hosted_page
@require_GET
def login_uri(request: HttpRequest, tenant_id) -> HttpResponse:
    tenant = Tenant.objects.filter(public_id=tenant_id).first()
    if tenant is None:
        return problem_page(
            request,
            title="Unknown app",
            message="This link does not belong to any app here. Start again from Amazon.",
            status=404,
        )
    try:
        params = read_query_params(request, LOGIN_PARAMS)
    except ValueError as exc:
        return problem_page(request, title="We could not read Amazon's request", message=f"{exc} Start again from Amazon.", status=400,
                            brand=tenant.name)

    callback_uri = params.get("amazon_callback_uri", "")
    region = amazon_callback_region(callback_uri)
    if region is None:
        return problem_page(
            request,
            title="This request did not come from Amazon",
            message="The address to continue to is not an Amazon Seller Central or Vendor Central page, so we "
            f"stopped here. Start again from Seller Central, or ask {tenant.name} for an invitation link.",
            status=400,
            brand=tenant.name,
        )
    amazon_state = params.get("amazon_state", "")
    if not amazon_state:
        return problem_page(
            request,
            title="Amazon's request was incomplete",
            message="It had no amazon_state. Start again from Amazon.",
            status=400,
            brand=tenant.name,
        )
    spid = params.get("selling_partner_id", "")
    if spid and not SELLING_PARTNER_ID_RE.match(spid):
        return problem_page(
            request,
            title="Amazon's request was malformed",
            message="The selling_partner_id is not valid. Start again from Amazon.",
            status=400,
            brand=tenant.name,
        )

    try:
        location = login_uri_start(
            session=request.session,
            tenant=tenant,
            region=region,
            amazon_callback_uri=callback_uri,
            amazon_state=amazon_state,
            selling_partner_id=spid,
            beta=params.get("version") == "beta",
        )
    except InvalidScope as exc:
        return problem_page(request, title="This connection is misconfigured", message=f"{exc} Please tell {tenant.name}.", status=400,
                            brand=tenant.name)
    response = HttpResponse(status=302)
    response["Location"] = location
    return response
