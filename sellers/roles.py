"""SP-API's roles: what really decides which SP-API paths an app may call.

An app's roles are chosen when it is registered; a seller's consent covers all of them, and
adding one means every seller consents again. Amazon's token response names none of them, so
spconnect records a tenant's roles (`Tenant.app_roles`) and, when Amazon does not echo scopes,
counts as granted what those roles give (`sellers.scopes.SCOPE_ROLES`).

Source: Amazon's "Roles in the Selling Partner API" and "Role Mappings for SP-API Operations"
(developer-docs.amazon.com/sp-api/docs/role-mappings). The path prefixes each role opens are in
`sellers.scopes.PATH_FAMILIES`, one row per SP-API path family; `role_path_prefixes` lists them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.db import models


class AppRole(models.TextChoices):
    PRODUCT_LISTING = "product_listing", "Product Listing"
    PRICING = "pricing", "Pricing"
    AMAZON_FULFILLMENT = "amazon_fulfillment", "Amazon Fulfillment"
    BUYER_COMMUNICATION = "buyer_communication", "Buyer Communication"
    BUYER_SOLICITATION = "buyer_solicitation", "Buyer Solicitation"
    SELLING_PARTNER_INSIGHTS = "selling_partner_insights", "Selling Partner Insights"
    FINANCE_AND_ACCOUNTING = "finance_and_accounting", "Finance and Accounting"
    INVENTORY_AND_ORDER_TRACKING = "inventory_and_order_tracking", "Inventory and Order Tracking"
    BRAND_ANALYTICS = "brand_analytics", "Brand Analytics"
    AMAZON_WAREHOUSING_AND_DISTRIBUTION = "amazon_warehousing_and_distribution", "Amazon Warehousing and Distribution"
    DIRECT_TO_CONSUMER_SHIPPING = "direct_to_consumer_shipping", "Direct-to-Consumer Shipping (restricted)"
    TAX_INVOICING = "tax_invoicing", "Tax Invoicing (restricted)"
    TAX_REMITTANCE = "tax_remittance", "Tax Remittance (restricted)"


@dataclass(frozen=True)
class RoleInfo:
    role: AppRole
    description: str
    # Restricted roles give access to buyers' personal data (PII); Amazon vets them separately
    # and their personal-data operations also need a restricted data token (RDT).
    restricted: bool = False

    @property
    def label(self) -> str:
        return str(self.role.label)


ROLES: dict[str, RoleInfo] = {
    info.role.value: info
    for info in (
        RoleInfo(AppRole.PRODUCT_LISTING, "Create and manage product listings: catalog, listings, product types, A+ content."),
        RoleInfo(AppRole.PRICING, "Determine list prices and automate product pricing."),
        RoleInfo(AppRole.AMAZON_FULFILLMENT, "Ship to Amazon and have Amazon ship to customers (FBA, multi-channel fulfilment)."),
        RoleInfo(AppRole.BUYER_COMMUNICATION, "Send buyers messages about their orders."),
        RoleInfo(AppRole.BUYER_SOLICITATION, "Ask buyers for product reviews and seller feedback."),
        RoleInfo(AppRole.SELLING_PARTNER_INSIGHTS, "Read the seller's account performance and marketplace participation."),
        RoleInfo(AppRole.FINANCE_AND_ACCOUNTING, "Read financial events, settlements and account information."),
        RoleInfo(AppRole.INVENTORY_AND_ORDER_TRACKING, "Track inventory and orders, confirm shipments."),
        RoleInfo(AppRole.BRAND_ANALYTICS, "Brand Analytics reports, A+ content and customer insights for brand owners."),
        RoleInfo(AppRole.AMAZON_WAREHOUSING_AND_DISTRIBUTION, "Inbound shipments and inventory at Amazon Warehousing and Distribution."),
        RoleInfo(
            AppRole.DIRECT_TO_CONSUMER_SHIPPING,
            "Ship orders to customers: buyers' names and addresses, shipping labels, Easy Ship, merchant fulfilment.",
            restricted=True,
        ),
        RoleInfo(AppRole.TAX_INVOICING, "Issue tax invoices: buyers' tax information and billing addresses.", restricted=True),
        RoleInfo(AppRole.TAX_REMITTANCE, "Remit taxes: buyers' tax addresses on orders.", restricted=True),
    )
}

RESTRICTED_ROLES: frozenset[str] = frozenset(r for r, info in ROLES.items() if info.restricted)

# Amazon's role tables list the same eleven roles for operations every seller app needs
# (getOrders, getMyFeesEstimate, getOrderMetrics, notification subscriptions).
ALL_ELEVEN: frozenset[str] = frozenset(
    r.value
    for r in (
        AppRole.AMAZON_FULFILLMENT, AppRole.BUYER_COMMUNICATION, AppRole.BUYER_SOLICITATION,
        AppRole.DIRECT_TO_CONSUMER_SHIPPING, AppRole.FINANCE_AND_ACCOUNTING, AppRole.INVENTORY_AND_ORDER_TRACKING,
        AppRole.PRICING, AppRole.PRODUCT_LISTING, AppRole.SELLING_PARTNER_INSIGHTS, AppRole.TAX_INVOICING,
        AppRole.TAX_REMITTANCE,
    )
)
ANY_ROLE: frozenset[str] = frozenset(ROLES)


def clean_roles(roles: Iterable[str] | None) -> list[str]:
    """Known roles only, in catalog order: what a tenant may record."""
    wanted = set(roles or [])
    return [r for r in ROLES if r in wanted]


def role_labels(roles: Iterable[str]) -> list[str]:
    return [ROLES[r].label for r in clean_roles(roles)]


def role_path_prefixes(role: str) -> list[str]:
    """The SP-API path prefixes this role opens (any one listed role suffices for a path)."""
    from .scopes import PATH_FAMILIES  # scopes imports this module for the role names

    return [family.prefix for family in PATH_FAMILIES if role in family.roles]
