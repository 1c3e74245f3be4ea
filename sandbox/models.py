"""State of the local Amazon stand-in: codes and tokens it has issued.

Kept in the database (hashed) rather than in memory so several web processes share it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class SandboxMode(models.TextChoices):
    # The scope model: scopes in the consent URL, echoed by the token response.
    SEED = "seed", "Seed (scopes asked in the consent URL and echoed back)"
    # Amazon as it really behaves: the app's registered roles decide, nothing is echoed.
    AMAZON = "amazon", "Amazon (registered roles decide, no scope echoed)"


class SandboxState(models.Model):
    """The sandbox's settings: one row (id 1), so every web process sees the same mode."""

    mode = models.CharField(max_length=16, choices=SandboxMode.choices, default=SandboxMode.SEED)
    changed_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="sandbox_state_single_row")]

    def __str__(self) -> str:
        return f"sandbox in {self.mode} mode"


class SandboxAuthorization(models.Model):
    """One seller's approval of one app in the sandbox; revoking it kills its tokens."""

    client_id = models.CharField(max_length=200)
    selling_partner_id = models.CharField(max_length=64, db_index=True)
    region = models.CharField(max_length=2)
    scopes = models.JSONField(default=list)
    # The app's roles when the seller consented: what its tokens open in `amazon` mode.
    roles = models.JSONField(default=list)
    redirect_uri = models.CharField(max_length=500)
    code_hash = models.CharField(max_length=64, unique=True)
    code_expires_at = models.DateTimeField()
    code_used_at = models.DateTimeField(null=True, blank=True)
    refresh_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"sandbox authorization {self.selling_partner_id}"


class SandboxAccessToken(models.Model):
    authorization = models.ForeignKey(SandboxAuthorization, on_delete=models.CASCADE, related_name="access_tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"sandbox access token of {self.authorization_id}"
