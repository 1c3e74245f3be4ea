"""Every LWA token request made on a tenant's behalf goes through `tenant_lwa_call`.

It picks the app's client secret, falls back to the previous secret during a rotation (Amazon
keeps both valid until the old one's expiry), and is where an `invalid_client` answer is
recognised as the tenant's problem rather than a seller's.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from sellers import amazon
from sellers.models import Tenant


class MissingClientSecret(amazon.LwaInvalidClient):
    pass


@sensitive_variables("secrets_to_try", "secret")
def tenant_lwa_call(*, tenant: Tenant, call: Callable[[str], amazon.TokenResponse]) -> amazon.TokenResponse:
    """Run `call(client_secret)` with the current secret, then the unexpired previous one."""
    secrets_to_try = []
    if tenant.client_secret:
        secrets_to_try.append(tenant.client_secret)
    if tenant.previous_client_secret and (
        tenant.previous_client_secret_expires_at is None or tenant.previous_client_secret_expires_at > timezone.now()
    ):
        secrets_to_try.append(tenant.previous_client_secret)
    if not secrets_to_try:
        raise MissingClientSecret("invalid_client", "The app has no client secret configured.")
    last_error: amazon.LwaInvalidClient | None = None
    for secret in secrets_to_try:
        try:
            return call(secret)
        except amazon.LwaInvalidClient as exc:
            last_error = exc
    assert last_error is not None
    raise last_error
