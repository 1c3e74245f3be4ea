"""Plain-text emails read as typed: names with quotes, ampersands or angle brackets are not
HTML-escaped (`O&#x27;Brien &amp; Sons`). HTML pages still escape them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from django.core.management import call_command

from sellers.models import TenantMembership
from sellers.services.grants import grant_mark_revoked
from sellers.services.invitations import invitation_create, reauthorization_link_send
from sellers.services.renewals import renewal_digest_send

from .conftest import make_grant, make_seller, make_tenant

pytestmark = pytest.mark.django_db

SELLER = "O'Brien & Sons <Ltd>"
AGENCY = 'Smith & "Co" Agency'
ESCAPES = ("&amp;", "&#x27;", "&#39;", "&quot;", "&lt;", "&gt;")


@pytest.fixture
def agency(db, make_user):
    tenant = make_tenant("smith", name=AGENCY)
    owner = make_user("olive", tenant=tenant, role=TenantMembership.Role.OWNER)
    owner.email = "olive@agency.example"
    owner.save()
    return tenant


def assert_plain(body: str) -> None:
    found = [escape for escape in ESCAPES if escape in body]
    assert found == [], body


def test_the_link_email_names_seller_and_agency_as_typed(agency):
    seller = make_seller(agency, SELLER, email="obrien@shop.example")
    reauthorization_link_send(seller=seller)
    [message] = mail.outbox
    assert f"Hello {SELLER}," in message.body
    assert f"{AGENCY} needs you to connect" in message.body and f"— {AGENCY}" in message.body
    assert_plain(message.body)


def test_a_reauth_campaign_email_names_seller_and_agency_as_typed(agency):
    seller = make_seller(agency, SELLER, spid="A1OBRIEN", email="obrien@shop.example")
    make_grant(seller)
    call_command("reauth", "--tenant", "smith", "--seller", "A1OBRIEN", "--send-email", stdout=open(os.devnull, "w"))
    [message] = mail.outbox
    assert f"Hello {SELLER}," in message.body and f"{AGENCY} needs you to re-authorize" in message.body
    assert_plain(message.body)


def test_staff_notifications_name_the_seller_as_typed(agency, django_capture_on_commit_callbacks):
    seller = make_seller(agency, SELLER, spid="A1OBRIEN")
    make_grant(seller)
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_mark_revoked(seller=seller, reason="Staff said so.", actor="system")
    [message] = mail.outbox
    assert f"Seller: {SELLER} (A1OBRIEN," in message.body and f"Tenant: {AGENCY}" in message.body
    assert_plain(message.body)


def test_the_renewal_digest_names_sellers_as_typed(agency, django_capture_on_commit_callbacks):
    seller = make_seller(agency, SELLER, spid="A1OBRIEN")
    make_grant(seller, authorized_days_ago=340)
    with django_capture_on_commit_callbacks(execute=True):
        assert renewal_digest_send(tenant=agency, force=True)
    [message] = mail.outbox
    assert f"{SELLER} (A1OBRIEN): due " in message.body and f"Daily digest for {AGENCY}" in message.body
    assert_plain(message.body)


def test_every_text_template_turns_autoescape_off():
    """A new .txt template that forgets it would escape names again."""
    roots = [Path(d) for engine in settings.TEMPLATES for d in engine.get("DIRS", [])]
    roots += [Path(settings.BASE_DIR) / app for app in ("sellers", "authflow", "sandbox", "spconnect")]
    templates = sorted({p for root in roots for p in root.glob("**/templates/**/*.txt")} | {
        p for root in roots if root.name == "templates" for p in root.glob("**/*.txt")
    })
    assert templates, "no text templates found"
    for template in templates:
        text = template.read_text().strip()
        assert text.startswith("{% autoescape off %}") and text.endswith("{% endautoescape %}"), template


def test_html_pages_still_escape_the_same_names(agency, client):
    invitation = invitation_create(tenant=make_tenant("other", name=AGENCY), name=SELLER)
    page = client.get(invitation.url.removeprefix(settings.SITE_URL))
    assert page.status_code == 200
    html = page.content.decode()
    assert "Smith &amp; &quot;Co&quot; Agency" in html and AGENCY not in html
