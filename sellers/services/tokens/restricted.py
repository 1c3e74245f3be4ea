"""Restricted data tokens (RDTs): what SP-API asks for before it returns buyers' personal data
(addresses, buyer info, tax information) for named operations.

An RDT is obtained with the seller's access token from the Tokens API and names the method and
path of each request it may be used for. Each one obtained is recorded in the history (who
asked, which method and path, which data elements), never the token itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sellers import amazon
from sellers.models import Event, Grant, Seller

from ..events import event_record
from .errors import AppCredentialsRejected, TokenError, TokenUnavailable, reauthorization_required
from .refresh import RefreshOutcome, grant_access_token, grant_refresh

DATA_ELEMENTS = ("buyerInfo", "shippingAddress", "buyerTaxInformation")
MAX_RESOURCES = 50  # Amazon's limit per request
# Amazon takes `dataElements` in an RDT request for getOrders, getOrder and getOrderItems only;
# for the other restricted operations the token itself opens the data.
_TAKES_DATA_ELEMENTS = re.compile(r"^/orders/v0/orders(/[^/]+(/orderItems)?)?$")
# Operations that answer only to an RDT (getOrderAddress, getOrderBuyerInfo,
# getOrderItemsBuyerInfo, getOrderRegulatedInfo): an access token is always refused there.
_ANSWERS_ONLY_RDT = re.compile(r"^/orders/v0/orders/[^/]+/(address|buyerInfo|regulatedInfo|orderItems/buyerInfo)$")


def takes_data_elements(path: str) -> bool:
    return _TAKES_DATA_ELEMENTS.match(path) is not None


def answers_only_rdt(path: str) -> bool:
    return _ANSWERS_ONLY_RDT.match(path) is not None


@dataclass(frozen=True)
class RestrictedResource:
    method: str
    path: str
    data_elements: tuple[str, ...] = ()

    def for_amazon(self) -> dict[str, Any]:
        resource: dict[str, Any] = {"method": self.method, "path": self.path}
        if self.data_elements:
            resource["dataElements"] = list(self.data_elements)
        return resource


class RdtRefused(TokenError):
    """The Tokens API refused to issue the token. `status_code` and `errors` are Amazon's
    (its error objects never carry a token)."""

    def __init__(self, message: str, *, status_code: int, errors: list[dict]):
        self.status_code = status_code
        self.errors = errors
        super().__init__(message)


@dataclass(frozen=True)
class RdtResult:
    expires_in: int
    token: str = field(repr=False)


def _errors_of(response: amazon.SpapiResponse) -> list[dict]:
    body = response.body
    if isinstance(body, dict) and isinstance(body.get("errors"), list):
        return [
            {k: str(v)[:300] for k, v in e.items() if k in ("code", "message", "details")}
            for e in body["errors"][:10]
            if isinstance(e, dict)
        ]
    return []


def _unauthorized(response: amazon.SpapiResponse) -> bool:
    return response.status_code in (401, 403) and (
        response.status_code == 401 or "Unauthorized" in response.error_codes or not response.error_codes
    )


def seller_restricted_data_token(
    *,
    seller: Seller,
    grant: Grant,
    resources: list[RestrictedResource],
    target_application: str | None = None,
    actor: str,
    api_key: str = "",
    purpose: str = "endpoint",
) -> RdtResult:
    """An RDT for the seller, for `resources`. `grant` is the seller's loaded grant.

    A token Amazon refuses as Unauthorized is refreshed once (single flight) and the request
    sent again, as `spapi_request` does. Raises ReauthorizationRequired, AppCredentialsRejected,
    TokenUnavailable, RdtRefused.
    """
    if not resources or len(resources) > MAX_RESOURCES:
        raise ValueError(f"1 to {MAX_RESOURCES} restricted resources")
    wanted = [r.for_amazon() for r in resources]
    token = grant_access_token(grant=grant)
    for attempt in range(2):
        try:
            answer = amazon.rdt_create(
                region=seller.region, access_token=token, restricted_resources=wanted, target_application=target_application
            )
            break
        except amazon.SpapiTransportError as exc:
            raise TokenUnavailable(f"The Tokens API did not answer: {exc}") from None
        except amazon.RdtRefused as exc:
            if attempt == 0 and _unauthorized(exc.response):
                result = grant_refresh(grant=grant, actor="system", stale_token=token)
                if result.outcome == RefreshOutcome.REVOKED:
                    raise reauthorization_required(seller=seller, reason=result.detail) from None
                if result.outcome == RefreshOutcome.CREDENTIALS_FAILED:
                    raise AppCredentialsRejected(f"LWA rejected the app credentials ({result.detail}).") from None
                fresh = result.grant
                if fresh is None or not fresh.access_token or fresh.access_token == token:
                    raise TokenUnavailable(
                        f"Amazon refused the access token and no new one could be obtained: {result.detail}"
                    ) from None
                token = fresh.access_token
                continue
            raise RdtRefused(str(exc), status_code=exc.response.status_code, errors=_errors_of(exc.response)) from None
    event_record(
        kind=Event.Kind.RDT_CREATED,
        seller=seller,
        detail=f"Restricted data token obtained ({purpose}) for "
        + ", ".join(f"{r.method} {r.path}" for r in resources)[:1500],
        data={
            "via": purpose,
            **({"api_key": api_key} if api_key else {}),
            "resources": [{"method": r.method, "path": r.path, "data_elements": list(r.data_elements)} for r in resources],
            **({"target_application": target_application} if target_application else {}),
        },
        actor=actor,
    )
    return RdtResult(expires_in=answer.expires_in, token=answer.token)
