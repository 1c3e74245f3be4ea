"""The scope catalog: every SP-API permission spconnect knows, what it means, what it unlocks.

The seed's model: an app asks for scopes in the consent URL and the token response echoes the
granted ones. Real Amazon fixes an app's permissions by the roles chosen at registration and
echoes nothing; spconnect then assumes the tenant's registered scopes, marked unconfirmed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    name: str
    label: str
    description: str
    path_prefixes: tuple[str, ...]


CATALOG: dict[str, Scope] = {
    s.name: s
    for s in (
        Scope(
            "sellingpartnerapi::orders",
            "Orders",
            "Read order data: order items, buyers' shipping details, order status.",
            ("/orders/",),
        ),
        Scope(
            "sellingpartnerapi::inventory",
            "Inventory",
            "Retrieve and manage inventory levels, including Fulfillment by Amazon stock.",
            ("/fba/inventory/",),
        ),
        Scope(
            "sellingpartnerapi::products",
            "Products",
            "Read catalog items, listings, product pricing and fees.",
            ("/catalog/", "/listings/", "/products/"),
        ),
        Scope(
            "sellingpartnerapi::reports",
            "Reports",
            "Request, schedule and download reports.",
            ("/reports/",),
        ),
        Scope(
            "sellingpartnerapi::shipping",
            "Shipping",
            "Manage shipping settings and fulfil orders (shipping labels, merchant fulfillment).",
            ("/shipping/", "/mfn/", "/fba/outbound/"),
        ),
        Scope(
            "sellingpartnerapi::finance",
            "Finance",
            "Read financial data such as invoices, settlements and financial events.",
            ("/finances/",),
        ),
        Scope(
            "sellingpartnerapi::notifications",
            "Notifications",
            "Subscribe to and receive notifications about the seller's account.",
            ("/notifications/",),
        ),
    )
}

SCOPE_CHOICES = [(s.name, s.label) for s in CATALOG.values()]


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


def scope_for_path(path: str) -> str | None:
    """The scope an SP-API path needs, or None when any valid grant may call it."""
    for scope in CATALOG.values():
        if any(path.startswith(prefix) for prefix in scope.path_prefixes):
            return scope.name
    return None


def short_name(scope: str) -> str:
    """`sellingpartnerapi::orders` -> `orders`, for chips and CSV cells."""
    return scope.split("::", 1)[-1]
