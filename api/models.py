"""API keys (one tenant each) and the Idempotency-Key records of `POST /api/v1/invitations`."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from sellers.models import Invitation, Tenant


class Permission(models.TextChoices):
    """What a key may do. `proxy`, `rdt:create` and `grantless` are used by the SP-API proxy,
    restricted data tokens and grantless tokens; keys may hold them already."""

    CONNECTIONS_READ = "connections:read", "connections:read — list and read connections"
    TOKENS_READ = "tokens:read", "tokens:read — hand out access tokens (full power over sellers' data)"
    PROXY = "proxy", "proxy — call SP-API through spconnect"
    RDT_CREATE = "rdt:create", "rdt:create — create restricted data tokens"
    INVITATIONS_WRITE = "invitations:write", "invitations:write — create invitation and re-authorization links"
    GRANTLESS = "grantless", "grantless — grantless (app-level) tokens"


class ApiKey(models.Model):
    """A bearer key of one tenant: `spc_<prefix>_<secret>`, stored as the SHA-256 of the whole key.

    The prefix is public (shown in the admin and the command's list) and finds the row; the hash
    proves the rest. Keys are revoked, never deleted, so the history keeps naming them.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, help_text="Unique within the tenant, e.g. repricer or order-sync.")
    prefix = models.CharField(max_length=8, unique=True, help_text="Public part of the key: spc_<prefix>_…")
    key_hash = models.CharField(max_length=64, unique=True)
    permissions = models.JSONField(default=list, blank=True)
    paths = models.JSONField(
        default=list, blank=True, help_text="SP-API path prefixes the key's proxy calls are limited to; empty: any."
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=150, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["tenant", "name"]
        verbose_name = "API key"
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="api_key_unique_tenant_name")]

    def __str__(self) -> str:
        return f"{self.name} (spc_{self.prefix}_…)"

    @property
    def display_prefix(self) -> str:
        return f"spc_{self.prefix}_…"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class IdempotencyRecord(models.Model):
    """The first answer to an `Idempotency-Key` of one API key, kept 24 hours.

    The answer is the invitation it created (rebuilt on a replay), never a copy of the response:
    the link's token stays encrypted in `Invitation` and nowhere else.
    """

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="idempotency_records")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64, help_text="SHA-256 of the request body as parsed.")
    invitation = models.ForeignKey(Invitation, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_unique_api_key_key"),
        ]

    def __str__(self) -> str:
        return f"Idempotency-Key of {self.api_key_id}"
