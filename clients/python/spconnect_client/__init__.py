"""Python client for spconnect's agency API.

    from spconnect_client import Client
    client = Client(base_url="https://spconnect.example.com", api_key="…")
    for connection in client.list_connections(status="active"):
        token = client.get_access_token(connection.id)
    orders = client.proxy(connection.id, "GET", "/orders/v0/orders", params={"MarketplaceIds": "ATVPDKIKX0DER"})

`sp_api_auth()` plugs spconnect's tokens into python-amazon-sp-api (`pip install
'spconnect-client[sp-api]'`).
"""

__version__ = "0.1.0"

from .client import Client
from .errors import (
    ApiError,
    AppCredentialsRejected,
    GrantlessNotAvailable,
    GrantlessRefused,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PathNotAllowed,
    PermissionDenied,
    RateLimited,
    RdtRefused,
    ReauthorizationRequired,
    ScopeNotGranted,
    SpapiUnreachable,
    SpconnectError,
    TokenUnavailable,
    TransportError,
    Unauthorized,
)
from .models import (
    AccessToken,
    Connection,
    ConnectionPage,
    GrantlessToken,
    Invitation,
    ProxyResponse,
    ReauthorizationLink,
    RestrictedDataToken,
)
from .sp_api import SP_API_CREDENTIALS, SpApiAuth, TokenCache, sp_api_auth

__all__ = [
    "SP_API_CREDENTIALS",
    "AccessToken",
    "ApiError",
    "AppCredentialsRejected",
    "Client",
    "Connection",
    "ConnectionPage",
    "GrantlessNotAvailable",
    "GrantlessRefused",
    "GrantlessToken",
    "IdempotencyConflict",
    "InvalidRequest",
    "Invitation",
    "NotFound",
    "PathNotAllowed",
    "PermissionDenied",
    "ProxyResponse",
    "RateLimited",
    "RdtRefused",
    "ReauthorizationLink",
    "ReauthorizationRequired",
    "RestrictedDataToken",
    "ScopeNotGranted",
    "SpApiAuth",
    "SpapiUnreachable",
    "SpconnectError",
    "TokenCache",
    "TokenUnavailable",
    "TransportError",
    "Unauthorized",
    "sp_api_auth",
]
