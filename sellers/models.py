"""Tenants (agencies and their SP-API app), sellers, the grants they give, and their history.

One module, a little over 400 lines: these models refer to one another at every turn (a grant
belongs to a seller of a tenant; events, invitations and identity reviews to all three), and
Django's migrations and admin read them as one app. Behaviour lives in `sellers/services/`.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from .fields import EncryptedTextField
from .scopes import SCOPE_CHOICES
from .validators import validate_webhook_url

# The encrypted token columns of Grant and IdentityReview. Every read that does not hand a token
# out defers them: decrypting is slow, and a value that no longer decrypts must not stop it.
TOKEN_FIELDS = ("refresh_token", "access_token", "mws_auth_token")
# The tenant's encrypted columns. Reads that do not need them defer them, for the same reasons.
TENANT_SECRET_FIELDS = ("client_secret", "previous_client_secret", "webhook_secret")


class Region(models.TextChoices):
    NA = "na", "North America"
    EU = "eu", "Europe"
    FE = "fe", "Far East"


class Tenant(models.Model):
    """An agency and its one SP-API app registration."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    slug = models.SlugField(unique=True, help_text="Short name used by management commands (--tenant).")
    name = models.CharField(max_length=200, help_text="Shown to sellers on the hosted pages.")
    application_id = models.CharField(
        max_length=200, help_text="The SP-API app's ID, e.g. amzn1.sellerapps.app.123456."
    )
    client_id = models.CharField(
        max_length=200, help_text="The LWA client identifier of the app (one tenant per app)."
    )
    client_secret = EncryptedTextField(blank=True, help_text="The current LWA client secret.")
    client_secret_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="When Amazon expires the current secret (rotate every 180 days)."
    )
    previous_client_secret = EncryptedTextField(
        blank=True, help_text="Kept after a rotation and tried on invalid_client until it expires."
    )
    previous_client_secret_expires_at = models.DateTimeField(null=True, blank=True)
    redirect_uri = models.URLField(
        max_length=500,
        blank=True,
        help_text="One of the app's registered redirect URIs. Empty: SITE_URL + /authflow/callback/.",
    )
    is_draft = models.BooleanField(
        default=False, help_text="Draft apps add version=beta to consent URLs (else Amazon shows MD1000)."
    )
    registered_scopes = models.JSONField(
        default=list,
        blank=True,
        help_text="Scopes the app is registered for. Assumed granted (unconfirmed) when Amazon "
        "returns no scope in the token response and no app roles are recorded.",
    )
    # Values of sellers.roles.AppRole. What real Amazon decides with: when its token response
    # names no scope, the scopes these roles give count as granted (sellers.scopes.SCOPE_ROLES).
    app_roles = models.JSONField(
        default=list,
        blank=True,
        help_text="The SP-API roles chosen when the app was registered (Developer Central → the app's "
        "registration). When Amazon returns no scope, the scopes these roles give count as granted.",
    )
    webhook_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[validate_webhook_url],
        help_text="Optional: an https address on the internet that receives signed JSON events.",
    )
    webhook_secret = EncryptedTextField(blank=True, help_text="HMAC-SHA256 key for webhook signatures.")
    credentials_failing_since = models.DateTimeField(
        null=True, blank=True, help_text="Set when LWA rejects the app's client credentials."
    )
    credentials_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # One tenant per app: Amazon's client-secret notifications are routed by client_id, so
            # a second tenant naming another's client_id would receive that tenant's new secret.
            models.UniqueConstraint(fields=["client_id"], name="tenant_unique_client_id"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def effective_redirect_uri(self) -> str:
        return self.redirect_uri or f"{settings.SITE_URL}{reverse('authflow:callback')}"


class TenantMembership(models.Model):
    """A staff user's role in one tenant; a user may belong to several tenants."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MANAGER = "manager", "Manager"
        VIEWER = "viewer", "Viewer"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="membership_unique_tenant_user")]

    def __str__(self) -> str:
        return f"{self.user} · {self.tenant} ({self.get_role_display()})"


class ScopeRequirement(models.Model):
    """A scope a tenant asks sellers for, required or optional, with the reason sellers see."""

    class Kind(models.TextChoices):
        REQUIRED = "required", "Required"
        OPTIONAL = "optional", "Optional"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="scope_requirements")
    scope = models.CharField(max_length=64, choices=SCOPE_CHOICES)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REQUIRED)
    reason = models.CharField(max_length=300, help_text="Why the agency needs it, shown to the seller.")

    class Meta:
        ordering = ["tenant", "scope"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "scope"], name="scope_requirement_unique_tenant_scope"),
        ]

    def __str__(self) -> str:
        return f"{self.scope} ({self.kind})"


class Seller(models.Model):
    """A seller's Amazon account in one region, as connected to one tenant."""

    class Status(models.TextChoices):
        # Onboarding: the seller has never connected (no grant); each is one step of the link.
        INVITED = "invited", "Invited"  # link not opened yet
        OPENED = "opened", "Opened the link"  # page seen, not sent to Amazon
        AT_AMAZON = "at_amazon", "At Amazon"  # sent to Amazon's consent page, not back
        DECLINED = "declined", "Declined"  # said no on Amazon's consent page
        LINK_EXPIRED = "link_expired", "Link expired"  # the last link expired unused
        # Connected once: derived from the grant.
        ACTIVE = "active", "Active"
        PARTIAL = "partial", "Partial"  # some required scope missing
        REVOKED = "revoked", "Revoked"  # LWA said invalid_grant, or staff marked it
        EXPIRED = "expired", "Expired"  # authorization older than 365 days
        FAILING = "failing", "Failing"  # refresh failing for a transient reason

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sellers")
    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    region = models.CharField(max_length=2, choices=Region.choices, default=Region.NA)
    selling_partner_id = models.CharField(
        max_length=64, blank=True, help_text="Amazon's merchant token; empty until the seller authorizes."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.INVITED, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            # The same Amazon account may be connected to two tenants, never twice to one.
            models.UniqueConstraint(
                fields=["tenant", "region", "selling_partner_id"],
                condition=~Q(selling_partner_id=""),
                name="seller_unique_tenant_region_spid",
            ),
        ]
        indexes = [models.Index(fields=["tenant", "status"], name="seller_tenant_status_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.selling_partner_id or 'not connected'})"


# The statuses of a seller that has never connected (no grant): where its link stands.
ONBOARDING_STATUSES: tuple[str, ...] = (
    Seller.Status.INVITED, Seller.Status.OPENED, Seller.Status.AT_AMAZON,
    Seller.Status.DECLINED, Seller.Status.LINK_EXPIRED,
)


class Grant(models.Model):
    """A seller's current authorization: tokens (encrypted), scopes and refresh bookkeeping.

    One per seller; a re-authorization replaces the tokens in place and the history keeps the
    story.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        REVOKED = "revoked", "Revoked"

    seller = models.OneToOneField(Seller, on_delete=models.CASCADE, related_name="grant")
    refresh_token = EncryptedTextField()
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    mws_auth_token = EncryptedTextField(blank=True)
    granted_scopes = models.JSONField(default=list, blank=True)
    scopes_confirmed = models.BooleanField(
        default=False, help_text="True when Amazon's token response named the granted scopes."
    )
    refused_scopes = models.JSONField(
        default=list, blank=True, help_text="Scopes Amazon refused at call time despite the grant."
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    authorized_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    failing_since = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Backoff: no automatic refresh before this time."
    )
    last_error = models.CharField(max_length=500, blank=True)
    refresh_claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="A scheduled refresh task is queued or running until then; not enqueued again."
    )
    refresh_lost_at = models.DateTimeField(
        null=True, blank=True, help_text="When a sweep last found a refresh task that never reported back."
    )
    # Bumped on every token change; in-process caches compare it to know they are stale.
    version = models.PositiveIntegerField(default=1)
    # What SP-API last said about the account behind these tokens (store names, marketplace ids,
    # the region asked). Kept so a later authorization can be compared even once these tokens
    # stop working: `selling_partner_id` in Amazon's redirect is not signed.
    account_fingerprint = models.JSONField(default=dict, blank=True)
    account_checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(status="active", revoked_at__isnull=True) | Q(status="revoked"),
                name="grant_active_has_no_revoked_at",
            ),
        ]
        # Partial: nearly every grant has neither, and sweeps and /healthz look only for those that do.
        indexes = [
            models.Index(
                fields=["refresh_claimed_until"], name="grant_refresh_claim_idx",
                condition=Q(refresh_claimed_until__isnull=False),
            ),
            models.Index(
                fields=["refresh_lost_at"], name="grant_refresh_lost_idx", condition=Q(refresh_lost_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        return f"Grant of {self.seller_id} ({self.status})"

    @property
    def effective_scopes(self) -> list[str]:
        refused = set(self.refused_scopes or [])
        return [s for s in (self.granted_scopes or []) if s not in refused]

    @property
    def renewal_due_at(self) -> datetime:
        """When Amazon makes the seller consent again: SPCONNECT_RENEWAL_DAYS after authorizing.
        `sellers.selectors.renewal_cutoff` is the same rule as a filter on `authorized_at`."""
        return self.authorized_at + timedelta(days=settings.SPCONNECT_RENEWAL_DAYS)


class Invitation(models.Model):
    """A hosted-page link sent to a seller to connect (onboarding) or to re-authorize.

    The URL's token is stored hashed for lookup and encrypted so staff can copy the link again;
    a link may be used several times until it expires (a seller retrying after a partial grant).
    """

    class Purpose(models.TextChoices):
        ONBOARDING = "onboarding", "Onboarding"
        REAUTHORIZATION = "reauthorization", "Re-authorization"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="invitations")
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="invitations")
    purpose = models.CharField(max_length=20, choices=Purpose.choices, default=Purpose.ONBOARDING)
    token_hash = models.CharField(max_length=64, unique=True)
    token = EncryptedTextField(help_text="The link's secret part, encrypted; shown only as a link.")
    expires_at = models.DateTimeField(db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=150, blank=True)
    last_emailed_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["seller", "-expires_at"], name="invitation_seller_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} link for {self.seller_id}"

    @property
    def url(self) -> str:
        return f"{settings.SITE_URL}{reverse('authflow:invite', kwargs={'token': self.token})}"

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at


class Event(models.Model):
    """Append-only history of a tenant's sellers and grants. Rows are never changed or deleted."""

    class Kind(models.TextChoices):
        INVITED = "invited", "Invited"
        REAUTH_LINK_CREATED = "reauth_link_created", "Re-authorization link created"
        REAUTH_LINK_EMAILED = "reauth_link_emailed", "Re-authorization link emailed"
        LINK_OPENED = "link_opened", "Opened the link"
        LINK_EXPIRED = "link_expired", "Link expired unused"
        CONSENT_STARTED = "consent_started", "Consent started"
        GRANTED = "granted", "Granted"
        PARTIALLY_GRANTED = "partially_granted", "Partially granted"
        REAUTHORIZED = "reauthorized", "Re-authorized"
        DENIED = "denied", "Declined at Amazon"
        CONSENT_ERROR = "consent_error", "Consent error"
        EXCHANGE_FAILED = "exchange_failed", "Code exchange failed"
        REVOKED = "revoked", "Revoked"
        MARKED_REVOKED = "marked_revoked", "Marked revoked by staff"
        REFRESH_FAILING = "refresh_failing", "Refresh failing"
        REFRESH_RECOVERED = "refresh_recovered", "Refresh recovered"
        SCOPE_REFUSED = "scope_refused", "Scope refused by Amazon"
        STATUS_CHANGED = "status_changed", "Status changed"
        RENEWAL_DUE = "renewal_due", "Renewal due soon"
        EXPIRED = "expired", "Authorization expired"
        CONNECTION_TESTED = "connection_tested", "Connection tested"
        CREDENTIALS_INVALID = "credentials_invalid", "App credentials rejected"
        CREDENTIALS_RECOVERED = "credentials_recovered", "App credentials working again"
        SECRET_ROTATED = "secret_rotated", "Client secret rotated"
        SECRET_EXPIRY_NOTICE = "secret_expiry_notice", "Client secret expiry notice"
        REQUIREMENTS_CHANGED = "requirements_changed", "Scope requirements changed"
        REFRESH_REQUESTED = "refresh_requested", "Refresh requested by staff"
        EXPORTED = "exported", "Exported by staff"
        IDENTITY_REVIEW_OPENED = "identity_review_opened", "Held for identity review"
        IDENTITY_REVIEW_APPROVED = "identity_review_approved", "Identity review approved"
        IDENTITY_REVIEW_REJECTED = "identity_review_rejected", "Identity review rejected"
        IDENTITY_REVIEW_EXPIRED = "identity_review_expired", "Identity review expired"
        ACCOUNT_RELEASED = "account_released", "Amazon account released"
        API_KEY_CREATED = "api_key_created", "API key created"
        API_KEY_REVOKED = "api_key_revoked", "API key revoked"
        RDT_CREATED = "rdt_created", "Restricted data token obtained"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="events")
    seller = models.ForeignKey(Seller, on_delete=models.CASCADE, related_name="events", null=True, blank=True)
    kind = models.CharField(max_length=32, choices=Kind.choices, db_index=True)
    detail = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=150, default="system", help_text="system, seller, amazon or staff:<username>.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["seller", "-created_at"], name="event_seller_created_idx"),
            models.Index(fields=["tenant", "-created_at"], name="event_tenant_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.created_at:%Y-%m-%d %H:%M}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise PermissionDenied("History events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionDenied("History events are append-only.")


class IdentityReview(models.Model):
    """A new authorization held back because it could not be shown to be the right account.

    Amazon does not sign the `selling_partner_id` in its redirect, so new tokens may replace a
    grant, or take an id another seller holds, only when SP-API shows the same account behind
    both. Otherwise the tokens are kept here, encrypted and unused, until an owner or manager
    approves (they replace the grant) or rejects (they are discarded), or the review expires.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Waiting for a decision"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"

    class Reason(models.TextChoices):
        CONFLICT = "conflict", "Another Amazon account"
        UNVERIFIED = "unverified", "Could not be verified"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="identity_reviews")
    seller = models.ForeignKey(
        Seller, on_delete=models.CASCADE, related_name="identity_reviews",
        help_text="The seller the new authorization is for.",
    )
    holder = models.ForeignKey(
        Seller, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Another seller holding the same Amazon id, when there is one; it loses the id on approval.",
    )
    invitation = models.ForeignKey(Invitation, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    selling_partner_id = models.CharField(max_length=64)
    region = models.CharField(max_length=2, choices=Region.choices)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.CharField(max_length=500)
    reference_fingerprint = models.JSONField(
        default=dict, blank=True, help_text="The account behind the existing grant, as last seen."
    )
    new_fingerprint = models.JSONField(default=dict, blank=True, help_text="The account behind the new authorization.")
    # The held authorization: encrypted, never used until approved, blanked once decided.
    refresh_token = EncryptedTextField(blank=True)
    access_token = EncryptedTextField(blank=True)
    access_token_expires_at = models.DateTimeField(null=True, blank=True)
    mws_auth_token = EncryptedTextField(blank=True)
    scopes = models.JSONField(null=True, blank=True, help_text="Scopes Amazon named, or null when it named none.")
    requested_scopes = models.JSONField(default=list, blank=True)
    # The grants as they were when the review opened: a decision taken on what staff saw must
    # not overwrite a connection that changed since (a verified renewal, another id).
    seller_grant_version = models.PositiveIntegerField(null=True, blank=True)
    holder_grant_version = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    expires_at = models.DateTimeField(db_index=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "status"], name="identity_review_tenant_status")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="open", decided_at__isnull=True) | ~Q(status="open") & Q(decided_at__isnull=False),
                name="identity_review_decided_when_closed",
            ),
        ]

    def __str__(self) -> str:
        return f"Identity review of {self.selling_partner_id} ({self.get_status_display()})"
