"""No token, client secret or authorization code in any log record, at DEBUG, through a whole
life: consent and code exchange, refused and failed exchanges, refresh, SP-API calls,
revocation, and Amazon's errors.

Records are captured raw, by a handler of ours that is the only one on the root logger: the
console handler's redaction filter (spconnect/logging.py) rewrites records in place, so leaving
it in front would hide exactly the leaks this test is for. That filter's own job, the last line
of defence, is checked separately below.
"""

from __future__ import annotations

import contextlib
import io
import logging
import traceback
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.utils import timezone

from sellers import http as amazon
from sellers.models import Grant, Seller, Tenant
from sellers.services.invitations import invitation_create
from sellers.services.spapi import ReauthorizationRequired, ScopeNotGranted, spapi_request
from sellers.services.tokens import access_token_cache_clear, grant_refresh
from spconnect.logging import RedactSecretsFilter

from .conftest import FINANCE
from .flow import consent_form, run_flow, sandbox_decide

FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(pathname)s:%(lineno)d %(message)s")
# Loggers that may carry request lines, bodies or SQL: all forced down to DEBUG.
NOISY = ("urllib3", "urllib3.connectionpool", "requests", "django", "django.request", "django.server",
         "django.db.backends", "django.security", "django_q", "sellers", "authflow", "sandbox", "spconnect")


class Capture(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[tuple[str, str]]:
        """(logger name, everything a formatting handler could write for the record)."""
        out = []
        for record in self.records:
            text = FORMAT.format(record)  # message with its args, exception text and stack
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info))
            out.append((record.name, text))
        return out


@contextlib.contextmanager
def capture_everything():
    root = logging.getLogger()
    saved_root = (root.level, list(root.handlers))
    saved = {}
    for name in set(NOISY) | set(logging.root.manager.loggerDict):
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.disabled, list(logger.handlers))
    capture = Capture()
    try:
        root.handlers = [capture]
        root.setLevel(logging.DEBUG)
        for name in saved:
            logger = logging.getLogger(name)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
            if not logger.propagate:  # e.g. django.server: reach it directly
                logger.handlers = [*logger.handlers, capture]
        yield capture
    finally:
        root.handlers = saved_root[1]
        root.setLevel(saved_root[0])
        for name, (level, disabled, handlers) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled
            logger.handlers = handlers


class Secrets:
    """Every secret value that exists during the run, gathered where it really appears."""

    def __init__(self):
        self.values: dict[str, str] = {}

    def add(self, kind: str, value: str | None) -> None:
        if value and len(value) >= 12:
            self.values.setdefault(value, kind)

    def from_tenant(self, tenant: Tenant) -> None:
        tenant.refresh_from_db()
        self.add("client secret", tenant.client_secret)
        self.add("client secret", tenant.previous_client_secret)

    def from_grants(self) -> None:
        for grant in Grant.objects.all():
            self.add("refresh token", grant.refresh_token)
            self.add("access token", grant.access_token)
            self.add("MWS auth token", grant.mws_auth_token)

    def from_callback(self, path: str) -> None:
        query = parse_qs(urlparse(path).query)
        for name in ("spapi_oauth_code", "code"):
            for value in query.get(name, []):
                self.add("authorization code", value)

    def from_calls(self, recorder) -> None:
        for call in recorder.calls:
            self.add("authorization code", call.data.get("code"))
            self.add("client secret", call.data.get("client_secret"))
            self.add("refresh token", call.data.get("refresh_token"))
            self.add("access token", call.headers.get("x-amz-access-token"))

    def leaks(self, capture: Capture) -> list[str]:
        found = []
        for name, text in capture.texts():
            kinds = [kind for value, kind in self.values.items() if value in text]
            if kinds:
                shown = text
                for value, kind in self.values.items():  # the report must not leak them either
                    shown = shown.replace(value, f"<{kind}>")
                found.append(f"{', '.join(sorted(set(kinds)))} in a record of logger {name!r}: {shown[:400]}")
        return found


@pytest.fixture
def token_answers(monkeypatch, amazon_calls):
    """Collect every token LWA hands out, straight from its answers."""
    seen: list[str] = []
    send = amazon.send

    def collecting_send(method, url, **kwargs):
        response = send(method, url, **kwargs)
        if url.endswith("/auth/o2/token"):
            try:
                body = response.json()
            except ValueError:
                body = {}
            if isinstance(body, dict):
                seen.extend(str(body.get(k) or "") for k in ("access_token", "refresh_token"))
        return response

    monkeypatch.setattr(amazon, "send", collecting_send)
    return seen


def connect(client: Client, tenant: Tenant, name: str, spid: str, secrets: Secrets, **decide):
    invitation = invitation_create(tenant=tenant, name=name)
    consent_path, form = consent_form(client, invitation.url)
    callback = sandbox_decide(client, consent_path, form, spid=spid, **decide)
    secrets.from_callback(callback)
    response = client.get(callback)
    return callback, response


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_any_log_record_through_a_whole_life(live_amazon, tenant, amazon_calls, token_answers, settings):
    settings.DEBUG = True  # Django logs every SQL statement with its parameters only under DEBUG
    access_token_cache_clear()
    secrets = Secrets()
    secrets.from_tenant(tenant)
    with capture_everything() as capture:
        # Consent and code exchange over real HTTP to the sandbox's LWA.
        client = Client()
        callback, response = connect(client, tenant, "Logged Shop", "A1LOGSHOP", secrets)
        assert response.status_code == 302
        seller = Seller.objects.get(selling_partner_id="A1LOGSHOP")
        assert Grant.objects.get(seller=seller).status == Grant.Status.ACTIVE

        # The same callback again: a used state (logged as rejected), the code never reaches LWA
        # twice; this browser is shown the page the state ended on, the result.
        assert client.get(callback)["Location"] == "/authflow/result/"
        # A callback with a code too long to be Amazon's.
        hostile = "/authflow/callback/?state=x&spapi_oauth_code=" + "ANforged" * 300
        secrets.from_callback(hostile)
        assert client.get(hostile).status_code == 400

        # Declined, then approved with only some scopes.
        assert run_flow(Client(), invitation_create(tenant=tenant, name="Decliner").url, decision="deny").status_code == 200
        partial = run_flow(Client(), invitation_create(tenant=tenant, name="Partial").url, spid="A1PARTIAL",
                           scopes=["sellingpartnerapi::orders"])
        assert partial.status_code == 200

        # Exchange refused: LWA no longer accepts the app's secret (401 invalid_client); staff
        # are told by email.
        amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed",
                               grant_type="authorization_code")
        _, refused = connect(Client(), tenant, "Bad Secret", "A1BADSECRET", secrets)
        assert refused.status_code == 400

        # Exchange failing at LWA: invalid_grant, then a 500.
        amazon_calls.lwa_error("invalid_grant", description="The authorization code is expired.", grant_type="authorization_code")
        _, expired = connect(Client(), tenant, "Slow Seller", "A1SLOW", secrets)
        assert expired.status_code == 400
        amazon_calls.lwa_error("server_error", status=500, grant_type="authorization_code")
        _, down = connect(Client(), tenant, "Unlucky Seller", "A1UNLUCKY", secrets)
        assert down.status_code == 502

        # Refresh, then SP-API calls (a granted scope, and one refused before any request).
        result = grant_refresh(grant=Grant.objects.get(seller=seller), force=True)
        assert result.outcome == "refreshed"
        orders = spapi_request(seller=seller, method="GET", path="/orders/v0/orders",
                               params={"CreatedAfter": (timezone.now() - timedelta(days=1)).isoformat()})
        assert orders.status_code == 200
        with pytest.raises(ScopeNotGranted):
            spapi_request(seller=seller, method="GET", path="/finances/v0/financialEventGroups")
        assert FINANCE not in Grant.objects.get(seller=seller).granted_scopes

        # A refresh that fails transiently (LWA 503 with Retry-After).
        amazon_calls.script(url_contains="/auth/o2/token", status=503, body={"error": "temporarily_unavailable"},
                            headers={"Retry-After": "30"}, grant_type="refresh_token")
        assert grant_refresh(grant=Grant.objects.get(seller__selling_partner_id="A1PARTIAL"), force=True).outcome == "transient_failure"

        # Revocation: the seller removes the app; SP-API answers 403, the refresh invalid_grant.
        secrets.from_grants()
        call_command("sandbox", "revoke", "A1LOGSHOP", stdout=io.StringIO())
        with pytest.raises(ReauthorizationRequired):
            spapi_request(seller=seller, method="GET", path="/orders/v0/orders")
        assert Seller.objects.get(pk=seller.pk).status == Seller.Status.REVOKED

    secrets.from_grants()
    secrets.from_calls(amazon_calls)
    for value in token_answers:
        secrets.add("access or refresh token from LWA", value)
    for conn in connections.all():
        conn.close()

    kinds = set(secrets.values.values())
    assert {"client secret", "authorization code", "refresh token", "access token"} <= kinds, kinds
    assert len([k for k in secrets.values.values() if k == "authorization code"]) >= 6
    loggers = {record.name for record in capture.records}
    # The capture saw what it is meant to: HTTP client lines, Django's request log and SQL.
    assert "urllib3.connectionpool" in loggers, loggers
    assert "django.request" in loggers, loggers
    assert "django.db.backends" in loggers, loggers
    assert any("/sandbox/auth/o2/token" in text for _, text in capture.texts())

    assert secrets.leaks(capture) == []


def test_console_handler_redacts_what_would_slip_through():
    """The last line of defence on the configured console handler, not a licence to log."""
    console = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecretsFilter) for f in h.filters)]
    assert console, "the root console handler lost its redaction filter"

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    handler.setFormatter(FORMAT)
    logger = logging.getLogger("spconnect.tests.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        logger.debug("token answer %s", {"access_token": "Atza|IwEBIAbCdEf0123456789", "refresh_token": "Atzr|IwEBIZyXwV9876543210"})
        logger.debug("posted client_secret=amzn1.oa2-cs.v1.0123456789abcdef&code=ANabcdefghijklmnop")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    for secret in ("Atza|IwEBIAbCdEf0123456789", "Atzr|IwEBIZyXwV9876543210", "amzn1.oa2-cs.v1.0123456789abcdef", "ANabcdefghijklmnop"):
        assert secret not in out
    assert out.count("[redacted]") >= 4
