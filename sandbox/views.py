"""A local stand-in for Seller Central's consent page, LWA's token endpoint and a few SP-API
operations. Only mounted when SPAPI_SANDBOX is on; every page says it is not Amazon.

It uses the tenants' app registrations as Amazon would (application id, client id and secret,
redirect URI, draft flag, roles) and plays one of two modes (`modes.py`): scopes asked and
echoed, or Amazon's registered roles.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from urllib.parse import urlencode

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from sellers.hashing import token_hash
from sellers.models import Tenant
from sellers.scopes import CATALOG, parse_scope_string

from . import modes, restricted
from .models import SandboxAccessToken, SandboxAuthorization

CODE_TTL = timedelta(minutes=5)  # Amazon's authorization codes die after 5 minutes.
ACCESS_TOKEN_TTL = 3600
REGIONS = ("na", "eu", "fe")


def _redirect(url: str, **params) -> HttpResponse:
    # Redirect URIs are registered URLs from the tenant table, so any scheme/host is allowed here.
    sep = "&" if "?" in url else "?"
    response = HttpResponse(status=302)
    response["Location"] = f"{url}{sep}{urlencode(params)}"
    response["Referrer-Policy"] = "no-referrer"
    return response


def index(request: HttpRequest) -> HttpResponse:
    tenants = Tenant.objects.order_by("name")
    return render(
        request,
        "sandbox/index.html",
        {"tenants": tenants, "mode": modes.mode_current(), "modes": modes.SandboxMode.choices},
    )


@require_POST  # CSRF-checked: it changes how the sandbox answers everyone.
def mode_switch(request: HttpRequest) -> HttpResponse:
    try:
        modes.mode_set(request.POST.get("mode", ""))
    except ValueError as exc:
        return _consent_error(request, "MODE", str(exc))
    response = HttpResponse(status=303)
    response["Location"] = reverse("sandbox:index")
    return response


def _consent_error(request, code: str, message: str, status: int = 400) -> HttpResponse:
    return render(request, "sandbox/error.html", {"code": code, "message": message}, status=status)


@csrf_exempt  # A stand-in for Amazon's page, scripted by tests and benchmarks; state protects it.
@require_http_methods(["GET", "POST"])
def consent(request: HttpRequest, region: str) -> HttpResponse:
    if region not in REGIONS:
        return _consent_error(request, "MD9100", "Unknown region.", 404)
    data = request.GET if request.method == "GET" else request.POST
    application_id = data.get("application_id", "")
    state = data.get("state", "")
    tenant = Tenant.objects.filter(application_id=application_id).first() if application_id else None
    if tenant is None:
        return _consent_error(request, "MD9000", "No app is registered with this application_id.")
    if tenant.is_draft and data.get("version") != "beta":
        return _consent_error(request, "MD1000", "This app is a draft: the consent URL must carry version=beta.")
    redirect_uri = data.get("redirect_uri") or tenant.effective_redirect_uri
    if redirect_uri != tenant.effective_redirect_uri:
        return _consent_error(request, "MD5101", "The redirect_uri is not one of the app's registered redirect URIs.")
    mode = modes.mode_current()
    # The GET carries Amazon's `scope` parameter; the form posts it back as `scope_requested`
    # because its `scope` checkboxes carry what the seller approved. Real Amazon ignores it.
    requested = parse_scope_string(data.get("scope") if request.method == "GET" else data.get("scope_requested"))
    if mode == modes.SandboxMode.AMAZON:
        requested = []
    unknown = [s for s in requested if s not in CATALOG]
    if unknown:
        return _redirect(
            redirect_uri,
            state=state,
            error="invalid_scope",
            error_description="The requested scope is invalid or not available: " + " ".join(unknown),
        )

    if request.method == "GET":
        return render(
            request,
            "sandbox/consent.html",
            {
                "tenant": tenant,
                "region": region,
                "application_id": application_id,
                "state": state,
                "redirect_uri": redirect_uri,
                "version": data.get("version", ""),
                "scope_string": " ".join(requested),
                "scopes": [{"name": s, "label": CATALOG[s].label, "description": CATALOG[s].description} for s in requested],
                "selling_partner_id": "A" + secrets.token_hex(6).upper(),
                "amazon_mode": mode == modes.SandboxMode.AMAZON,
                "roles": modes.consent_roles(tenant.app_roles),
            },
        )

    if data.get("decision") != "approve":
        return _redirect(redirect_uri, state=state, error="access_denied", error_description="The seller denied access.")
    spid = data.get("selling_partner_id", "").strip()
    if not spid or len(spid) > 64:
        return _consent_error(request, "MD9200", "A selling_partner_id (1–64 characters) is required.")
    approved = [s for s in data.getlist("scope") if s in requested]
    code = "ANsandbox" + secrets.token_urlsafe(24)
    SandboxAuthorization.objects.create(
        client_id=tenant.client_id,
        selling_partner_id=spid,
        region=region,
        scopes=approved if requested else [],
        roles=list(tenant.app_roles or []),
        redirect_uri=redirect_uri,
        code_hash=token_hash(code),
        code_expires_at=timezone.now() + CODE_TTL,
    )
    return _redirect(redirect_uri, state=state, selling_partner_id=spid, spapi_oauth_code=code)


def _lwa_error(error: str, description: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": error, "error_description": description}, status=status)


def _client_ok(client_id: str, client_secret: str) -> bool:
    now = timezone.now()
    for tenant in Tenant.objects.filter(client_id=client_id):
        if tenant.client_secret and secrets.compare_digest(str(tenant.client_secret), client_secret):
            return True
        if (
            tenant.previous_client_secret
            and (tenant.previous_client_secret_expires_at is None or tenant.previous_client_secret_expires_at > now)
            and secrets.compare_digest(str(tenant.previous_client_secret), client_secret)
        ):
            return True
    return False


def _issue_access_token(authorization: SandboxAuthorization) -> str:
    access = "Atza|sandbox" + secrets.token_urlsafe(48)
    SandboxAccessToken.objects.create(
        authorization=authorization,
        token_hash=token_hash(access),
        expires_at=timezone.now() + timedelta(seconds=ACCESS_TOKEN_TTL),
    )
    return access


def _token_response(*, access: str, refresh: str, authorization: SandboxAuthorization) -> JsonResponse:
    """LWA's answer to a code exchange or a refresh: the tokens, and in `seed` mode the scopes
    they carry (real Amazon names none)."""
    body: dict[str, object] = {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "bearer",
        "expires_in": ACCESS_TOKEN_TTL,
    }
    if modes.mode_current() == modes.SandboxMode.SEED:
        body["scope"] = " ".join(authorization.scopes)
    return JsonResponse(body)


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> JsonResponse:
    grant_type = request.POST.get("grant_type", "")
    client_id = request.POST.get("client_id", "")
    client_secret = request.POST.get("client_secret", "")
    if not client_id or not client_secret or not _client_ok(client_id, client_secret):
        return _lwa_error("invalid_client", "Client authentication failed", 401)

    now = timezone.now()
    if grant_type == "authorization_code":
        code = request.POST.get("code", "")
        with transaction.atomic():
            authorization = SandboxAuthorization.objects.filter(code_hash=token_hash(code), client_id=client_id).first()
            if authorization is None:
                return _lwa_error("invalid_grant", "The request has an invalid grant parameter : code")
            if authorization.redirect_uri != request.POST.get("redirect_uri", ""):
                return _lwa_error("invalid_grant", "The redirect_uri does not match the one the code was issued for.")
            # Single use, even under concurrent exchanges of the same code.
            claimed = SandboxAuthorization.objects.filter(
                pk=authorization.pk, code_used_at__isnull=True, code_expires_at__gt=now
            ).update(code_used_at=now)
            if not claimed:
                return _lwa_error("invalid_grant", "The authorization code is expired or was already used.")
            refresh = "Atzr|sandbox" + secrets.token_urlsafe(64)
            authorization.refresh_token_hash = token_hash(refresh)
            authorization.save(update_fields=["refresh_token_hash"])
            access = _issue_access_token(authorization)
        return _token_response(access=access, refresh=refresh, authorization=authorization)

    if grant_type == "refresh_token":
        refresh = request.POST.get("refresh_token", "")
        authorization = SandboxAuthorization.objects.filter(
            refresh_token_hash=token_hash(refresh), client_id=client_id, revoked_at__isnull=True
        ).first() if refresh else None
        if authorization is None:
            return _lwa_error(
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token. User may have revoked or didn't grant the permission.",
            )
        access = _issue_access_token(authorization)
        return _token_response(access=access, refresh=refresh, authorization=authorization)

    if grant_type == "client_credentials":
        return restricted.client_credentials(request, client_id)
    return _lwa_error("unsupported_grant_type", "The grant_type is not supported by this endpoint.")


def _unauthorized(details: str) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": details}]},
        status=403,
    )


MARKETPLACES = {
    "na": [("ATVPDKIKX0DER", "US", "Amazon.com", "USD"), ("A2EUQ1WTGCTBG2", "CA", "Amazon.ca", "CAD")],
    "eu": [("A1PA6795UKMFR9", "DE", "Amazon.de", "EUR"), ("A1F83G8C2ARO7P", "GB", "Amazon.co.uk", "GBP")],
    "fe": [("A1VC38T7YXB528", "JP", "Amazon.co.jp", "JPY"), ("A39IBJ37TRP1C6", "AU", "Amazon.com.au", "AUD")],
}


def _operation(region: str, path: str, authorization: SandboxAuthorization, request: HttpRequest):
    if path == "/sellers/v1/marketplaceParticipations":
        return 200, {
            "payload": [
                {
                    "marketplace": {
                        "id": mid,
                        "countryCode": cc,
                        "name": name,
                        "defaultCurrencyCode": cur,
                        "defaultLanguageCode": "en_US",
                        "domainName": name.lower(),
                    },
                    "participation": {"isParticipating": True, "hasSuspendedListings": False},
                    "storeName": f"Sandbox store {authorization.selling_partner_id}",
                }
                for mid, cc, name, cur in MARKETPLACES[region]
            ]
        }
    if path == "/orders/v0/orders":
        seed = int(token_hash(authorization.selling_partner_id)[:6], 16)
        return 200, {
            "payload": {
                "Orders": [
                    {
                        "AmazonOrderId": f"{100 + (seed + i) % 900}-{(seed * 7 + i) % 10_000_000:07d}-{(seed * 13 + i) % 10_000_000:07d}",
                        "OrderStatus": ("Shipped", "Unshipped", "Pending")[i % 3],
                        "MarketplaceId": MARKETPLACES[region][0][0],
                        "OrderTotal": {"CurrencyCode": MARKETPLACES[region][0][3], "Amount": f"{10 + i * 7.5:.2f}"},
                    }
                    for i in range(3)
                ],
                "CreatedAfter": request.GET.get("CreatedAfter", ""),
            }
        }
    if path.startswith("/fba/inventory/v1/summaries"):
        return 200, {"payload": {"inventorySummaries": [{"sellerSku": "SKU-1", "totalQuantity": 12}]}}
    if path.startswith("/reports/2021-06-30/reports"):
        return 200, {"reports": []}
    if path.startswith("/finances/v0/financialEventGroups"):
        return 200, {"payload": {"FinancialEventGroupList": []}}
    return 404, {"errors": [{"code": "NotFound", "message": "This operation is not played by the local sandbox."}]}


@csrf_exempt
def spapi(request: HttpRequest, region: str, path: str) -> JsonResponse:
    raw = request.headers.get("x-amz-access-token", "")
    now = timezone.now()
    access = (
        SandboxAccessToken.objects.select_related("authorization").filter(token_hash=token_hash(raw)).first() if raw else None
    )
    if access is None:
        return _unauthorized("The access token is missing or invalid.")
    authorization = access.authorization
    if access.expires_at <= now:
        return _unauthorized("The access token has expired or been revoked.")
    if authorization.revoked_at is not None:
        return _unauthorized("The access token has expired or been revoked.")
    if authorization.region != region:
        return _unauthorized("The access token was issued for another region.")
    refusal = modes.spapi_refusal(
        mode=modes.mode_current(), path=path, scopes=authorization.scopes, roles=authorization.roles
    )
    if refusal is not None:
        status, details = refusal
        if status == 404:
            return JsonResponse({"errors": [{"code": "NotFound", "message": details}]}, status=404)
        return _unauthorized(details)
    answered = restricted.with_authorization(request, path, authorization)
    if answered is not None:
        return answered
    status, body = _operation(region, path, authorization, request)
    return JsonResponse(body, status=status)
