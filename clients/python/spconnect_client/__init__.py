"""Python client for spconnect's agency API.

    from spconnect_client import Client
    client = Client(base_url="https://spconnect.example.com", api_key="…")
    for connection in client.list_connections(status="active"):
        token = client.get_access_token(connection.id)

`sp_api_auth()` plugs spconnect's tokens into python-amazon-sp-api (`pip install
'spconnect-client[sp-api]'`).
"""

__version__ = "0.1.0"

from .client import Client
from .errors import (
    ApiError,
    AppCredentialsRejected,
    GrantlessNotAvailable,
    IdempotencyConflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    ReauthorizationRequired,
    SpconnectError,
    TokenUnavailable,
    TransportError,
    Unauthorized,
)
from .models import AccessToken, Connection, ConnectionPage, Invitation, ReauthorizationLink
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
    "IdempotencyConflict",
    "InvalidRequest",
    "Invitation",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "ReauthorizationLink",
    "ReauthorizationRequired",
    "SpApiAuth",
    "SpconnectError",
    "TokenCache",
    "TokenUnavailable",
    "TransportError",
    "Unauthorized",
    "sp_api_auth",
]
