from __future__ import annotations

from django.utils import timezone

from .models import SandboxAuthorization


def sandbox_revoke(*, selling_partner_id: str) -> int:
    """Revoke every sandbox authorization of a seller, as 'Manage Your Apps → Remove' would.

    Its refresh tokens then get invalid_grant and its access tokens 403 Unauthorized.
    """
    return SandboxAuthorization.objects.filter(
        selling_partner_id=selling_partner_id, revoked_at__isnull=True
    ).update(revoked_at=timezone.now())
