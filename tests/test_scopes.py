from __future__ import annotations

import pytest

from sellers.scopes import CATALOG, InvalidScope, UnmappedPath, parse_scope_string, scope_for_path, validate_scopes


def test_catalog_has_the_seven_scopes_of_the_seed():
    assert [s.split("::")[1] for s in CATALOG] == [
        "orders", "inventory", "products", "reports", "shipping", "finance", "notifications"
    ]
    assert all(s.description and s.path_prefixes for s in CATALOG.values())


@pytest.mark.parametrize(
    "path,scope",
    [
        ("/orders/v0/orders", "sellingpartnerapi::orders"),
        ("/fba/inventory/v1/summaries", "sellingpartnerapi::inventory"),
        ("/catalog/2022-04-01/items", "sellingpartnerapi::products"),
        ("/reports/2021-06-30/reports", "sellingpartnerapi::reports"),
        ("/mfn/v0/shipments", "sellingpartnerapi::shipping"),
        ("/finances/v0/financialEventGroups", "sellingpartnerapi::finance"),
        ("/notifications/v1/subscriptions/ANY_OFFER_CHANGED", "sellingpartnerapi::notifications"),
        ("/sellers/v1/marketplaceParticipations", None),
    ],
)
def test_scope_for_path(path, scope):
    assert scope_for_path(path) == scope


@pytest.mark.parametrize("path", ["/ordersX/v0", "/notifications/v1/destinations", "/"])
def test_unknown_and_grantless_paths_are_refused_not_assumed_open(path):
    with pytest.raises(UnmappedPath):
        scope_for_path(path)


def test_validate_scopes_orders_by_catalog_and_refuses_unknown_with_seed_wording():
    assert validate_scopes(["sellingpartnerapi::finance", "sellingpartnerapi::orders"]) == [
        "sellingpartnerapi::orders", "sellingpartnerapi::finance"
    ]
    with pytest.raises(InvalidScope) as info:
        validate_scopes(["sellingpartnerapi::orders", "sellingpartnerapi::everything"])
    assert str(info.value).startswith("invalid_scope: The requested scope is invalid or not available")
    assert "sellingpartnerapi::everything" in str(info.value)


def test_parse_scope_string():
    assert parse_scope_string("  a b\tc ") == ["a", "b", "c"]
    assert parse_scope_string(None) == []
