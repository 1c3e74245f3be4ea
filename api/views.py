"""The endpoints under /api/v1/ (django-ninja). Each checks its key and permission through
`KeyAuth`, calls one function and returns a typed schema; docs/api.md describes them."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Header, NinjaAPI, Query, Status
from ninja.openapi.docs import Swagger
from ninja.responses import codes_2xx, codes_4xx, codes_5xx
from pydantic.json_schema import SkipJsonSchema

from sellers.models import Tenant
from sellers.selectors import required_scopes
from sellers.services.invitations import reauthorization_link_get_or_create
from sellers.services.tokens import AppCredentialsRejected, ReauthorizationRequired, TokenUnavailable
from sellers.services.tokens.grantless import GrantlessRefused, tenant_grantless_token
from sellers.services.tokens.restricted import RdtRefused, RestrictedResource, seller_restricted_data_token

from .auth import KeyAuth, KeyRequest, actor_for_key
from .connections import (
    BadCursor,
    connection_access_token,
    connection_for_token,
    connection_get,
    connection_record,
    connections_page,
    tenant_connections,
)
from .errors import ApiError, error_response, install_handlers
from .idempotency import IdempotencyConflict, invitation_create_idempotent
from .models import Permission
from .proxy import DATA_ELEMENTS_HEADER, ProxyCall, connection_grant_usable, connection_proxy, data_elements_of, key_allows, proxy_path
from .schemas import (
    AccessTokenIn,
    AccessTokenOut,
    ConnectionFilters,
    ConnectionListOut,
    ConnectionOut,
    ErrorOut,
    GrantlessTokenIn,
    GrantlessTokenOut,
    IdempotencyKey,
    InvitationIn,
    InvitationOut,
    LinkOut,
    RestrictedDataTokenIn,
    RestrictedDataTokenOut,
)

DESCRIPTION = """\
spconnect's agency API: the tenant's connections (sellers' Amazon accounts), fresh SP-API access
tokens for them, and invitation links. Authenticate with `Authorization: Bearer spc_…` (keys are
created by the tenant's owners in the admin or with `manage.py api_key create`). Every error is
`{"error": {"code": "...", "message": "..."}}`; the codes are stable. See docs/api.md.
"""

def docs_policy() -> str:
    """The docs page runs django-ninja's bundled Swagger UI from our static files (no CDN, no
    inline script): scripts and styles from this origin (and STATIC_URL's, if elsewhere) only."""
    static = urlsplit(settings.STATIC_URL)
    assets = "'self'" + (f" {static.scheme}://{static.netloc}" if static.scheme in ("http", "https") and static.netloc else "")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src {assets}",
            f"style-src {assets}",
            f"img-src {assets} data:",
            f"font-src {assets}",
            "connect-src 'self'",  # the description, and "Try it out"
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def _docs_policy(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = view(request, *args, **kwargs)
        # Set here, so the project's page policy (no script at all) is not added on top.
        response["Content-Security-Policy"] = docs_policy()
        return response

    return wrapper


api = NinjaAPI(
    title="spconnect API",
    version="1",
    description=DESCRIPTION,
    urls_namespace="api-v1",
    docs=Swagger(settings={"persistAuthorization": False, "tryItOutEnabled": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
    docs_decorator=_docs_policy,
)
install_handlers(api)


def _errors(*statuses: int) -> dict[int, type]:
    return {status: ErrorOut for status in (400, 401, 403, 429, *statuses)}


def _retry_after(at: datetime | None, *, default: int = 30) -> str:
    if at is None:
        return str(default)
    return str(max(1, math.ceil((at - timezone.now()).total_seconds())))


@api.exception_handler(ReauthorizationRequired)
def _reauthorization_required(request: HttpRequest, exc: ReauthorizationRequired) -> HttpResponse:
    return error_response(
        409,
        "reauthorization_required",
        f"The seller must authorize the app again: {(exc.reason or 'access was revoked').rstrip('.')}. "
        "Send them reauthorization_url.",
        reauthorization_url=exc.link.url,
    )


@api.exception_handler(TokenUnavailable)
def _token_unavailable(request: HttpRequest, exc: TokenUnavailable) -> HttpResponse:
    return error_response(503, "token_unavailable", str(exc), headers={"Retry-After": _retry_after(exc.retry_at)})


@api.exception_handler(AppCredentialsRejected)
def _credentials_rejected(request: HttpRequest, exc: AppCredentialsRejected) -> HttpResponse:
    return error_response(502, "app_credentials_rejected", str(exc))


@api.exception_handler(RdtRefused)
def _rdt_refused(request: HttpRequest, exc: RdtRefused) -> HttpResponse:
    # Amazon's 400 (a resource it does not consider restricted) and 403 (the app lacks the
    # restricted role) are the caller's to fix; anything else is Amazon's side.
    status = exc.status_code if exc.status_code in (400, 403) else 502
    said = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in exc.errors)
    return error_response(status, "rdt_refused", f"{exc}" + (f" Amazon said: {said}" if said else ""))


@api.exception_handler(GrantlessRefused)
def _grantless_refused(request: HttpRequest, exc: GrantlessRefused) -> HttpResponse:
    return error_response(502, "grantless_refused", str(exc))


def _not_found() -> ApiError:
    return ApiError(404, "not_found", "No such connection.")


# --- Connections -------------------------------------------------------------------------------


@api.get(
    "/connections",
    response={200: ConnectionListOut, **_errors()},
    auth=KeyAuth(Permission.CONNECTIONS_READ),
    operation_id="listConnections",
    summary="List connections",
    tags=["connections"],
)
def list_connections(request: KeyRequest, filters: Query[ConnectionFilters]):
    """The tenant's connections, oldest first, a page at a time (`next_cursor`). Permission
    `connections:read`."""
    try:
        page = connections_page(tenant_id=request.auth.tenant_id, **filters.dict())
    except BadCursor as exc:
        raise ApiError(400, "invalid_request", f"cursor: {exc}", field="cursor") from None
    return {"data": page.data, "next_cursor": page.next_cursor}


@api.get(
    "/connections/{id}",
    response={200: ConnectionOut, **_errors(404)},
    auth=KeyAuth(Permission.CONNECTIONS_READ),
    operation_id="getConnection",
    summary="Get a connection",
    tags=["connections"],
)
def get_connection(request: KeyRequest, id: UUID):
    """One connection. Another tenant's id answers 404, exactly like an unknown one. Permission
    `connections:read`."""
    record = connection_get(tenant_id=request.auth.tenant_id, connection_id=id)
    if record is None:
        raise _not_found()
    return record


@api.post(
    "/connections/{id}/access-token",
    response={200: AccessTokenOut, **_errors(404, 409, 502, 503)},
    auth=KeyAuth(Permission.TOKENS_READ),
    operation_id="getAccessToken",
    summary="Get an access token",
    tags=["tokens"],
)
def access_token(
    request: KeyRequest, response: HttpResponse, id: UUID, payload: AccessTokenIn | SkipJsonSchema[None] = None
):
    """A Login with Amazon access token for the connection, valid for more than `min_ttl_seconds`
    (a stored one that is valid long enough is returned without calling Amazon), with the SP-API
    endpoint of its region. Never the refresh token. Permission `tokens:read`.

    409 `reauthorization_required` (with `reauthorization_url`) when the seller must authorize
    again; 503 `token_unavailable` with Retry-After when Login with Amazon is failing; 502
    `app_credentials_rejected` when Amazon refuses the app's client secret.
    """
    options = payload or AccessTokenIn.model_validate({})
    key = request.auth
    seller = connection_for_token(tenant_id=key.tenant_id, connection_id=id)
    if seller is None:
        raise _not_found()
    grant = connection_access_token(
        seller=seller, min_ttl=options.min_ttl_seconds, force=options.force_refresh, actor=actor_for_key(key)
    )
    expires_at = grant.access_token_expires_at
    assert expires_at is not None  # connection_access_token checked how long it lasts
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return {
        "access_token": grant.access_token,
        "token_type": "bearer",
        "expires_at": expires_at,
        "expires_in": max(0, int((expires_at - timezone.now()).total_seconds())),
        "region": seller.region,
        "endpoint": settings.SPAPI_API_HOSTS[seller.region],
        "selling_partner_id": seller.selling_partner_id,
    }


@api.post(
    "/connections/{id}/reauthorization-link",
    response={200: LinkOut, **_errors(404)},
    auth=KeyAuth(Permission.INVITATIONS_WRITE),
    operation_id="getReauthorizationLink",
    summary="Get a re-authorization link",
    tags=["invitations"],
)
def reauthorization_link(request: KeyRequest, id: UUID):
    """The connection's open link (reused while it is valid), or a new one: send it to the seller
    to authorize again or grant missing scopes. Permission `invitations:write`."""
    seller = tenant_connections(tenant_id=request.auth.tenant_id).filter(public_id=id).first()
    if seller is None:
        raise _not_found()
    link, _ = reauthorization_link_get_or_create(seller=seller, actor=actor_for_key(request.auth))
    return {"url": link.url, "expires_at": link.expires_at}


# --- Invitations -------------------------------------------------------------------------------


@api.post(
    "/invitations",
    response={201: InvitationOut, **_errors(409)},
    auth=KeyAuth(Permission.INVITATIONS_WRITE),
    operation_id="createInvitation",
    summary="Invite a seller",
    tags=["invitations"],
)
def create_invitation(
    request: KeyRequest,
    response: HttpResponse,
    payload: InvitationIn,
    idempotency_key: Annotated[
        IdempotencyKey | SkipJsonSchema[None],
        Header(
            alias="Idempotency-Key",
            description="Retrying with the same key within 24 hours returns the first answer and creates nothing.",
        ),
    ] = None,
):
    """Create a pending connection and its invitation link (201). With `Idempotency-Key`, a retry
    gets the first answer (header `Idempotent-Replayed: true`); the same key with another body is
    409 `idempotency_conflict`. Permission `invitations:write`."""
    key = request.auth
    try:
        invitation, replayed = invitation_create_idempotent(
            api_key=key, idempotency_key=idempotency_key, payload=payload.dict(), actor=actor_for_key(key)
        )
    except IdempotencyConflict as exc:
        raise ApiError(409, "idempotency_conflict", str(exc)) from None
    if replayed:
        response["Idempotent-Replayed"] = "true"
    response["Cache-Control"] = "no-store"
    seller = tenant_connections(tenant_id=key.tenant_id).get(pk=invitation.seller_id)
    body = {
        "connection": connection_record(seller, required=required_scopes(tenant_id=key.tenant_id)),
        "url": invitation.url,
        "expires_at": invitation.expires_at,
    }
    return Status(201, body)


# --- Restricted data tokens and grantless tokens -------------------------------------------------


@api.post(
    "/connections/{id}/restricted-data-token",
    response={200: RestrictedDataTokenOut, **_errors(404, 409, 502, 503)},
    auth=KeyAuth(Permission.RDT_CREATE),
    operation_id="createRestrictedDataToken",
    summary="Get a restricted data token",
    tags=["tokens"],
)
def restricted_data_token(request: KeyRequest, response: HttpResponse, id: UUID, payload: RestrictedDataTokenIn):
    """A restricted data token (RDT) from Amazon's Tokens API for the named operations of the
    connection's seller: buyers' addresses, buyer info, tax information. Each one is recorded
    in the connection's history (the key, the methods and paths; never the token). A key with
    proxy `paths` may only name paths under them (403 `path_not_allowed`). Permission `rdt:create`.

    403/400 `rdt_refused` when Amazon refuses (the app lacks the restricted role, or a path is
    not a restricted operation); 409 `reauthorization_required` as for access tokens.
    """
    key = request.auth
    refused = [r.path for r in payload.restricted_resources if not key_allows(key, r.path)]
    if refused:
        raise ApiError(403, "path_not_allowed", f"This key may only name SP-API paths under: {', '.join(key.paths)}.")
    seller = connection_for_token(tenant_id=key.tenant_id, connection_id=id)
    if seller is None:
        raise _not_found()
    grant = connection_grant_usable(seller)
    result = seller_restricted_data_token(
        seller=seller,
        grant=grant,
        resources=[RestrictedResource(r.method, r.path, tuple(r.data_elements)) for r in payload.restricted_resources],
        target_application=payload.target_application,
        actor=actor_for_key(key),
        api_key=key.display_prefix,
    )
    response["Cache-Control"] = "no-store"
    return {"restricted_data_token": result.token, "expires_in": result.expires_in}


@api.post(
    "/grantless-token",
    response={200: GrantlessTokenOut, **_errors(502, 503)},
    auth=KeyAuth(Permission.GRANTLESS),
    operation_id="getGrantlessToken",
    summary="Get a grantless token",
    tags=["tokens"],
)
def grantless_token(request: KeyRequest, response: HttpResponse, payload: GrantlessTokenIn):
    """The tenant's app's own access token for a grantless scope (no seller): notification
    destinations (`sellingpartnerapi::notifications`) or client secret rotation
    (`sellingpartnerapi::client_credential:rotation`). Kept by spconnect until shortly before it
    expires, so repeated calls cost no Login with Amazon request. Permission `grantless`.

    502 `app_credentials_rejected` or `grantless_refused` when Login with Amazon refuses; 503
    `token_unavailable` with Retry-After when it does not answer.
    """
    tenant = Tenant.objects.get(pk=request.auth.tenant_id)
    token = tenant_grantless_token(tenant=tenant, scope=payload.scope)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return {"access_token": token.access_token, "expires_in": token.expires_in()}


# --- The SP-API proxy ----------------------------------------------------------------------------

# What Amazon answers is handed on as it is: any status, any JSON body. spconnect's own refusals
# (before anything is sent, and 502/503/409 around the token) have the usual error shape.
_PROXY_RESPONSES: dict = {
    codes_2xx: dict[str, Any],
    codes_4xx: dict[str, Any],
    codes_5xx: dict[str, Any],
}
_PROXY_DOC = """Calls SP-API as the connection's seller, without handing out the seller's token: the method,
`path`, query string, body and Content-Type go to the connection's regional SP-API host with its
access token, and Amazon's status, body, Content-Type, `x-amzn-RequestId`,
`x-amzn-RateLimit-Limit` and `Retry-After` come back. No other header passes either way, and
nothing can change the host. Permission `proxy`.

Refused before anything is sent: 400 `invalid_path`; 403 `path_not_allowed` (outside the key's
proxy paths, or the Tokens API); 403 `scope_not_granted` (the seller did not grant the scope the
path needs); 404 for an unknown connection; 409 `reauthorization_required` with
`reauthorization_url` (never authorized, revoked or expired). GET is retried on 429 and 5xx (at
most 3 times, honouring Retry-After up to 5 s); other methods are sent exactly once.
`X-Spconnect-Data-Elements` (needs `rdt:create` too): a restricted data token for this method
and path is obtained and sent instead of the access token."""
_ANY_JSON_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {}}}}}
DataElementsHeader = Annotated[
    str | SkipJsonSchema[None],
    Header(
        alias=DATA_ELEMENTS_HEADER,
        description="Comma-separated: buyerInfo, shippingAddress, buyerTaxInformation. Sends a restricted data token.",
    ),
]


def _proxy(request: KeyRequest, id: UUID, path: str, data_elements: str | None) -> HttpResponse:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413, "payload_too_large", "The request body is larger than this server accepts.") from None
    call = ProxyCall(
        method=(request.method or "GET").upper(),
        path=proxy_path(path),
        query=request.META.get("QUERY_STRING", ""),
        body=body,
        content_type=request.META.get("CONTENT_TYPE", "") if body else "",
        data_elements=data_elements_of(data_elements),
    )
    return connection_proxy(key=request.auth, connection_id=id, call=call)


def _proxy_operation(method: str, *, with_body: bool):
    return api.api_operation(
        [method],
        "/connections/{id}/proxy/{path:path}",
        response=_PROXY_RESPONSES,
        auth=KeyAuth(Permission.PROXY),
        operation_id=f"proxy{method.title()}",
        summary=f"{method} through the SP-API proxy",
        description=_PROXY_DOC,
        tags=["proxy"],
        openapi_extra=_ANY_JSON_BODY if with_body else None,
    )


@_proxy_operation("GET", with_body=False)
def proxy_get(request: KeyRequest, id: UUID, path: str, data_elements: DataElementsHeader = None):
    return _proxy(request, id, path, data_elements)


@_proxy_operation("POST", with_body=True)
def proxy_post(request: KeyRequest, id: UUID, path: str, data_elements: DataElementsHeader = None):
    return _proxy(request, id, path, data_elements)


@_proxy_operation("PUT", with_body=True)
def proxy_put(request: KeyRequest, id: UUID, path: str, data_elements: DataElementsHeader = None):
    return _proxy(request, id, path, data_elements)


@_proxy_operation("PATCH", with_body=True)
def proxy_patch(request: KeyRequest, id: UUID, path: str, data_elements: DataElementsHeader = None):
    return _proxy(request, id, path, data_elements)


@_proxy_operation("DELETE", with_body=False)
def proxy_delete(request: KeyRequest, id: UUID, path: str, data_elements: DataElementsHeader = None):
    return _proxy(request, id, path, data_elements)
