"""The sandbox's restricted data tokens, grantless tokens and scripted faults.

* LWA `grant_type=client_credentials` for the two grantless scopes, and the SP-API operations
  that take such a token (notification destinations, client secret rotation);
* `POST /tokens/2021-03-01/restrictedDataToken` with a seller's access token, and the Orders
  operations that return buyers' personal data only to a restricted data token (RDT):
  getOrderAddress, getOrderBuyerInfo, and getOrders with `dataElements`;
* `x-amzn-RequestId` and `x-amzn-RateLimit-Limit` on every SP-API answer, as Amazon sends them;
* a fault queue that tests push answers onto (`fault_push`): the next matching SP-API request
  gets a 429 or 500 instead of its answer. Only code can push (nothing in a request can), and
  the sandbox is never mounted in production.

Grantless tokens and RDTs are signed (django.core.signing) rather than stored: the sandbox
verifies them without a table, and they expire on their own.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable
from typing import Any

from django.core import signing
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import SandboxAuthorization

TOKEN_TTL = 3600
GRANTLESS_PREFIX = "Atc|sandbox."
RDT_PREFIX = "Atz.sprdt|"
_GRANTLESS_SALT = "sandbox.grantless"
_RDT_SALT = "sandbox.rdt"
GRANTLESS_SCOPES = ("sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation")
DATA_ELEMENTS = ("buyerInfo", "shippingAddress", "buyerTaxInformation")
ORDERS_SCOPE = "sellingpartnerapi::orders"

# Operations that answer only to an RDT: (method, path pattern). `{}` stands for one segment.
_ORDER_ID = r"[A-Za-z0-9-]{1,64}"
_ADDRESS = re.compile(rf"^/orders/v0/orders/({_ORDER_ID})/address$")
_BUYER_INFO = re.compile(rf"^/orders/v0/orders/({_ORDER_ID})/buyerInfo$")
_ORDERS = "/orders/v0/orders"
_RESTRICTED = (_ADDRESS, _BUYER_INFO, re.compile(rf"^/orders/v0/orders(/{_ORDER_ID}(/orderItems)?)?$"))

# Amazon's published rates (requests per second) for what the sandbox plays.
_RATES = (("/orders/", "0.0167"), ("/tokens/", "1.0"), ("/notifications/", "1.0"), ("/fba/inventory/", "2.0"))

# The one notification destination every app has in the sandbox.
SANDBOX_DESTINATION = {
    "name": "sandbox-queue",
    "destinationId": "00000000-0000-4000-8000-000000000001",
    "resource": {"sqs": {"arn": "arn:aws:sqs:us-east-1:000000000000:sandbox-queue"}},
}

_FAULTS_KEY = "sandbox:spapi-faults"
_faults_guard = threading.Lock()


# --- Faults ------------------------------------------------------------------------------------


def fault_push(*, path_prefix: str, status: int, method: str = "", times: int = 1,
               headers: dict[str, str] | None = None, body: Any = None) -> None:
    """Answer the next `times` SP-API requests whose path starts with `path_prefix` (and whose
    method is `method`, when given) with `status` instead. For tests and benchmarks."""
    with _faults_guard:
        faults = cache.get(_FAULTS_KEY) or []
        faults.append({
            "prefix": path_prefix, "method": method.upper(), "status": status, "times": times,
            "headers": headers or {}, "body": body if body is not None else _fault_body(status),
        })
        cache.set(_FAULTS_KEY, faults, timeout=600)


def faults_clear() -> None:
    cache.delete(_FAULTS_KEY)


def _fault_body(status: int) -> dict:
    if status == 429:
        return {"errors": [{"code": "QuotaExceeded", "message": "You exceeded your quota for the requested resource."}]}
    return {"errors": [{"code": "InternalFailure", "message": "We encountered an internal error. Please try again."}]}


def _fault_take(method: str, path: str) -> dict | None:
    with _faults_guard:
        faults = cache.get(_FAULTS_KEY)
        if not faults:
            return None
        for fault in faults:
            if path.startswith(fault["prefix"]) and fault["method"] in ("", method):
                fault["times"] -= 1
                if fault["times"] <= 0:
                    faults.remove(fault)
                cache.set(_FAULTS_KEY, faults, timeout=600)
                return fault
    return None


# --- Answers -----------------------------------------------------------------------------------


def _unauthorized(details: str) -> JsonResponse:
    return JsonResponse(
        {"errors": [{"code": "Unauthorized", "message": "Access to requested resource is denied.", "details": details}]},
        status=403,
    )


def _invalid(message: str) -> JsonResponse:
    return JsonResponse({"errors": [{"code": "InvalidInput", "message": message}]}, status=400)


def _lwa_error(error: str, description: str, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": error, "error_description": description}, status=status)


def _amazon_headers(response: HttpResponse, path: str) -> HttpResponse:
    response["x-amzn-RequestId"] = str(uuid.uuid4())
    if "x-amzn-RateLimit-Limit" not in response:
        response["x-amzn-RateLimit-Limit"] = next((rate for prefix, rate in _RATES if path.startswith(prefix)), "5.0")
    return response


# --- LWA: client_credentials ---------------------------------------------------------------------


def client_credentials(request: HttpRequest, client_id: str) -> JsonResponse:
    """LWA's answer to `grant_type=client_credentials` (the client is already authenticated)."""
    scope = request.POST.get("scope", "")
    if scope not in GRANTLESS_SCOPES:
        return _lwa_error("invalid_scope", "The requested scope is invalid or not available for grantless operations.")
    token = GRANTLESS_PREFIX + signing.dumps({"c": client_id, "s": scope, "n": uuid.uuid4().hex[:8]}, salt=_GRANTLESS_SALT)
    return JsonResponse({"access_token": token, "token_type": "bearer", "expires_in": TOKEN_TTL})


def _grantless(request: HttpRequest, path: str, token: str) -> HttpResponse:
    try:
        claim = signing.loads(token.removeprefix(GRANTLESS_PREFIX), salt=_GRANTLESS_SALT, max_age=TOKEN_TTL)
    except signing.BadSignature:
        return _unauthorized("The access token is missing or invalid.")
    scope = claim.get("s")
    if path.startswith("/notifications/v1/destinations") and scope == "sellingpartnerapi::notifications":
        if request.method == "GET":
            return JsonResponse({"payload": [SANDBOX_DESTINATION]})
        if request.method == "POST":
            return JsonResponse({"payload": {"destinationId": str(uuid.uuid4()), **_json_body(request)}})
    if path == "/applications/2023-11-30/clientSecret" and scope == "sellingpartnerapi::client_credential:rotation":
        if request.method == "POST":
            return HttpResponse(status=204)  # Amazon rotates later and notifies the app.
    return _unauthorized(f"A grantless token for {scope} does not open {request.method} {path}.")


def _json_body(request: HttpRequest) -> dict:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


# --- Restricted data tokens --------------------------------------------------------------------


def _is_restricted(path: str) -> bool:
    return any(pattern.match(path) for pattern in _RESTRICTED)


def _rdt_create(request: HttpRequest, authorization: SandboxAuthorization) -> JsonResponse:
    if request.method != "POST":
        return JsonResponse({"errors": [{"code": "MethodNotAllowed", "message": "Use POST."}]}, status=405)
    if authorization.scopes and ORDERS_SCOPE not in authorization.scopes:
        return _unauthorized("The seller has not granted access to buyers' data of orders.")
    body = _json_body(request)
    resources = body.get("restrictedResources")
    if not isinstance(resources, list) or not 1 <= len(resources) <= 50:
        return _invalid("restrictedResources must list 1 to 50 resources.")
    claimed = []
    for item in resources:
        if not isinstance(item, dict):
            return _invalid("Each restricted resource is an object with method and path.")
        method, path, elements = item.get("method"), item.get("path"), item.get("dataElements", [])
        if method not in ("GET", "POST", "PUT", "PATCH", "DELETE") or not isinstance(path, str) or not _is_restricted(path):
            return _invalid(f"{method} {str(path)[:100]} is not a restricted operation.")
        if not isinstance(elements, list) or any(e not in DATA_ELEMENTS for e in elements):
            return _invalid(f"dataElements may only name {', '.join(DATA_ELEMENTS)}.")
        claimed.append([method, path, sorted(set(elements))])
    token = RDT_PREFIX + signing.dumps({"a": authorization.pk, "r": claimed}, salt=_RDT_SALT)
    return JsonResponse({"restrictedDataToken": token, "expiresIn": TOKEN_TTL})


def _order_pii(order_id: str, elements: set[str]) -> dict:
    info: dict[str, Any] = {"AmazonOrderId": order_id}
    if "buyerInfo" in elements:
        info["BuyerInfo"] = {"BuyerEmail": f"buyer-{order_id[-4:]}@marketplace.example", "BuyerName": "Sandbox Buyer"}
    if "shippingAddress" in elements:
        info["ShippingAddress"] = {"Name": "Sandbox Buyer", "AddressLine1": "1 Example Way", "City": "Seattle",
                                   "StateOrRegion": "WA", "PostalCode": "98101", "CountryCode": "US"}
    return info


def _with_rdt(request: HttpRequest, region: str, path: str, token: str) -> HttpResponse:
    try:
        claim = signing.loads(token.removeprefix(RDT_PREFIX), salt=_RDT_SALT, max_age=TOKEN_TTL)
    except signing.BadSignature:
        return _unauthorized("The restricted data token is invalid or expired.")
    authorization = SandboxAuthorization.objects.filter(pk=claim.get("a")).first()
    if authorization is None or authorization.revoked_at is not None:
        return _unauthorized("The access token has expired or been revoked.")
    if authorization.region != region:
        return _unauthorized("The access token was issued for another region.")
    match = next((r for r in claim.get("r", []) if r[0] == request.method and r[1] == path), None)
    if match is None:
        return _unauthorized(f"The restricted data token does not name {request.method} {path}.")
    elements = set(match[2])
    if (found := _ADDRESS.match(path)) is not None:
        return JsonResponse({"payload": {"AmazonOrderId": found[1], **_order_pii(found[1], {"shippingAddress"})}})
    if (found := _BUYER_INFO.match(path)) is not None:
        return JsonResponse({"payload": _order_pii(found[1], {"buyerInfo"})})
    if path == _ORDERS:
        from .views import _operation  # the sandbox's usual orders, with the data the RDT opens

        wanted = {e for e in request.GET.get("dataElements", "").split(",") if e} & elements
        status, body = _operation(region, path, authorization, request)
        body["payload"]["Orders"] = [{**order, **_order_pii(order["AmazonOrderId"], wanted)} for order in body["payload"]["Orders"]]
        return JsonResponse(body, status=status)
    return _unauthorized(f"The sandbox does not play {request.method} {path} with a restricted data token.")


def with_authorization(request: HttpRequest, path: str, authorization: SandboxAuthorization) -> JsonResponse | None:
    """For a request with a seller's access token (already checked): the Tokens API, and the
    refusal of operations that need an RDT. None: the sandbox's usual answer."""
    if path == "/tokens/2021-03-01/restrictedDataToken":
        return _rdt_create(request, authorization)
    if _ADDRESS.match(path) or _BUYER_INFO.match(path) or (path == _ORDERS and request.GET.get("dataElements")):
        return _unauthorized("This operation returns buyers' personal data: call it with a restricted data token.")
    return None


# --- The SP-API view ---------------------------------------------------------------------------


def spapi_view(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Wrap the sandbox's SP-API view with faults, grantless tokens, RDTs and Amazon's headers."""

    @csrf_exempt
    def wrapper(request: HttpRequest, region: str, path: str) -> HttpResponse:
        fault = _fault_take(request.method or "GET", path)
        if fault is not None:
            response: HttpResponse = JsonResponse(fault["body"], status=fault["status"])
            for name, value in fault["headers"].items():
                response[name] = value
            return _amazon_headers(response, path)
        token = request.headers.get("x-amz-access-token", "")
        if token.startswith(GRANTLESS_PREFIX):
            response = _grantless(request, path, token)
        elif token.startswith(RDT_PREFIX):
            response = _with_rdt(request, region, path, token)
        else:
            response = view(request, region=region, path=path)
        return _amazon_headers(response, path)

    return wrapper
