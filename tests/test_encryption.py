"""Tokens and secrets are encrypted at rest; a wrong key fails loudly instead of leaking ciphertext."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from sellers.fields import UndecryptableValue, mask_secret
from sellers.models import Grant, Tenant

from .conftest import make_grant, make_seller

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def raw_rows(table: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # table names are constants here
        return repr(cursor.fetchall())


def test_raw_tables_hold_no_token_or_secret_in_clear(tenant):
    tenant.webhook_secret = "whsec-plaintext-value-123"
    tenant.previous_client_secret = "old-secret-plaintext-456"
    tenant.save()
    seller = make_seller(tenant, spid="A1RAW")
    grant = make_grant(seller)
    grant.mws_auth_token = "amzn.mws.plaintext-789"
    grant.save()
    raw = raw_rows("sellers_grant") + raw_rows("sellers_tenant") + raw_rows("sellers_invitation")
    for secret in (grant.refresh_token, grant.access_token, "amzn.mws.plaintext-789", tenant.client_secret,
                   "whsec-plaintext-value-123", "old-secret-plaintext-456"):
        assert secret not in raw
    # …and the ORM reads them back.
    fresh = Grant.objects.get(pk=grant.pk)
    assert fresh.refresh_token == grant.refresh_token and fresh.access_token == grant.access_token
    assert Tenant.objects.get(pk=tenant.pk).webhook_secret == "whsec-plaintext-value-123"


def test_invitation_token_is_encrypted_and_hashed(tenant):
    from sellers.services.invitations import invitation_create

    invitation = invitation_create(tenant=tenant, name="Shop")
    assert invitation.token not in raw_rows("sellers_invitation")


def test_ciphertext_that_no_key_reads_raises_instead_of_returning_ciphertext(tenant):
    seller = make_seller(tenant, spid="A1BAD")
    grant = make_grant(seller)
    from cryptography.fernet import Fernet

    foreign = Fernet(Fernet.generate_key()).encrypt(b"Atzr|from-another-key").decode()
    with connection.cursor() as cursor:
        cursor.execute("UPDATE sellers_grant SET refresh_token = %s WHERE id = %s", [foreign, grant.pk])
    with pytest.raises(UndecryptableValue) as info:
        Grant.objects.get(pk=grant.pk)
    assert "sellers.Grant.refresh_token" in str(info.value)
    assert foreign not in str(info.value)


def test_empty_secret_stays_empty_and_reads_back_empty(tenant):
    assert tenant.webhook_secret == ""
    assert "webhook_secret" in [f.name for f in Tenant._meta.fields]
    with connection.cursor() as cursor:
        cursor.execute("SELECT webhook_secret FROM sellers_tenant WHERE id = %s", [tenant.pk])
        assert cursor.fetchone()[0] == ""


def test_mask_secret_shows_at_most_a_tail():
    assert mask_secret("Atzr|IwEBIabcdefghijklmnopqrstuvwxyz") == "••••wxyz"
    assert mask_secret("short") == "••••"
    assert mask_secret("") == "—"


def test_wrong_field_encryption_key_makes_reading_a_grant_fail_loudly(tmp_path):
    """Write a grant under one key, read it in a process configured with another key."""
    db = tmp_path / "keys.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "DEBUG": "true",
        "SECRET_KEY": "k",
        "DATABASE_URL": f"sqlite:///{db}",
        "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(manage + ["migrate", "-v0"], env=env, check=True, cwd=ROOT)
    write = (
        "from django.utils import timezone\n"
        "from sellers.models import *\n"
        "t=Tenant.objects.create(slug='k',name='K',application_id='a',client_id='c',client_secret='s')\n"
        "s=Seller.objects.create(tenant=t,name='S')\n"
        "Grant.objects.create(seller=s,refresh_token='Atzr|written-under-key-one',authorized_at=timezone.now())\n"
    )
    subprocess.run(manage + ["shell", "-c", write], env=env, check=True, cwd=ROOT)
    env["FIELD_ENCRYPTION_KEY"] = "QkZzS1F1b2pQa2N2V3pQbE1vR0Z4Y1l6cVhmR2h1bkk="
    read = "from sellers.models import Grant\nprint(Grant.objects.get().refresh_token)\n"
    result = subprocess.run(manage + ["shell", "-c", read], env=env, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode != 0
    assert "UndecryptableValue" in result.stderr
    assert "Atzr|written-under-key-one" not in result.stdout + result.stderr
    assert "gAAAA" not in result.stdout  # no ciphertext handed back as a value


def test_bulk_update_of_an_encrypted_field_is_refused_not_garbled(tenant):
    seller = make_seller(tenant, spid="A1BULK")
    grant = make_grant(seller)
    before = Grant.objects.get(pk=grant.pk).refresh_token
    grant.refresh_token = "Atzr|new-value"
    from django.db import transaction

    with pytest.raises(TypeError, match="encrypted"), transaction.atomic():
        Grant.objects.bulk_update([grant], ["refresh_token"])
    assert Grant.objects.get(pk=grant.pk).refresh_token == before
