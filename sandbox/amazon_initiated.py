"""Amazon-initiated authorization in the sandbox: Seller Central opening an app's Login URI (as
the Appstore or a yearly renewal from "Manage Your Apps" does), and its `amazon_callback_uri`
page where the seller confirms. The consent itself is the consent page's (`views.consent`).
"""

from __future__ import annotations

import re
import secrets
import uuid

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from sellers.models import Tenant
from sellers.scopes import CATALOG

from . import modes
from .views import REGIONS, _consent_error, _redirect, consent

AMAZON_STATE_SALT = "sandbox.amazon_state"
AMAZON_STATE_MAX_AGE = 600
_SPID_RE = re.compile(r"^[A-Za-z0-9]{1,64}$")


def start_from_amazon(request: HttpRequest) -> HttpResponse:
    """Play Seller Central opening an app's Login URI, as the Appstore or a renewal would.

    Without parameters: a form to pick the app, region and seller. With them: redirect to the
    tenant's Login URI with `amazon_callback_uri` pointing at this sandbox's callback page.
    """
    tenants = Tenant.objects.order_by("name")
    if "tenant" not in request.GET:
        return render(
            request,
            "sandbox/start_from_amazon.html",
            {"tenants": tenants, "regions": REGIONS, "selling_partner_id": "A" + secrets.token_hex(6).upper()},
        )
    tenant = Tenant.objects.filter(public_id=request.GET.get("tenant", "")).first() if _is_uuid(request.GET.get("tenant", "")) else None
    region = request.GET.get("region", "na")
    spid = request.GET.get("selling_partner_id", "").strip()
    if tenant is None:
        return _consent_error(request, "MD9000", "No app is registered with this id.")
    if region not in REGIONS:
        return _consent_error(request, "MD9100", "Unknown region.")
    if not _SPID_RE.match(spid):
        return _consent_error(request, "MD9200", "A selling_partner_id (1–64 letters and digits) is required.")
    # Amazon checks on the way back that the app returned the amazon_state it was given.
    amazon_state = signing.dumps({"app": tenant.application_id, "spid": spid, "region": region}, salt=AMAZON_STATE_SALT)
    params = {
        "amazon_callback_uri": f"{settings.SPAPI_CONSENT_HOSTS[region].rstrip('/')}/apps/authorize/amazon-callback",
        "amazon_state": amazon_state,
        "selling_partner_id": spid,
    }
    if tenant.is_draft:
        params["version"] = "beta"
    login_uri = settings.SITE_URL + reverse("authflow:login_uri", kwargs={"tenant_id": tenant.public_id})
    return _redirect(login_uri, **params)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@csrf_exempt  # The consent form posts here, as on `consent`; state protects the flow.
@require_http_methods(["GET", "POST"])
def amazon_callback(request: HttpRequest, region: str) -> HttpResponse:
    """Seller Central's `amazon_callback_uri`: the app sends the browser back here with
    `amazon_state`, `state`, `redirect_uri`; the seller then confirms as on the consent page."""
    if region not in REGIONS:
        return _consent_error(request, "MD9100", "Unknown region.", 404)
    if request.method == "POST":
        return consent(request, region)
    try:
        claim = signing.loads(request.GET.get("amazon_state", ""), salt=AMAZON_STATE_SALT, max_age=AMAZON_STATE_MAX_AGE)
    except signing.BadSignature:  # also SignatureExpired
        return _consent_error(request, "MD9300", "The amazon_state is missing, altered or older than 10 minutes.")
    tenant = Tenant.objects.filter(application_id=claim.get("app", "")).first()
    if tenant is None or claim.get("region") != region:
        return _consent_error(request, "MD9000", "The amazon_state does not match an app in this region.")
    if tenant.is_draft and request.GET.get("version") != "beta":
        return _consent_error(request, "MD1000", "This app is a draft: the app must return version=beta.")
    redirect_uri = request.GET.get("redirect_uri") or tenant.effective_redirect_uri
    if redirect_uri != tenant.effective_redirect_uri:
        return _consent_error(request, "MD5101", "The redirect_uri is not one of the app's registered redirect URIs.")
    state = request.GET.get("state", "")
    if not state:
        return _consent_error(request, "MD9400", "The app returned no state.")
    # Amazon's own flow names no scope: the app's registered roles are what the seller approves
    # (in `seed` mode, played as the app's registered scopes).
    amazon_mode = modes.mode_current() == modes.SandboxMode.AMAZON
    requested = [] if amazon_mode else [s for s in CATALOG if s in set(tenant.registered_scopes or [])]
    return render(
        request,
        "sandbox/consent.html",
        {
            "tenant": tenant,
            "region": region,
            "application_id": tenant.application_id,
            "state": state,
            "redirect_uri": redirect_uri,
            "version": request.GET.get("version", ""),
            "scope_string": " ".join(requested),
            "scopes": [{"name": s, "label": CATALOG[s].label, "description": CATALOG[s].description} for s in requested],
            "selling_partner_id": claim.get("spid", ""),
            "amazon_mode": amazon_mode,
            "roles": modes.consent_roles(tenant.app_roles),
        },
    )
