"""The scope catalog, and which scope and roles every SP-API path family needs.

The seed's model: an app asks for scopes in the consent URL and the token response echoes the
granted ones. Real Amazon fixes an app's permissions by the roles chosen at registration and
echoes nothing; spconnect then counts as granted what the tenant's recorded roles give
(`SCOPE_ROLES`), marked "from the app's registration" rather than "confirmed by Amazon".

`PATH_FAMILIES` maps every SP-API path family (one or more per API section of Amazon's published
models) to a scope of the document, or to "any authorized seller", or to "grantless", and to the
roles that open it (from Amazon's "Role Mappings for SP-API Operations"; any one listed role
suffices). A path no family covers is refused before any call (`UnmappedPath`): spconnect cannot
tell which permission it needs, so it does not guess that any grant may call it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .roles import ALL_ELEVEN, ANY_ROLE, AppRole, clean_roles

ORDERS = "sellingpartnerapi::orders"
INVENTORY = "sellingpartnerapi::inventory"
PRODUCTS = "sellingpartnerapi::products"
REPORTS = "sellingpartnerapi::reports"
SHIPPING = "sellingpartnerapi::shipping"
FINANCE = "sellingpartnerapi::finance"
NOTIFICATIONS = "sellingpartnerapi::notifications"

# Not scopes: what a path family needs instead of one.
ANY_AUTHORIZED_SELLER = "any authorized seller"  # any grant of the seller, whatever its scopes
GRANTLESS = "grantless"  # the app's own client_credentials token, never a seller's grant

_R = AppRole


def _roles(*roles: AppRole) -> frozenset[str]:
    return frozenset(r.value for r in roles)


@dataclass(frozen=True)
class Scope:
    name: str
    label: str
    description: str
    # The roles that give this scope: any one of them opens the scope's main operations. Used
    # when Amazon does not echo scopes: "granted" then means "the app's roles give it".
    roles: frozenset[str]

    @property
    def path_prefixes(self) -> tuple[str, ...]:
        return tuple(f.prefix for f in PATH_FAMILIES if f.scope == self.name)


# Reports: every role but the two buyer-contact ones, plus Brand Analytics (report types are gated too).
_REPORTS_ROLES = (ALL_ELEVEN - _roles(_R.BUYER_COMMUNICATION, _R.BUYER_SOLICITATION)) | _roles(_R.BRAND_ANALYTICS)

CATALOG: dict[str, Scope] = {
    s.name: s
    for s in (
        Scope(ORDERS, "Orders", "Read order data: order items, buyers' shipping details, order status.", ALL_ELEVEN),
        Scope(
            INVENTORY,
            "Inventory",
            "Retrieve and manage inventory levels, including Fulfillment by Amazon stock.",
            _roles(_R.AMAZON_FULFILLMENT, _R.PRODUCT_LISTING),
        ),
        Scope(PRODUCTS, "Products", "Read catalog items, listings, product pricing and fees.", _roles(_R.PRODUCT_LISTING)),
        Scope(REPORTS, "Reports", "Request, schedule and download reports.", _REPORTS_ROLES),
        Scope(
            SHIPPING,
            "Shipping",
            "Manage shipping settings and fulfil orders (shipping labels, merchant fulfillment).",
            _roles(_R.DIRECT_TO_CONSUMER_SHIPPING),
        ),
        Scope(
            FINANCE,
            "Finance",
            "Read financial data such as invoices, settlements and financial events.",
            _roles(_R.FINANCE_AND_ACCOUNTING),
        ),
        Scope(
            NOTIFICATIONS,
            "Notifications",
            "Subscribe to and receive notifications about the seller's account.",
            ALL_ELEVEN,
        ),
    )
}

SCOPE_CHOICES = [(s.name, s.label) for s in CATALOG.values()]
SCOPE_ROLES: dict[str, frozenset[str]] = {name: s.roles for name, s in CATALOG.items()}


@dataclass(frozen=True)
class PathFamily:
    """SP-API paths starting with `prefix` (`{}` stands for one path segment, such as an id)."""

    prefix: str
    api: str  # the API section of Amazon's models
    scope: str  # a scope of CATALOG, ANY_AUTHORIZED_SELLER or GRANTLESS
    roles: frozenset[str]  # any one opens the family; empty for grantless operations
    # Some operations return buyers' personal data: they need a restricted role and a restricted
    # data token (RDT) from /tokens/2021-03-01/restrictedDataToken instead of the access token.
    restricted_data: bool = False
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [re.escape(part) for part in self.prefix.split("{}")]
        object.__setattr__(self, "pattern", re.compile("^" + "[^/]+".join(parts)))

    @property
    def grantless(self) -> bool:
        return self.scope == GRANTLESS


_AF, _AWD, _BA = _R.AMAZON_FULFILLMENT, _R.AMAZON_WAREHOUSING_AND_DISTRIBUTION, _R.BRAND_ANALYTICS
_BC, _BS, _DTC = _R.BUYER_COMMUNICATION, _R.BUYER_SOLICITATION, _R.DIRECT_TO_CONSUMER_SHIPPING
_FA, _IOT, _PR = _R.FINANCE_AND_ACCOUNTING, _R.INVENTORY_AND_ORDER_TRACKING, _R.PRICING
_PL, _SPI, _TI = _R.PRODUCT_LISTING, _R.SELLING_PARTNER_INSIGHTS, _R.TAX_INVOICING

_FAMILIES: tuple[PathFamily, ...] = (
    PathFamily("/aplus/2020-11-01/", "A+ Content Management", PRODUCTS, _roles(_BA, _PL)),
    PathFamily("/awd/2024-05-09/", "Amazon Warehousing and Distribution", INVENTORY, _roles(_AWD)),
    PathFamily("/appIntegrations/2024-04-01/", "App Integrations", NOTIFICATIONS, ALL_ELEVEN),
    PathFamily("/applications/2023-11-30/", "Application Management", GRANTLESS, frozenset()),
    PathFamily("/authorization/v1/authorizationCode", "Authorization (MWS migration)", GRANTLESS, frozenset()),
    PathFamily("/catalog/", "Catalog Items, Vehicles", PRODUCTS, _roles(_PL)),
    PathFamily("/customerFeedback/2024-06-01/", "Customer Feedback", PRODUCTS, _roles(_BA)),
    PathFamily("/dataKiosk/2023-11-15/", "Data Kiosk", REPORTS, _roles(_BA, _SPI, _FA)),
    PathFamily("/definitions/2020-09-01/", "Product Type Definitions", PRODUCTS, _roles(_PL)),
    PathFamily("/easyShip/2022-03-23/", "Easy Ship", SHIPPING, _roles(_DTC), restricted_data=True),
    PathFamily("/externalFulfillment/inventory/2024-09-11/", "External Fulfillment Inventory", INVENTORY, _roles(_IOT)),
    PathFamily("/externalFulfillment/2024-09-11/", "External Fulfillment Shipping and Returns", SHIPPING,
               _roles(_DTC, _IOT), restricted_data=True),
    PathFamily("/fba/inbound/v1/eligibility/", "FBA Inbound Eligibility", INVENTORY, _roles(_AF)),
    PathFamily("/fba/inbound/v0/", "Fulfillment Inbound v0", INVENTORY, _roles(_AF)),
    PathFamily("/inbound/fba/2024-03-20/", "Fulfillment Inbound 2024-03-20", INVENTORY, _roles(_AF)),
    PathFamily("/fba/inventory/v1/", "FBA Inventory", INVENTORY, _roles(_AF, _PL)),
    PathFamily("/fba/outbound/2020-07-01/", "Fulfillment Outbound", SHIPPING, _roles(_AF)),
    PathFamily("/fba/outbound/brazil/v0/", "Shipment Invoicing", FINANCE, _roles(_TI), restricted_data=True),
    PathFamily("/feeds/2021-06-30/", "Feeds", PRODUCTS,
               _roles(_AF, _BA, _DTC, _IOT, _PR, _PL, _TI)),
    PathFamily("/finances/v0/", "Finances v0", FINANCE, _roles(_FA)),
    PathFamily("/finances/v0/financialEvents", "Finances v0 (listFinancialEvents)", FINANCE, _roles(_FA, _AF)),
    PathFamily("/finances/v0/orders/{}/financialEvents", "Finances v0 (listFinancialEventsByOrderId)", FINANCE,
               _roles(_FA, _AF)),
    PathFamily("/finances/2024-06-19/", "Finances 2024-06-19", FINANCE, _roles(_FA)),
    PathFamily("/finances/transfers/2024-06-01/", "Transfers", FINANCE, _roles(_FA)),
    PathFamily("/finances/transfers/wallet/2024-03-01/", "Seller Wallet", FINANCE, _roles(_FA)),
    PathFamily("/tax/invoices/2024-06-19/", "Invoices", FINANCE, _roles(_FA)),
    PathFamily("/listings/", "Listings Items, Listings Restrictions", PRODUCTS, _roles(_PL)),
    PathFamily("/mfn/v0/", "Merchant Fulfillment", SHIPPING, _roles(_DTC), restricted_data=True),
    PathFamily("/messaging/v1/", "Messaging", ORDERS, _roles(_BC)),
    PathFamily("/notifications/v1/subscriptions/", "Notifications (subscriptions)", NOTIFICATIONS, ALL_ELEVEN),
    PathFamily("/notifications/v1/destinations", "Notifications (destinations)", GRANTLESS, frozenset()),
    PathFamily("/orders/v0/", "Orders v0", ORDERS, ALL_ELEVEN, restricted_data=True),
    PathFamily("/orders/v0/orders/{}/shipment", "Orders v0 (updateShipmentStatus)", ORDERS, _roles(_IOT)),
    PathFamily("/products/fees/v0/", "Product Fees", PRODUCTS, ALL_ELEVEN),
    PathFamily("/products/pricing/", "Product Pricing", PRODUCTS, _roles(_PR, _PL)),
    PathFamily("/batches/products/pricing/", "Product Pricing (batches)", PRODUCTS, _roles(_PR, _PL)),
    PathFamily("/replenishment/2022-11-07/", "Replenishment", REPORTS, _roles(_BA)),
    PathFamily("/reports/2021-06-30/", "Reports", REPORTS, _REPORTS_ROLES),
    PathFamily("/reports/2021-06-30/documents/", "Reports (documents)", REPORTS, _REPORTS_ROLES,
               restricted_data=True),
    PathFamily("/sales/v1/", "Sales", REPORTS, ALL_ELEVEN),
    PathFamily("/sellers/v1/marketplaceParticipations", "Sellers (getMarketplaceParticipations)",
               ANY_AUTHORIZED_SELLER, _roles(_AF, _BC, _DTC, _FA, _IOT, _PR, _PL, _SPI)),
    PathFamily("/sellers/v1/account", "Sellers (getAccount)", ANY_AUTHORIZED_SELLER, _roles(_FA)),
    PathFamily("/service/v1/", "Services", ORDERS, _roles(_IOT), restricted_data=True),
    PathFamily("/shipping/v1/", "Shipping v1", SHIPPING, _roles(_DTC)),
    PathFamily("/shipping/v2/", "Shipping v2 (Amazon Shipping)", SHIPPING, _roles(_DTC), restricted_data=True),
    PathFamily("/solicitations/v1/", "Solicitations", ORDERS, _roles(_BS, _PL)),
    PathFamily("/supplySources/2020-07-01/", "Supply Sources", INVENTORY, _roles(_IOT)),
    PathFamily("/tokens/2021-03-01/restrictedDataToken", "Tokens", ANY_AUTHORIZED_SELLER, ANY_ROLE),
    PathFamily("/uploads/2020-11-01/", "Uploads", PRODUCTS, _roles(_PL)),
    PathFamily("/vendor/orders/v1/", "Vendor Orders", ORDERS, _roles(_AF, _IOT)),
    PathFamily("/vendor/shipping/v1/", "Vendor Shipments", SHIPPING, _roles(_AF, _IOT)),
    PathFamily("/vendor/transactions/v1/", "Vendor Transaction Status", ORDERS, _roles(_AF, _IOT)),
    PathFamily("/vendor/payments/v1/", "Vendor Invoices", FINANCE, _roles(_AF, _IOT)),
    PathFamily("/vendor/directFulfillment/orders/", "Vendor Direct Fulfillment Orders", ORDERS, _roles(_DTC),
               restricted_data=True),
    PathFamily("/vendor/directFulfillment/shipping/", "Vendor Direct Fulfillment Shipping", SHIPPING, _roles(_DTC),
               restricted_data=True),
    PathFamily("/vendor/directFulfillment/payments/", "Vendor Direct Fulfillment Payments", FINANCE, _roles(_DTC)),
    PathFamily("/vendor/directFulfillment/inventory/", "Vendor Direct Fulfillment Inventory", INVENTORY,
               _roles(_DTC)),
    PathFamily("/vendor/directFulfillment/transactions/", "Vendor Direct Fulfillment Transactions", ORDERS,
               _roles(_DTC)),
    PathFamily("/vendor/directFulfillment/sandbox/", "Vendor Direct Fulfillment Sandbox Test Data", ORDERS,
               _roles(_DTC)),
)

# Most specific first: the longest prefix that matches a path decides.
PATH_FAMILIES: tuple[PathFamily, ...] = tuple(sorted(_FAMILIES, key=lambda f: len(f.prefix), reverse=True))


class UnmappedPath(ValueError):
    """A path no family of PATH_FAMILIES covers: which permission it needs is unknown."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(
            f"{path[:100]} is not in spconnect's map of SP-API paths (sellers/scopes.py), so the permission it "
            "needs is unknown; it is refused rather than assumed open to any grant."
        )


class GrantlessPath(UnmappedPath):
    """A grantless operation: the app's own token calls it, never a seller's grant."""

    def __init__(self, path: str):
        self.path = path
        ValueError.__init__(
            self,
            f"{path[:100]} is a grantless operation: it is called with the app's client_credentials token, "
            "never with a seller's grant.",
        )


class InvalidScope(ValueError):
    """Raised for a scope outside the catalog, with the seed's `invalid_scope` wording."""

    code = "invalid_scope"

    def __init__(self, scopes: Iterable[str]):
        self.scopes = sorted(set(scopes))
        super().__init__(
            "invalid_scope: The requested scope is invalid or not available "
            f"({', '.join(self.scopes)}). Check if the scope is correctly specified."
        )


def validate_scopes(scopes: Iterable[str]) -> list[str]:
    """Return the scopes in catalog order, or raise InvalidScope naming the unknown ones."""
    wanted = list(scopes)
    unknown = [s for s in wanted if s not in CATALOG]
    if unknown:
        raise InvalidScope(unknown)
    wanted_set = set(wanted)
    return [name for name in CATALOG if name in wanted_set]


def parse_scope_string(value: str | None) -> list[str]:
    """Split a space-separated scope string (as in the consent URL and token response)."""
    if not value:
        return []
    return [part for part in value.split() if part]


def path_family(path: str) -> PathFamily | None:
    """The most specific family covering an SP-API path, or None when none does."""
    for family in PATH_FAMILIES:
        if family.pattern.match(path):
            return family
    return None


def scope_for_path(path: str) -> str | None:
    """The scope an SP-API path needs; None when any authorized seller may call it.

    Raises UnmappedPath for a path outside every family, and for a grantless one (a seller's
    grant never calls those: they take the app's own client_credentials token).
    """
    family = path_family(path)
    if family is None or family.grantless:
        raise UnmappedPath(path) if family is None else GrantlessPath(path)
    return None if family.scope == ANY_AUTHORIZED_SELLER else family.scope


def scopes_given_by_roles(roles: Iterable[str]) -> list[str]:
    """The scopes an app's roles give, in catalog order (any one role of SCOPE_ROLES suffices)."""
    have = set(roles or [])
    return [name for name, needed in SCOPE_ROLES.items() if needed & have]


def roles_for_scope(scope: str) -> list[str]:
    """The roles that give a scope, in the role catalog's order."""
    return clean_roles(SCOPE_ROLES.get(scope, frozenset()))


def short_name(scope: str) -> str:
    """`sellingpartnerapi::orders` -> `orders`, for chips and CSV cells."""
    return scope.split("::", 1)[-1]
