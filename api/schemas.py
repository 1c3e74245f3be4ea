"""The API's contract: request and response bodies as typed schemas. The OpenAPI description at
/api/v1/openapi.json is generated from these (and the endpoints' signatures), never written by
hand. Request bodies are strict (no type coercion, no unknown fields): a typo is a 400, not a
silently ignored option."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from ninja import Field, Schema
from pydantic import ConfigDict, StringConstraints, field_validator
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from sellers.models import Region, Seller

RegionCode = Literal["na", "eu", "fe"]
StatusCode = Literal[
    "invited", "opened", "at_amazon", "declined", "link_expired", "active", "partial", "revoked", "expired", "failing"
]

assert set(get_args(RegionCode)) == set(Region.values)  # the schema follows the model
assert set(get_args(StatusCode)) == set(Seller.Status.values)

# Text that reaches the database: no control characters (PostgreSQL refuses NUL in text), and
# for a name at least one visible character. JSON Schema and pydantic read these alike.
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
VISIBLE_TEXT = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"

MIN_TTL_MAX = 3300  # LWA's tokens live 3600 s; asking for more than 55 minutes could never be met
INVITATION_DAYS_MAX = 90


class _Strict(Schema):
    model_config = ConfigDict(strict=True, extra="forbid")


# --- Errors ------------------------------------------------------------------------------------


class ErrorDetail(Schema):
    code: str = Field(..., description="Stable, machine-readable: see docs/api.md for the list.", examples=["not_found"])
    message: str = Field(..., description="For people; may change.")
    field: str | None = Field(None, description="400 only: the parameter or body field at fault.")
    reauthorization_url: str | None = Field(
        None, description="409 reauthorization_required only: the seller's link to connect again."
    )


class ErrorOut(Schema):
    error: ErrorDetail


# --- Connections -------------------------------------------------------------------------------


class ConnectionOut(Schema):
    """A seller's Amazon account connected (or invited) to the tenant. Never carries a token."""

    id: UUID = Field(..., description="The connection's id (stable; not a database id).")
    name: str
    selling_partner_id: str | None = Field(..., description="Amazon's merchant token; null until the seller authorizes.")
    region: RegionCode
    status: StatusCode
    granted_scopes: list[str] = Field(..., description="SP-API scopes the seller granted (and Amazon has not refused).")
    missing_scopes: list[str] = Field(..., description="Scopes the tenant requires that are not granted.")
    scopes_confirmed: bool = Field(..., description="True when Amazon's token response named the granted scopes.")
    authorized_at: datetime | None
    renewal_due_at: datetime | None = Field(..., description="When Amazon makes the seller consent again (365 days).")
    access_token_expires_at: datetime | None
    last_refreshed_at: datetime | None
    created_at: datetime


class ConnectionListOut(Schema):
    data: list[ConnectionOut]
    next_cursor: str | None = Field(..., description="Pass as `cursor` for the next page; null on the last page.")


SellingPartnerId = Annotated[str, StringConstraints(max_length=64, pattern=NO_CONTROL)]
SearchText = Annotated[str, StringConstraints(max_length=200, pattern=NO_CONTROL)]
Cursor = Annotated[str, StringConstraints(max_length=500)]


class ConnectionFilters(Schema):
    # `X | SkipJsonSchema[None]`: optional, yet never `null` in the description (a query has no
    # null); the constraints sit on X so that the description shows them.
    status: StatusCode | SkipJsonSchema[None] = Field(None, description="Only connections with this status.")
    region: RegionCode | SkipJsonSchema[None] = Field(None, description="Only connections in this region.")
    selling_partner_id: SellingPartnerId | SkipJsonSchema[None] = Field(None, description="Exact selling partner id.")
    q: SearchText | SkipJsonSchema[None] = Field(None, description="Case-insensitive part of the name or selling partner id.")
    cursor: Cursor | SkipJsonSchema[None] = Field(None, description="`next_cursor` of the previous page.")
    limit: int = Field(50, ge=1, le=200, description="Page size, 1 to 200.")


# --- Access tokens -----------------------------------------------------------------------------


class AccessTokenIn(_Strict):
    min_ttl_seconds: int = Field(
        300, ge=0, le=MIN_TTL_MAX, description="The token must stay valid at least this long; a stored one that does is returned as is."
    )
    force_refresh: bool = Field(False, description="Refresh at Login with Amazon even if the stored token is valid.")


class AccessTokenOut(Schema):
    access_token: str = Field(..., description="Send to SP-API as x-amz-access-token.")
    token_type: Literal["bearer"]
    expires_at: datetime
    expires_in: int = Field(..., description="Seconds from now until expires_at.")
    region: RegionCode
    endpoint: str = Field(..., description="The SP-API host of the connection's region.")
    selling_partner_id: str


# --- Invitations -------------------------------------------------------------------------------


IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
# Checked by Django's validator below; described as JSON Schema's `email` format.
EmailAddress = Annotated[
    str,
    StringConstraints(max_length=254, pattern=NO_CONTROL),
    WithJsonSchema({"type": "string", "format": "email", "maxLength": 254}),
]


class InvitationIn(_Strict):
    name: str = Field(
        ..., min_length=1, max_length=200, pattern=VISIBLE_TEXT, description="The seller's name, shown on the hosted page."
    )
    email: EmailAddress | Literal[""] | None = Field(
        None, description="Where re-authorization links go later (empty or null: none)."
    )
    region: RegionCode = Field("na", description="The Amazon region the seller sells in.")
    days: int | None = Field(
        None, ge=1, le=INVITATION_DAYS_MAX, description="Link lifetime in days (default: the server's, 7)."
    )

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    @field_validator("email")
    @classmethod
    def _email_valid(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            validate_email(value.strip())
        except DjangoValidationError:
            raise ValueError("not a valid email address") from None
        return value.strip()


class LinkOut(Schema):
    url: str = Field(..., description="The hosted page link to send the seller.")
    expires_at: datetime


class InvitationOut(Schema):
    connection: ConnectionOut
    url: str = Field(..., description="The hosted page link to send the seller.")
    expires_at: datetime


# --- Restricted data tokens and grantless tokens ------------------------------------------------


HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
DataElement = Literal["buyerInfo", "shippingAddress", "buyerTaxInformation"]
SpapiPath = Annotated[str, StringConstraints(min_length=2, max_length=2000, pattern=r"^/[A-Za-z0-9_\-./~%:,;@!$&'()*+={}]+$")]
GrantlessScope = Literal["sellingpartnerapi::notifications", "sellingpartnerapi::client_credential:rotation"]


class RestrictedResourceIn(_Strict):
    method: HttpMethod
    path: SpapiPath = Field(..., description="The operation's SP-API path, e.g. /orders/v0/orders/123-1234567-1234567/address.")
    data_elements: list[DataElement] = Field(
        default_factory=list, max_length=3, description="For getOrders, getOrder and getOrderItems: the personal data wanted."
    )


class RestrictedDataTokenIn(_Strict):
    restricted_resources: list[RestrictedResourceIn] = Field(..., min_length=1, max_length=50)
    target_application: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_CONTROL)] | None = Field(
        None, description="The application id of a delegatee app, when the token is for another application."
    )


class RestrictedDataTokenOut(Schema):
    restricted_data_token: str = Field(..., description="Send as x-amz-access-token, for the named requests only.")
    expires_in: int = Field(..., description="Seconds it stays valid.")


class GrantlessTokenIn(_Strict):
    scope: GrantlessScope


class GrantlessTokenOut(Schema):
    access_token: str = Field(..., description="The app's own token (no seller): send as x-amz-access-token to grantless operations.")
    expires_in: int = Field(..., description="Seconds it stays valid.")
