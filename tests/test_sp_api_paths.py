"""Every SP-API path family is mapped on purpose: to a scope of the document and the roles that
open it, to "any authorized seller", or to "grantless". The paths below are real operations, one
or more per API section of Amazon's published models (github.com/amzn/selling-partner-api-models),
with Amazon's role-mapping documentation as the source for the roles."""

from __future__ import annotations

import pytest

from sellers.roles import ALL_ELEVEN, RESTRICTED_ROLES, ROLES, AppRole, clean_roles, role_path_prefixes
from sellers.scopes import (
    ANY_AUTHORIZED_SELLER,
    CATALOG,
    FINANCE,
    GRANTLESS,
    INVENTORY,
    NOTIFICATIONS,
    ORDERS,
    PATH_FAMILIES,
    PRODUCTS,
    REPORTS,
    SHIPPING,
    UnmappedPath,
    path_family,
    roles_for_scope,
    scope_for_path,
    scopes_given_by_roles,
)

# (API section, operation, a real path of it, the scope or kind it needs)
OPERATIONS = [
    ("A+ Content Management 2020-11-01", "searchContentDocuments", "/aplus/2020-11-01/contentDocuments", PRODUCTS),
    ("Amazon Warehousing and Distribution 2024-05-09", "listInventory", "/awd/2024-05-09/inventory", INVENTORY),
    ("App Integrations 2024-04-01", "createNotification", "/appIntegrations/2024-04-01/notifications", NOTIFICATIONS),
    ("Application Management 2023-11-30", "rotateApplicationClientSecret", "/applications/2023-11-30/clientSecret", GRANTLESS),
    ("Authorization v1", "getAuthorizationCode", "/authorization/v1/authorizationCode", GRANTLESS),
    ("Catalog Items 2022-04-01", "getCatalogItem", "/catalog/2022-04-01/items/B000123456", PRODUCTS),
    ("Catalog Items v0", "listCatalogCategories", "/catalog/v0/categories", PRODUCTS),
    ("Vehicles 2024-11-01", "getVehicles", "/catalog/2024-11-01/automotive/vehicles", PRODUCTS),
    ("Customer Feedback 2024-06-01", "getItemReviewTopics", "/customerFeedback/2024-06-01/items/B000123456/reviews/topics", PRODUCTS),
    ("Data Kiosk 2023-11-15", "createQuery", "/dataKiosk/2023-11-15/queries", REPORTS),
    ("Easy Ship 2022-03-23", "listHandoverSlots", "/easyShip/2022-03-23/timeSlot", SHIPPING),
    ("External Fulfillment Inventory 2024-09-11", "batchInventory", "/externalFulfillment/inventory/2024-09-11/inventories", INVENTORY),
    ("External Fulfillment Shipping 2024-09-11", "getShipments", "/externalFulfillment/2024-09-11/shipments", SHIPPING),
    ("External Fulfillment Returns 2024-09-11", "listReturns", "/externalFulfillment/2024-09-11/returns", SHIPPING),
    ("FBA Inbound Eligibility v1", "getItemEligibilityPreview", "/fba/inbound/v1/eligibility/itemPreview", INVENTORY),
    ("FBA Inventory v1", "getInventorySummaries", "/fba/inventory/v1/summaries", INVENTORY),
    ("Feeds 2021-06-30", "createFeed", "/feeds/2021-06-30/feeds", PRODUCTS),
    ("Finances v0", "listFinancialEventGroups", "/finances/v0/financialEventGroups", FINANCE),
    ("Finances v0", "listFinancialEvents", "/finances/v0/financialEvents", FINANCE),
    ("Finances v0", "listFinancialEventsByOrderId", "/finances/v0/orders/902-1234567-1234567/financialEvents", FINANCE),
    ("Finances 2024-06-19", "listTransactions", "/finances/2024-06-19/transactions", FINANCE),
    ("Transfers 2024-06-01", "getPaymentMethods", "/finances/transfers/2024-06-01/paymentMethods", FINANCE),
    ("Seller Wallet 2024-03-01", "listAccounts", "/finances/transfers/wallet/2024-03-01/accounts", FINANCE),
    ("Invoices 2024-06-19", "getInvoices", "/tax/invoices/2024-06-19/invoices", FINANCE),
    ("Fulfillment Inbound v0", "getLabels", "/fba/inbound/v0/shipments/FBA15DJ9SVVD/labels", INVENTORY),
    ("Fulfillment Inbound 2024-03-20", "listInboundPlans", "/inbound/fba/2024-03-20/inboundPlans", INVENTORY),
    ("Fulfillment Outbound 2020-07-01", "listAllFulfillmentOrders", "/fba/outbound/2020-07-01/fulfillmentOrders", SHIPPING),
    ("Shipment Invoicing v0", "getShipmentDetails", "/fba/outbound/brazil/v0/shipments/1234", FINANCE),
    ("Listings Items 2021-08-01", "getListingsItem", "/listings/2021-08-01/items/A1SELLER/SKU-1", PRODUCTS),
    ("Listings Restrictions 2021-08-01", "getListingsRestrictions", "/listings/2021-08-01/restrictions", PRODUCTS),
    ("Merchant Fulfillment v0", "getShipment", "/mfn/v0/shipments/abc123", SHIPPING),
    ("Messaging v1", "getMessagingActionsForOrder", "/messaging/v1/orders/902-1234567-1234567", ORDERS),
    ("Notifications v1", "getSubscription", "/notifications/v1/subscriptions/ANY_OFFER_CHANGED", NOTIFICATIONS),
    ("Notifications v1", "createDestination", "/notifications/v1/destinations", GRANTLESS),
    ("Orders v0", "getOrders", "/orders/v0/orders", ORDERS),
    ("Orders v0", "getOrderAddress", "/orders/v0/orders/902-1234567-1234567/address", ORDERS),
    ("Orders v0", "updateShipmentStatus", "/orders/v0/orders/902-1234567-1234567/shipment", ORDERS),
    ("Product Fees v0", "getMyFeesEstimateForSKU", "/products/fees/v0/listings/SKU-1/feesEstimate", PRODUCTS),
    ("Product Pricing v0", "getPricing", "/products/pricing/v0/price", PRODUCTS),
    ("Product Pricing 2022-05-01", "getFeaturedOfferExpectedPriceBatch",
     "/batches/products/pricing/2022-05-01/offer/featuredOfferExpectedPrice", PRODUCTS),
    ("Product Type Definitions 2020-09-01", "searchDefinitionsProductTypes", "/definitions/2020-09-01/productTypes", PRODUCTS),
    ("Replenishment 2022-11-07", "getSellingPartnerMetrics", "/replenishment/2022-11-07/sellingPartners/metrics/search", REPORTS),
    ("Reports 2021-06-30", "getReports", "/reports/2021-06-30/reports", REPORTS),
    ("Reports 2021-06-30", "getReportDocument", "/reports/2021-06-30/documents/amzn1.doc.1", REPORTS),
    ("Sales v1", "getOrderMetrics", "/sales/v1/orderMetrics", REPORTS),
    ("Sellers v1", "getMarketplaceParticipations", "/sellers/v1/marketplaceParticipations", ANY_AUTHORIZED_SELLER),
    ("Sellers v1", "getAccount", "/sellers/v1/account", ANY_AUTHORIZED_SELLER),
    ("Services v1", "getServiceJobs", "/service/v1/serviceJobs", ORDERS),
    ("Shipping v1", "getRates", "/shipping/v1/rates", SHIPPING),
    ("Shipping v2", "getRates", "/shipping/v2/shipments/rates", SHIPPING),
    ("Solicitations v1", "createProductReviewAndSellerFeedbackSolicitation",
     "/solicitations/v1/orders/902-1234567-1234567/solicitations/productReviewAndSellerFeedback", ORDERS),
    ("Supply Sources 2020-07-01", "getSupplySources", "/supplySources/2020-07-01/supplySources", INVENTORY),
    ("Tokens 2021-03-01", "createRestrictedDataToken", "/tokens/2021-03-01/restrictedDataToken", ANY_AUTHORIZED_SELLER),
    ("Uploads 2020-11-01", "createUploadDestinationForResource",
     "/uploads/2020-11-01/uploadDestinations/aplus/2020-11-01/contentDocuments", PRODUCTS),
    ("Vendor Orders v1", "getPurchaseOrders", "/vendor/orders/v1/purchaseOrders", ORDERS),
    ("Vendor Shipments v1", "submitShipmentConfirmations", "/vendor/shipping/v1/shipmentConfirmations", SHIPPING),
    ("Vendor Transaction Status v1", "getTransaction", "/vendor/transactions/v1/transactions/tx-1", ORDERS),
    ("Vendor Invoices v1", "submitInvoices", "/vendor/payments/v1/invoices", FINANCE),
    ("Vendor Direct Fulfillment Orders 2021-12-28", "getOrders", "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders", ORDERS),
    ("Vendor Direct Fulfillment Shipping 2021-12-28", "getShippingLabels",
     "/vendor/directFulfillment/shipping/2021-12-28/shippingLabels", SHIPPING),
    ("Vendor Direct Fulfillment Payments v1", "submitInvoice", "/vendor/directFulfillment/payments/v1/invoices", FINANCE),
    ("Vendor Direct Fulfillment Inventory v1", "submitInventoryUpdate",
     "/vendor/directFulfillment/inventory/v1/warehouses/W1/items", INVENTORY),
    ("Vendor Direct Fulfillment Transactions 2021-12-28", "getTransactionStatus",
     "/vendor/directFulfillment/transactions/2021-12-28/transactions/tx-1", ORDERS),
    ("Vendor Direct Fulfillment Sandbox Test Data 2021-10-28", "generateOrderScenarios",
     "/vendor/directFulfillment/sandbox/2021-10-28/orders", ORDERS),
]

R = AppRole


@pytest.mark.parametrize("api,operation,path,needs", OPERATIONS, ids=[f"{a}:{o}" for a, o, _, _ in OPERATIONS])
def test_every_real_operation_maps_to_something_deliberate(api, operation, path, needs):
    family = path_family(path)
    assert family is not None, f"{api} {operation} ({path}) falls through the map"
    assert family.scope == needs
    assert family.scope in CATALOG or family.scope in (ANY_AUTHORIZED_SELLER, GRANTLESS)
    if family.grantless:
        assert family.roles == frozenset()
        with pytest.raises(UnmappedPath, match="grantless"):
            scope_for_path(path)
    else:
        # Some role opens it, and only roles of the catalog: nothing is "any grant may call it".
        assert family.roles and family.roles <= set(ROLES)
        assert scope_for_path(path) == (None if needs == ANY_AUTHORIZED_SELLER else needs)


def test_every_family_is_exercised_by_a_real_operation():
    used = {path_family(path) for _, _, path, _ in OPERATIONS}
    unused = [f.prefix for f in PATH_FAMILIES if f not in used]
    assert unused == []


@pytest.mark.parametrize("path", ["/ordersX/v0/orders", "/", "/sellers/v2/marketplaceParticipations", "/fba/smallAndLight/v1/items"])
def test_unknown_paths_fail_closed(path):
    assert path_family(path) is None
    with pytest.raises(UnmappedPath, match="refused rather than assumed open"):
        scope_for_path(path)


@pytest.mark.parametrize(
    "path,roles",
    [
        # The per-operation exceptions of Amazon's tables win over their API's family.
        ("/orders/v0/orders/902-1234567-1234567/shipment", {R.INVENTORY_AND_ORDER_TRACKING}),
        ("/orders/v0/orders/902-1234567-1234567", ALL_ELEVEN),
        ("/finances/v0/financialEvents", {R.FINANCE_AND_ACCOUNTING, R.AMAZON_FULFILLMENT}),
        ("/finances/v0/financialEventGroups", {R.FINANCE_AND_ACCOUNTING}),
        ("/sellers/v1/account", {R.FINANCE_AND_ACCOUNTING}),
        ("/aplus/2020-11-01/contentDocuments", {R.BRAND_ANALYTICS, R.PRODUCT_LISTING}),
        ("/awd/2024-05-09/inventory", {R.AMAZON_WAREHOUSING_AND_DISTRIBUTION}),
        ("/solicitations/v1/orders/1/solicitations", {R.BUYER_SOLICITATION, R.PRODUCT_LISTING}),
        ("/messaging/v1/orders/1", {R.BUYER_COMMUNICATION}),
        ("/vendor/orders/v1/purchaseOrders", {R.AMAZON_FULFILLMENT, R.INVENTORY_AND_ORDER_TRACKING}),
        ("/tokens/2021-03-01/restrictedDataToken", set(ROLES)),
    ],
)
def test_role_mapping_follows_amazons_tables(path, roles):
    family = path_family(path)
    assert family is not None and family.roles == {str(r) for r in roles}


def test_market_participations_need_one_of_eight_roles_not_brand_analytics():
    family = path_family("/sellers/v1/marketplaceParticipations")
    assert family is not None
    assert R.BRAND_ANALYTICS not in family.roles and R.BUYER_SOLICITATION not in family.roles
    assert len(family.roles) == 8


def test_the_catalog_has_amazons_thirteen_roles_three_restricted():
    assert [ROLES[r].label for r in ROLES] == [
        "Product Listing", "Pricing", "Amazon Fulfillment", "Buyer Communication", "Buyer Solicitation",
        "Selling Partner Insights", "Finance and Accounting", "Inventory and Order Tracking", "Brand Analytics",
        "Amazon Warehousing and Distribution", "Direct-to-Consumer Shipping (restricted)", "Tax Invoicing (restricted)",
        "Tax Remittance (restricted)",
    ]
    assert RESTRICTED_ROLES == {R.DIRECT_TO_CONSUMER_SHIPPING, R.TAX_INVOICING, R.TAX_REMITTANCE}
    assert all(info.description for info in ROLES.values())


def test_personal_data_families_are_marked_for_a_restricted_data_token():
    marked = {f.prefix for f in PATH_FAMILIES if f.restricted_data}
    for path in ("/orders/v0/orders/1/address", "/mfn/v0/shipments/1", "/reports/2021-06-30/documents/d1",
                 "/vendor/directFulfillment/orders/2021-12-28/purchaseOrders",
                 "/vendor/directFulfillment/shipping/2021-12-28/shippingLabels"):
        family = path_family(path)
        assert family is not None and family.prefix in marked, path
    for path in ("/fba/inventory/v1/summaries", "/catalog/2022-04-01/items", "/sellers/v1/marketplaceParticipations"):
        family = path_family(path)
        assert family is not None and not family.restricted_data, path


def test_each_scope_is_given_by_roles_that_open_its_families():
    for name, scope in CATALOG.items():
        assert scope.roles, name
        assert scope.path_prefixes, name
        # Every role said to give the scope opens at least one of the scope's families.
        for role in scope.roles:
            assert set(role_path_prefixes(role)) & set(scope.path_prefixes), (name, role)


def test_scopes_given_by_roles_and_the_roles_a_scope_needs():
    assert scopes_given_by_roles([R.FINANCE_AND_ACCOUNTING]) == [ORDERS, REPORTS, FINANCE, NOTIFICATIONS]
    assert scopes_given_by_roles([R.BRAND_ANALYTICS]) == [REPORTS]
    assert scopes_given_by_roles([R.AMAZON_FULFILLMENT]) == [ORDERS, INVENTORY, REPORTS, NOTIFICATIONS]
    assert scopes_given_by_roles([]) == []
    assert scopes_given_by_roles(["no_such_role"]) == []
    assert roles_for_scope(FINANCE) == [R.FINANCE_AND_ACCOUNTING]
    assert roles_for_scope(INVENTORY) == [R.PRODUCT_LISTING, R.AMAZON_FULFILLMENT]
    assert clean_roles(["pricing", "bogus", "product_listing"]) == ["product_listing", "pricing"]


def test_the_architecture_document_lists_every_family():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    missing = [f.prefix for f in PATH_FAMILIES if f"| `{f.prefix}` |" not in doc]
    assert missing == []
