"""What the API answers, as typed objects. Fields this client does not know yet land in `extra`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any


def parse_datetime(value: Any) -> datetime | None:
    """An ISO 8601 timestamp from the API (always with an offset or `Z`) as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    text = str(value)
    if text.endswith(("Z", "z")):  # fromisoformat reads "Z" only from Python 3.11
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _split(cls, data: Mapping[str, Any]) -> tuple[dict, dict]:
    names = {f.name for f in fields(cls)} - {"extra"}
    known = {k: v for k, v in data.items() if k in names}
    extra = {k: v for k, v in data.items() if k not in names}
    return known, extra


@dataclass(frozen=True)
class Connection:
    """A seller's connection to the agency's app. Never carries a token."""

    id: str
    name: str
    selling_partner_id: str
    region: str
    status: str
    granted_scopes: list[str]
    missing_scopes: list[str]
    scopes_confirmed: bool
    authorized_at: datetime | None
    renewal_due_at: datetime | None
    access_token_expires_at: datetime | None
    last_refreshed_at: datetime | None
    created_at: datetime | None
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Connection:
        known, extra = _split(cls, data)
        return cls(
            id=str(known.get("id", "")),
            name=known.get("name") or "",
            selling_partner_id=known.get("selling_partner_id") or "",
            region=known.get("region") or "",
            status=known.get("status") or "",
            granted_scopes=list(known.get("granted_scopes") or []),
            missing_scopes=list(known.get("missing_scopes") or []),
            scopes_confirmed=bool(known.get("scopes_confirmed")),
            authorized_at=parse_datetime(known.get("authorized_at")),
            renewal_due_at=parse_datetime(known.get("renewal_due_at")),
            access_token_expires_at=parse_datetime(known.get("access_token_expires_at")),
            last_refreshed_at=parse_datetime(known.get("last_refreshed_at")),
            created_at=parse_datetime(known.get("created_at")),
            extra=extra,
        )


@dataclass(frozen=True)
class ConnectionPage:
    """One page of `GET /connections`; pass `next_cursor` back for the next one (None: last page)."""

    data: list[Connection]
    next_cursor: str | None


@dataclass(frozen=True)
class AccessToken:
    """A seller's SP-API access token, for the `x-amz-access-token` header of calls to `endpoint`.

    The token is left out of `repr()` so that it does not end up in logs by accident.
    """

    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime | None
    expires_in: int
    region: str
    endpoint: str
    selling_partner_id: str
    extra: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AccessToken:
        known, extra = _split(cls, data)
        return cls(
            access_token=known.get("access_token") or "",
            token_type=known.get("token_type") or "bearer",
            expires_at=parse_datetime(known.get("expires_at")),
            expires_in=int(known.get("expires_in") or 0),
            region=known.get("region") or "",
            endpoint=known.get("endpoint") or "",
            selling_partner_id=known.get("selling_partner_id") or "",
            extra=extra,
        )


@dataclass(frozen=True)
class Invitation:
    """A new pending connection and the link its seller opens to authorize the app."""

    connection: Connection
    url: str
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Invitation:
        return cls(
            connection=Connection.from_json(data.get("connection") or {}),
            url=data.get("url") or "",
            expires_at=parse_datetime(data.get("expires_at")),
        )


@dataclass(frozen=True)
class ReauthorizationLink:
    """The link a seller opens to authorize the app again."""

    url: str
    expires_at: datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReauthorizationLink:
        return cls(url=data.get("url") or "", expires_at=parse_datetime(data.get("expires_at")))


@dataclass(frozen=True)
class GrantlessToken:
    """The agency app's own token for a grantless scope (no seller). Left out of `repr()`."""

    access_token: str = field(repr=False)
    expires_in: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GrantlessToken:
        return cls(access_token=data.get("access_token") or "", expires_in=int(data.get("expires_in") or 0))


@dataclass(frozen=True)
class RestrictedDataToken:
    """A restricted data token for the requests it was made for. Left out of `repr()`."""

    restricted_data_token: str = field(repr=False)
    expires_in: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RestrictedDataToken:
        return cls(restricted_data_token=data.get("restricted_data_token") or "",
                   expires_in=int(data.get("expires_in") or 0))


@dataclass(frozen=True)
class ProxyResponse:
    """Amazon's answer to a request sent through spconnect's proxy, whatever its status.

    `status` and `content` are Amazon's; `headers` holds what spconnect hands on (Content-Type,
    `x-amzn-RequestId`, `x-amzn-RateLimit-Limit`, Retry-After). spconnect's own refusals are
    raised as exceptions instead.
    """

    status: int
    headers: Mapping[str, str]
    content: bytes = field(repr=False)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-amzn-RequestId")

    @property
    def rate_limit(self) -> float | None:
        value = self.headers.get("x-amzn-RateLimit-Limit")
        try:
            return float(value) if value else None
        except ValueError:
            return None

    def json(self) -> Any:
        return json.loads(self.content) if self.content else None
