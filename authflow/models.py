"""Server-side OAuth state: single use, short lived, bound to the browser that started it."""

from __future__ import annotations

from django.db import models

from sellers.models import Invitation, Region, Seller, Tenant


class OAuthState(models.Model):
    """One consent attempt. Only a SHA-256 of the state value is stored."""

    class Flow(models.TextChoices):
        INVITATION = "invitation", "Invitation (website workflow)"
        AMAZON = "amazon", "Amazon-initiated (Login URI)"

    state_hash = models.CharField(max_length=64, unique=True)
    # SHA-256 of a random value kept in the starting browser's session: the callback must come
    # from the same browser, or a stolen state could attach someone else's account.
    browser_hash = models.CharField(max_length=64)
    flow = models.CharField(max_length=16, choices=Flow.choices, default=Flow.INVITATION)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="oauth_states")
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, null=True, blank=True, related_name="oauth_states")
    invitation = models.ForeignKey(
        Invitation, on_delete=models.CASCADE, null=True, blank=True, related_name="oauth_states"
    )
    region = models.CharField(max_length=2, choices=Region.choices)
    requested_scopes = models.JSONField(default=list)
    # Amazon-initiated flow: the merchant Amazon named when it opened our Login URI.
    claimed_selling_partner_id = models.CharField(max_length=64, blank=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"OAuth state for tenant {self.tenant_id} ({'used' if self.used_at else 'open'})"
