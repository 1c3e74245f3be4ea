"""API keys: create, revoke, and find the key a request presents.

A key is `spc_<prefix>_<secret>`: an 8-character public prefix (lowercase letters and digits,
shown in the admin and `api_key list`) and 256 random bits. Only the SHA-256 of the whole key is
stored (`sellers.hashing.token_hash`: a value nobody can guess needs no salt or slow hash), so a
copy of the database lets nobody in. The prefix finds the row and the hash is compared in
constant time.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from sellers.hashing import token_hash
from sellers.models import Event, Tenant
from sellers.services.events import event_record

from .models import ApiKey, Permission

KEY_START = "spc_"
PREFIX_LENGTH = 8
PREFIX_ALPHABET = string.ascii_lowercase + string.digits
SECRET_BYTES = 32  # token_urlsafe(32): 43 URL-safe characters
MIN_SECRET_LENGTH = 32
MAX_SECRET_LENGTH = 128
MAX_EXPIRES_DAYS = 3650
MAX_PATHS = 50
# last_used_at is written at most this often per key: one UPDATE a minute, not one per request.
LAST_USED_RESOLUTION = timedelta(seconds=60)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:@/+-]{0,99}$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/{}-]{0,199}$")
_KEY = re.compile(rf"^{KEY_START}([a-z0-9]{{{PREFIX_LENGTH}}})_([A-Za-z0-9_-]{{{MIN_SECRET_LENGTH},{MAX_SECRET_LENGTH}}})$")


class ApiKeyError(ValueError):
    """Input a key cannot be created with; the message says which and why."""


def permissions_clean(values: Iterable[str]) -> list[str]:
    """Known permission names, without duplicates, in the catalog's order."""
    wanted = {v.strip() for v in values if v and v.strip()}
    unknown = sorted(wanted - set(Permission.values))
    if unknown:
        raise ApiKeyError(f"Unknown permission {', '.join(unknown)}; use {', '.join(Permission.values)}.")
    if not wanted:
        raise ApiKeyError(f"Give at least one permission: {', '.join(Permission.values)}.")
    return [p for p in Permission.values if p in wanted]


def paths_clean(values: Iterable[str]) -> list[str]:
    """SP-API path prefixes (`/orders/v0/`): each starts with a slash; duplicates dropped."""
    cleaned: list[str] = []
    for value in values:
        value = (value or "").strip()
        if not value:
            continue
        if not _PATH.match(value):
            raise ApiKeyError(f"{value!r} is not an SP-API path prefix: it must start with / and hold no spaces or query.")
        if value not in cleaned:
            cleaned.append(value)
    if len(cleaned) > MAX_PATHS:
        raise ApiKeyError(f"At most {MAX_PATHS} path prefixes per key.")
    return cleaned


def name_clean(value: str) -> str:
    value = (value or "").strip()
    if not _NAME.match(value):
        raise ApiKeyError(
            "A key name is 1 to 100 characters: letters, digits, spaces and . _ : @ / + -, starting with a letter or digit."
        )
    return value


def _new_secret() -> tuple[str, str]:
    prefix = "".join(secrets.choice(PREFIX_ALPHABET) for _ in range(PREFIX_LENGTH))
    return prefix, f"{KEY_START}{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"


def api_key_create(
    *,
    tenant: Tenant,
    name: str,
    permissions: Iterable[str],
    paths: Iterable[str] = (),
    expires_days: int | None = None,
    actor: str,
) -> tuple[ApiKey, str]:
    """Create a key and record `api_key_created` in the tenant's history. Returns (key, the key
    in full): the full key exists only in this return value and is never stored or shown again.

    Raises ApiKeyError for a bad name, permission, path or lifetime, or a name already taken.
    """
    name = name_clean(name)
    permissions = permissions_clean(permissions)
    paths = paths_clean(paths)
    if expires_days is not None and not (1 <= expires_days <= MAX_EXPIRES_DAYS):
        raise ApiKeyError(f"The lifetime must be 1 to {MAX_EXPIRES_DAYS} days.")
    if ApiKey.objects.filter(tenant=tenant, name=name).exists():
        raise ApiKeyError(f"{tenant.slug} already has a key named {name!r}; pick another name (revoked keys keep theirs).")
    now = timezone.now()
    expires_at = now + timedelta(days=expires_days) if expires_days else None
    for _attempt in range(5):
        prefix, full = _new_secret()
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    tenant=tenant,
                    name=name,
                    prefix=prefix,
                    key_hash=token_hash(full),
                    permissions=permissions,
                    paths=paths,
                    created_at=now,
                    created_by=actor[:150],
                    expires_at=expires_at,
                )
                event_record(
                    tenant=tenant,
                    kind=Event.Kind.API_KEY_CREATED,
                    detail=(
                        f"API key {name} (spc_{prefix}_…) created with {', '.join(permissions)}"
                        + (f"; proxy paths {', '.join(paths)}" if paths else "")
                        + (f"; expires {expires_at:%Y-%m-%d %H:%M} UTC." if expires_at else "; no expiry.")
                    ),
                    data={
                        "key": name,
                        "prefix": prefix,
                        "permissions": permissions,
                        "paths": paths,
                        "expires_at": expires_at.isoformat() if expires_at else None,
                    },
                    actor=actor,
                )
        except IntegrityError:
            if ApiKey.objects.filter(tenant=tenant, name=name).exists():
                raise ApiKeyError(f"{tenant.slug} already has a key named {name!r}.") from None
            continue  # the random prefix was taken: draw another
        return key, full
    raise ApiKeyError("Could not draw an unused key prefix; try again.")


def api_key_revoke(*, api_key: ApiKey, actor: str) -> bool:
    """Revoke the key (it stops working at once) and record `api_key_revoked`. False, and nothing
    recorded, when it was already revoked."""
    now = timezone.now()
    with transaction.atomic():
        changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now, revoked_by=actor[:150])
        if not changed:
            return False
        api_key.revoked_at, api_key.revoked_by = now, actor[:150]
        event_record(
            tenant=api_key.tenant,
            kind=Event.Kind.API_KEY_REVOKED,
            detail=f"API key {api_key.name} (spc_{api_key.prefix}_…) revoked.",
            data={"key": api_key.name, "prefix": api_key.prefix},
            actor=actor,
        )
    return True


def api_key_find(presented: str, *, now: datetime | None = None) -> ApiKey | None:
    """The usable key (not revoked, not expired) a request presented, or None. One query.

    The prefix finds the row; the hash of the whole presented key must match it, compared in
    constant time. Anything not shaped like a key costs no query at all.
    """
    match = _KEY.match(presented or "")
    if match is None:
        return None
    rows = ApiKey.objects.filter(prefix=match.group(1)).order_by()  # unique: no ORDER BY, no join
    key = next(iter(rows), None)
    if key is None or not secrets.compare_digest(key.key_hash, token_hash(presented)):
        return None
    return key if key.is_usable(now) else None


def api_key_touch(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Record that the key was used, at most once per LAST_USED_RESOLUTION: requests in between
    cost no write. The UPDATE is conditional, so processes racing for it write once."""
    now = now or timezone.now()
    last = api_key.last_used_at
    if last is not None and now - last < LAST_USED_RESOLUTION:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_RESOLUTION)
    ApiKey.objects.filter(stale, pk=api_key.pk).update(last_used_at=now)
    api_key.last_used_at = now
