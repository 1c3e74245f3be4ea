"""Hosted pages carry a Content-Security-Policy that allows no script, and contain none."""

from __future__ import annotations

import re
from urllib.parse import urlparse

import pytest
from django.test import Client

from sellers.services.invitations import invitation_create
from spconnect.middleware import content_security_policy

from .conftest import parse_form
from .flow import consent_form, run_flow

pytestmark = pytest.mark.django_db

INLINE_CODE = re.compile(r"<script|<style|\sstyle=|\son[a-z]+=|javascript:", re.I)


def directives(header: str) -> dict[str, list[str]]:
    return {parts[0]: parts[1:] for parts in (d.split() for d in header.split(";") if d.strip())}


def hosted_pages(tenant) -> dict[str, object]:
    """Every page a seller can see, reached the way a seller reaches it."""
    pages = {}
    client = Client()
    invitation = invitation_create(tenant=tenant, name="Header Shop")
    pages["invite"] = client.get(urlparse(invitation.url).path)
    consent_path, _ = consent_form(client, invitation.url)
    pages["sandbox-consent"] = client.get(consent_path)
    pages["result-success"] = run_flow(Client(), invitation_create(tenant=tenant, name="Full").url)
    pages["result-partial"] = run_flow(Client(), invitation_create(tenant=tenant, name="Part").url,
                                       scopes=["sellingpartnerapi::orders"])
    pages["declined"] = run_flow(Client(), invitation_create(tenant=tenant, name="No").url, decision="deny")
    pages["link-not-found"] = client.get("/connect/not-a-real-token/")
    pages["callback-error"] = client.get("/authflow/callback/?state=forged&spapi_oauth_code=x")
    pages["home"] = client.get("/")
    return pages


def test_every_hosted_page_has_a_policy_without_script(tenant):
    for name, response in hosted_pages(tenant).items():
        header = response.get("Content-Security-Policy")
        assert header, name
        policy = directives(header)
        assert policy["default-src"] == ["'none'"], name
        assert "script-src" not in policy, name  # falls back to default-src 'none'
        assert "'unsafe-inline'" not in header and "'unsafe-eval'" not in header, name
        assert policy["frame-ancestors"] == ["'none'"], name
        assert policy["style-src"] == ["'self'"], name


def test_hosted_pages_contain_no_inline_script_or_style(tenant):
    for name, response in hosted_pages(tenant).items():
        html = response.content.decode()
        assert response["Content-Type"].startswith("text/html"), name
        assert not INLINE_CODE.search(html), (name, INLINE_CODE.search(html).group(0))
        assert '<link rel="stylesheet" href="/static/' in html, name


def test_forms_post_only_where_the_policy_allows(tenant, settings):
    # The start button's answer is a redirect to Seller Central: browsers hold that redirect
    # to form-action too, so the consent host must be listed.
    invitation = invitation_create(tenant=tenant, name="Form Shop")
    client = Client()
    page = client.get(urlparse(invitation.url).path)
    action = parse_form(page.content.decode())["action"]
    assert action.startswith("/connect/")
    started = client.post(action)
    consent_origin = "{0.scheme}://{0.netloc}".format(urlparse(started["Location"]))
    assert consent_origin in directives(page["Content-Security-Policy"])["form-action"]


def test_form_action_names_the_real_seller_central_in_production(settings):
    settings.SPAPI_CONSENT_HOSTS = {
        "na": "https://sellercentral.amazon.com",
        "eu": "https://sellercentral-europe.amazon.com",
        "fe": "https://sellercentral.amazon.co.jp",
    }
    assert directives(content_security_policy())["form-action"] == [
        "'self'", "https://sellercentral-europe.amazon.com", "https://sellercentral.amazon.co.jp", "https://sellercentral.amazon.com",
    ]


def test_static_files_on_another_origin_are_allowed_for_styles_only(settings):
    settings.STATIC_URL = "https://cdn.example.com/static/"
    policy = directives(content_security_policy())
    assert policy["style-src"] == ["'self'", "https://cdn.example.com"]
    assert "script-src" not in policy


def test_other_security_headers_on_hosted_pages(tenant):
    invitation = invitation_create(tenant=tenant, name="Other Headers")
    response = Client().get(urlparse(invitation.url).path)
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "strict-origin"
    assert "no-cache" in response["Cache-Control"]


def test_admin_is_left_to_djangos_own_templates(client):
    response = client.get("/admin/login/")
    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
