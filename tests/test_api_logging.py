"""API keys and the access tokens the API hands out never reach a log: the redaction patterns
know `Bearer …`, `spc_…` keys and `access_token` values, and what the API logs goes through
them like every other record."""

from __future__ import annotations

import io
import logging

import pytest
from django.test import Client

from api import views
from api.keys import api_key_create
from sellers.redaction import redact
from spconnect.logging import RedactSecretsFilter

from .conftest import make_grant, make_seller

KEY = "spc_ab12cd34_Zx9-Qw8_Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNbVcXz"


@pytest.mark.parametrize(
    "text, kept",
    [
        (f"Authorization: Bearer {KEY}", "Authorization: Bearer [redacted]"),
        ("authorization: bearer Atza|IwEBIAbc-def_123", "authorization: bearer [redacted]"),
        (f"key={KEY[:4]}x", f"key={KEY[:4]}x"),  # too short to be a key: left alone
        (f"used {KEY} today", "used spc_ab12cd34_[redacted] today"),
        ('{"access_token": "sandbox-token.123", "token_type": "bearer", "expires_in": 3600}',
         '{"access_token": "[redacted]", "token_type": "bearer", "expires_in": 3600}'),
        ("{'access_token': 'plain-opaque-value'}", "{'access_token': '[redacted]'}"),
        ("Send a bearer token in the header.", "Send a bearer token in the header."),
    ],
)
def test_redact_covers_bearer_credentials_api_keys_and_access_token_values(text, kept):
    assert redact(text) == kept


@pytest.fixture
def log_output():
    """Everything logged at DEBUG and above, through the filter every configured handler has."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


@pytest.mark.django_db
def test_an_unexpected_error_is_a_json_500_and_its_log_carries_no_key_or_token(tenant, log_output, monkeypatch):
    seller = make_seller(tenant, "Logged Shop", spid="A1LOGGED")
    grant = make_grant(seller, access_token="Atza|logged-access-token-0123456789")
    _, key = api_key_create(tenant=tenant, name="logged", permissions=["tokens:read"], actor="test")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", raise_request_exception=False)
    url = f"/api/v1/connections/{seller.public_id}/access-token"
    assert client.post(url, content_type="application/json").json()["access_token"] == grant.access_token

    def broken(**kwargs):
        raise RuntimeError(f"upstream echoed Authorization: Bearer {key} and access_token={grant.access_token}")

    monkeypatch.setattr(views, "connection_for_token", broken)
    response = client.post(url, content_type="application/json")
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal_error", "message": "Something went wrong on our side; it is logged. Try again later."
    }
    assert key not in response.text and grant.access_token not in response.text

    Client(HTTP_AUTHORIZATION=f"Token {key}").get("/api/v1/connections")  # a malformed header: a plain 401
    logged = log_output.getvalue()
    assert "API error on POST" in logged and "RuntimeError" in logged  # it was logged, traceback included
    assert key not in logged and key[13:] not in logged
    assert "logged-access-token" not in logged
