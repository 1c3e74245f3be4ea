"""Shared fixtures: personas, tenants, and the outbound HTTP seam.

Every test goes through `amazon_calls` (autouse): each outbound request (`sellers.http.send`,
Amazon and webhooks alike) is recorded, and requests to http://testserver are served
in-process by the local sandbox, so unit tests exercise the same sandbox that end-to-end tests
drive over real HTTP.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.test import Client
from django.utils import timezone
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from sellers import http
from sellers.models import Grant, ScopeRequirement, Seller, Tenant, TenantMembership

ORDERS = "sellingpartnerapi::orders"
INVENTORY = "sellingpartnerapi::inventory"
REPORTS = "sellingpartnerapi::reports"
FINANCE = "sellingpartnerapi::finance"

# Cross-process tests (row locks) need a real server database; mark them `postgres` too.
requires_postgres = pytest.mark.skipif(
    not os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")),
    reason="needs PostgreSQL (row locks held across processes); run with DATABASE_URL=postgres://…",
)


def pytest_report_header(config):
    """Which backends this run uses, so a CI log shows what was tested."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    broker = "redis" if settings.Q_CLUSTER.get("redis") else "orm"
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    return f"backends: database {db['ENGINE'].rsplit('.', 1)[-1]} ({db['NAME']}), cache {cache}, django-q2 broker {broker}"


def pytest_collection_modifyitems(config, items):
    """Skip `@pytest.mark.postgres` tests, saying why, unless the database is PostgreSQL."""
    from django.db import connection

    if connection.vendor == "postgresql":
        return
    for item in items:
        marker = item.get_closest_marker("postgres")
        if marker is not None:
            why = marker.kwargs.get("reason", "row locks, several processes sharing one database")
            item.add_marker(pytest.mark.skip(
                reason=f"needs PostgreSQL ({why}); this run uses {connection.vendor}: run with DATABASE_URL=postgres://…"
            ))


@pytest.fixture(autouse=True)
def _empty_cache():
    """Each test starts with an empty Django cache: rate-limit counters must not carry over."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def rate_window_held(monkeypatch):
    """Hold the rate limiter's clock inside one window. A test that spends a limit and expects
    the next request refused must not see a fixed window start again (on the minute) between
    the two, which it would about once in a thousand runs."""
    from types import SimpleNamespace

    from spconnect import middleware

    start = 1_800_000_000.5  # half a second into a window of 60, 300 or 3600 seconds
    monkeypatch.setattr(middleware, "time", SimpleNamespace(time=lambda: start))


@dataclass
class Call:
    method: str
    url: str
    data: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def grant_type(self) -> str | None:
        return self.data.get("grant_type")


@dataclass
class Scripted:
    match: Callable[[Call], bool]
    respond: Callable[[Call], requests.Response]
    times: int | None = 1  # None: forever


class AmazonRecorder:
    """Records every call through the seam and lets a test script answers."""

    def __init__(self):
        self.calls: list[Call] = []
        self.scripted: list[Scripted] = []

    @property
    def token_calls(self) -> list[Call]:
        return [c for c in self.calls if c.url.endswith("/auth/o2/token")]

    @property
    def spapi_calls(self) -> list[Call]:
        return [c for c in self.calls if "/spapi/" in c.url or "sellingpartnerapi" in c.url]

    def script(self, *, url_contains: str, status: int = 200, body: Any = None, raw: bytes | None = None,
               headers: dict | None = None, exc: Exception | None = None, times: int | None = 1,
               grant_type: str | None = None):
        def match(call: Call) -> bool:
            return url_contains in call.url and (grant_type is None or call.grant_type == grant_type)

        def respond(call: Call) -> requests.Response:
            if exc is not None:
                raise exc
            return make_response(status, body if raw is None else raw, headers or {}, call.url)

        self.scripted.append(Scripted(match, respond, times))

    def lwa_error(self, error: str, status: int = 400, description: str = "", times: int | None = 1, grant_type: str | None = None):
        self.script(url_contains="/auth/o2/token", status=status, body={"error": error, "error_description": description},
                    times=times, grant_type=grant_type)

    def take_scripted(self, call: Call):
        for item in self.scripted:
            if item.match(call):
                if item.times is not None:
                    item.times -= 1
                    if item.times <= 0:
                        self.scripted.remove(item)
                return item
        return None


def make_response(status: int, body: Any, headers: dict, url: str) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    if isinstance(body, (bytes, bytearray)):
        content = bytes(body)
    elif body is None:
        content = b""
    else:
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **headers}
    response._content = content
    response.headers = CaseInsensitiveDict(headers)
    response.url = url
    response.encoding = "utf-8"
    return response


class InProcessAdapter(BaseAdapter):
    """Serves http://testserver/... with Django's test client: the sandbox, without a socket."""

    def __init__(self):
        super().__init__()
        self.client = Client()

    def send(self, request, **kwargs):
        parsed = urlparse(request.url)
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        extra = {}
        for key, value in request.headers.items():
            name = key.upper().replace("-", "_")
            if name not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                extra[f"HTTP_{name}"] = value
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        django_response = self.client.generic(
            request.method, path, data=body, content_type=request.headers.get("Content-Type", ""), **extra
        )
        response = make_response(
            django_response.status_code, django_response.content, dict(django_response.items()), request.url
        )
        response.request = request
        return response

    def close(self):
        pass


@pytest.fixture(autouse=True)
def amazon_calls(monkeypatch):
    recorder = AmazonRecorder()
    real_send = http.send
    adapter = InProcessAdapter()

    def recording_send(method, url, **kwargs):
        data = kwargs.get("data")
        if isinstance(data, dict):
            data = dict(data)
        elif isinstance(data, (bytes, str)):
            data = {k: v[0] for k, v in parse_qs(data if isinstance(data, str) else data.decode(errors="replace")).items()}
        else:
            data = {}
        call = Call(method=method.upper(), url=url, data=data, headers=dict(kwargs.get("headers") or {}))
        recorder.calls.append(call)
        scripted = recorder.take_scripted(call)
        if scripted is not None:
            return scripted.respond(call)
        return real_send(method, url, **kwargs)

    monkeypatch.setattr(http, "send", recording_send)
    http.session().mount("http://testserver/", adapter)
    try:
        yield recorder
    finally:
        http.session().adapters.pop("http://testserver/", None)


@pytest.fixture
def live_amazon(live_server, settings):
    """Point the app's Amazon endpoints at the live server's sandbox: real HTTP over sockets."""
    base = live_server.url
    settings.SITE_URL = base
    settings.SPAPI_CONSENT_HOSTS = {r: f"{base}/sandbox/{r}" for r in ("na", "eu", "fe")}
    settings.SPAPI_LWA_TOKEN_URL = f"{base}/sandbox/auth/o2/token"
    settings.SPAPI_API_HOSTS = {r: f"{base}/sandbox/spapi/{r}" for r in ("na", "eu", "fe")}
    settings.ALLOWED_HOSTS = ["*"]
    return base


# --- Personas and data ---------------------------------------------------------------------


def make_tenant(slug: str = "acme", *, name: str | None = None, required=(ORDERS, INVENTORY), optional=(REPORTS,), **extra) -> Tenant:
    tenant = Tenant.objects.create(
        slug=slug,
        name=name or f"{slug.title()} Agency",
        application_id=f"amzn1.sellerapps.app.{slug}",
        client_id=f"amzn1.application-oa2-client.{slug}",
        client_secret=f"secret-{slug}-0123456789",
        registered_scopes=list(required) + list(optional),
        **extra,
    )
    for scope in required:
        ScopeRequirement.objects.create(tenant=tenant, scope=scope, kind=ScopeRequirement.Kind.REQUIRED, reason=f"We need {scope}.")
    for scope in optional:
        ScopeRequirement.objects.create(tenant=tenant, scope=scope, kind=ScopeRequirement.Kind.OPTIONAL, reason=f"Nice to have {scope}.")
    return tenant


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return make_tenant("globex")


def make_grant(seller: Seller, *, scopes=(ORDERS, INVENTORY), expires_in: int = 3600, authorized_days_ago: int = 0,
               refresh_token: str | None = None, access_token: str | None = None, confirmed: bool = True) -> Grant:
    now = timezone.now()
    grant = Grant.objects.create(
        seller=seller,
        refresh_token=refresh_token or f"Atzr|test-refresh-{seller.pk}-abcdefghijklmnop",
        access_token=access_token or f"Atza|test-access-{seller.pk}-abcdefghijklmnop",
        access_token_expires_at=now + timedelta(seconds=expires_in),
        granted_scopes=list(scopes),
        scopes_confirmed=confirmed,
        authorized_at=now - timedelta(days=authorized_days_ago),
        last_refreshed_at=now,
    )
    from sellers.services.status import seller_status_sync

    seller_status_sync(seller=seller, grant=grant, record=False)
    return grant


def make_seller(tenant: Tenant, name: str = "Seller One", *, spid: str = "", region: str = "na", email: str = "") -> Seller:
    return Seller.objects.create(tenant=tenant, name=name, selling_partner_id=spid, region=region,
                                 email=email or f"{re.sub(r'[^a-z0-9]', '', name.lower())}@example.com")


@pytest.fixture
def make_user(db, django_user_model):
    def _make(username: str, *, tenant: Tenant | None = None, role: str = TenantMembership.Role.OWNER, superuser: bool = False):
        user = django_user_model.objects.create_user(username=username, password="pw-" + username, is_staff=True,
                                                     is_superuser=superuser)
        if tenant is not None:
            TenantMembership.objects.create(tenant=tenant, user=user, role=role)
        return user

    return _make


def parse_form(html: str) -> dict:
    """Tiny HTML form reader for scripted flows (inputs and checked checkboxes)."""
    from html.parser import HTMLParser

    class P(HTMLParser):
        def __init__(self):
            super().__init__()
            self.fields: list[tuple[str, str, str, bool]] = []
            self.action = None

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if tag == "form" and self.action is None:
                self.action = a.get("action", "")
            if tag == "input" and a.get("name"):
                self.fields.append((a["name"], a.get("value", ""), a.get("type", "text"), "checked" in a))

    p = P()
    p.feed(html)
    return {"action": p.action, "fields": p.fields}


TOKEN_SHAPE = re.compile(r"(?:Atz[a-z.]*|Atc)(?:\||%7[Cc])")


def shows_token(text: str) -> bool:
    """True when `text` holds something shaped like an Amazon token (`Atza|…`, `Atzr|…`,
    `Atc|…`, `Atz.sprdt|…`, or with the bar percent-encoded). The bar keeps a random CSRF token
    or link from matching by chance."""
    return TOKEN_SHAPE.search(text) is not None


def read_output(call) -> str:
    buf = io.StringIO()
    call(stdout=buf)
    return buf.getvalue()


# --- Other processes on a database file of their own -------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def subprocess_env(database_url: str, **extra) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory) -> Path:
    """A migrated SQLite file, made once; tests copy it (migrating takes seconds)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.sqlite3"
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT, env=subprocess_env(f"sqlite:///{path}"), check=True, timeout=120,
    )
    return path


@pytest.fixture
def sqlite_file_db(migrated_sqlite_template, tmp_path) -> str:
    path = tmp_path / "db.sqlite3"
    shutil.copy(migrated_sqlite_template, path)
    return f"sqlite:///{path}"
