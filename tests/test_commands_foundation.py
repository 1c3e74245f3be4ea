"""invite, seed_demo, export_grants and sandbox commands."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from sellers.models import Event, Invitation, ScopeRequirement, Seller, Tenant, TenantMembership

from .conftest import make_grant, make_seller, read_output

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    return read_output(lambda stdout: call_command(*args, stdout=stdout))


def test_invite_prints_absolute_url_as_last_line_and_creates_pending_seller(tenant, client):
    out = run("invite", "--tenant", "acme", "--name", "Shop Ltd", "--email", "s@example.com", "--region", "eu")
    url = out.strip().splitlines()[-1]
    assert url.startswith("http://testserver/connect/")
    seller = Seller.objects.get(name="Shop Ltd")
    assert (seller.status, seller.region, seller.email) == ("invited", "eu", "s@example.com")
    assert Invitation.objects.get(seller=seller).url == url
    assert Event.objects.filter(seller=seller, kind=Event.Kind.INVITED, actor="command:invite").exists()
    assert client.get(url.replace("http://testserver", "")).status_code == 200


def test_invite_unknown_tenant_is_a_clear_error(tenant):
    with pytest.raises(CommandError, match="Unknown tenant 'nope'. Known tenants: acme"):
        run("invite", "--tenant", "nope", "--name", "X")


def test_invite_rejects_unknown_region(tenant):
    with pytest.raises(CommandError):
        run("invite", "--tenant", "acme", "--name", "X", "--region", "xx")


@pytest.mark.parametrize("days", ["0", "-5", "366", "100000000"])
def test_invite_days_outside_a_year_are_refused(tenant, days):
    with pytest.raises(CommandError, match="--days must be between 1 and 365"):
        run("invite", "--tenant", "acme", "--name", "X", "--days", days)
    assert not Seller.objects.filter(name="X").exists()


def test_seed_demo_is_idempotent_and_prints_password_once(settings):
    first = run("seed_demo")
    assert "password:" in first
    second = run("seed_demo")
    assert "password" in second and "password:" not in second
    tenant = Tenant.objects.get(slug="demo")
    assert tenant.redirect_uri == f"{settings.SITE_URL}/authflow/callback/"
    assert ScopeRequirement.objects.filter(tenant=tenant).count() == 4
    user = get_user_model().objects.get(username="demo")
    assert user.is_staff and not user.is_superuser
    assert TenantMembership.objects.get(user=user).role == "owner"
    assert Tenant.objects.count() == 1
    assert tenant.client_secret not in first + second


def test_export_grants_csv_has_header_and_no_tokens(tenant):
    seller = make_seller(tenant, "Csv Shop", spid="A1CSV")
    grant = make_grant(seller)
    make_seller(tenant, "Pending Shop")
    out = run("export_grants", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["name"] for r in rows] == ["Csv Shop", "Pending Shop"]
    assert rows[0]["status"] == "active" and rows[1]["status"] == "invited"
    assert rows[1]["missing_scopes"] == "sellingpartnerapi::orders sellingpartnerapi::inventory"
    assert grant.refresh_token not in out and grant.access_token not in out


def test_export_grants_scopes_to_one_tenant(tenant, other_tenant):
    make_seller(tenant, "Mine")
    make_seller(other_tenant, "Theirs")
    out = run("export_grants", "--tenant", "globex")
    assert "Theirs" in out and "Mine" not in out


def test_sandbox_revoke_unknown_seller_errors(db):
    with pytest.raises(CommandError, match="No active sandbox authorization"):
        run("sandbox", "revoke", "A1NOBODY")


def test_csv_exports_defuse_spreadsheet_formulas(tenant):
    make_seller(tenant, "=HYPERLINK(\"http://evil.example\")")
    out = run("export_grants", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[0]["name"].startswith("'=")
