"""Django admin for agency staff, scoped to their tenants.

One module per concern: `base` (TenantScopedAdmin, which every admin builds on, and the secret
columns pages never read), `filters`, `sellers` (the list and the seller's page) with
`seller_actions`, `events` (the history), `tenants` (app registration, secrets, required
scopes, members), `reviews` (identity reviews) and `superusers` (Django's and django-q2's own
admins, for superusers only). Importing them registers their admins: Django's autodiscovery
imports this package only.

The names below were this module's before it became a package; code importing them from
`sellers.admin` keeps working. A constant is read in its own module: patch it there
(`sellers.admin.seller_actions.MAX_CONNECTION_TESTS`), not here.
"""

from django.contrib import admin

from sellers.admin import events, reviews, sellers, superusers, tenants  # noqa: F401  (registers the admins)
from sellers.admin.base import (
    DB_ID_MAX,
    GRANT_SECRET_FIELDS,
    UNDECRYPTABLE_NOTE,
    TenantScopedAdmin,
    db_id,
)
from sellers.admin.events import EventAdmin
from sellers.admin.filters import RenewalDueFilter, ScopeGrantedFilter, ScopeMissingFilter, TenantFilter, tenant_filter_for
from sellers.admin.reviews import IdentityReviewAdmin
from sellers.admin.seller_actions import MARKETPLACE_PATH, MAX_CONNECTION_TESTS, MAX_INLINE_REFRESHES, SellerActionsAdmin
from sellers.admin.sellers import EventInline, SellerAddForm, SellerAdmin, SellerChangeList
from sellers.admin.tenants import (
    HttpsURLField,
    MembershipFormSet,
    MembershipInline,
    OwnerOnlyInline,
    ScopeRequirementInline,
    TenantAdmin,
    TenantForm,
)

admin.site.site_header = "spconnect"
admin.site.site_title = "spconnect admin"
admin.site.index_title = "Sellers, grants and history"

__all__ = [
    "DB_ID_MAX",
    "GRANT_SECRET_FIELDS",
    "MARKETPLACE_PATH",
    "MAX_CONNECTION_TESTS",
    "MAX_INLINE_REFRESHES",
    "UNDECRYPTABLE_NOTE",
    "EventAdmin",
    "EventInline",
    "HttpsURLField",
    "IdentityReviewAdmin",
    "MembershipFormSet",
    "MembershipInline",
    "OwnerOnlyInline",
    "RenewalDueFilter",
    "ScopeGrantedFilter",
    "ScopeMissingFilter",
    "ScopeRequirementInline",
    "SellerActionsAdmin",
    "SellerAddForm",
    "SellerAdmin",
    "SellerChangeList",
    "TenantAdmin",
    "TenantFilter",
    "TenantForm",
    "TenantScopedAdmin",
    "db_id",
    "tenant_filter_for",
]
