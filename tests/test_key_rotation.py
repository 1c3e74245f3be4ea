"""`rotate_encryption_key`: every encrypted column re-encrypted under the first key, in batches,
resumable, nothing encrypted twice, and an unreadable value named.

The key is read once at import (django-encrypted-model-fields), so every step runs in its own
process with its own FIELD_ENCRYPTION_KEY against a temporary SQLite file.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parent.parent
OLD = "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM="
NEW = "VGhpcy1pcy1hLW5ldy1rZXktZm9yLXJvdGF0aW9uISE="
FOREIGN = "Rm9yZWlnbi1rZXktbm9ib2R5LWNvbmZpZ3VyZWQtISE="

# Every encrypted column, with the plaintexts written under OLD.
PLAIN = {
    "tenant.client_secret": "cs-current-value-1111",
    "tenant.previous_client_secret": "cs-previous-value-2222",
    "tenant.webhook_secret": "whsec-value-3333",
    **{f"grant{i}.refresh_token": f"Atzr|refresh-{i}-abcdefghijkl" for i in (1, 2, 3)},
    **{f"grant{i}.access_token": f"Atza|access-{i}-abcdefghijkl" for i in (1, 2, 3)},
    "grant1.mws_auth_token": "amzn.mws.value-4444",
    **{f"invitation{i}.token": f"invite-token-{i}-abcdefghijkl" for i in (1, 2, 3)},
}

WRITE = f"""
import json
from django.utils import timezone
from sellers.models import Grant, Invitation, Seller, Tenant
from sellers.hashing import token_hash
P = json.loads({json.dumps(json.dumps(PLAIN))})
t = Tenant.objects.create(slug="k", name="K", application_id="a", client_id="c", client_secret=P["tenant.client_secret"],
                          previous_client_secret=P["tenant.previous_client_secret"], webhook_secret=P["tenant.webhook_secret"])
for i in (1, 2, 3):
    s = Seller.objects.create(tenant=t, name=f"S{{i}}", selling_partner_id=f"A{{i}}")
    Grant.objects.create(seller=s, refresh_token=P[f"grant{{i}}.refresh_token"], access_token=P[f"grant{{i}}.access_token"],
                         mws_auth_token=P.get(f"grant{{i}}.mws_auth_token", ""), authorized_at=timezone.now())
    tok = P[f"invitation{{i}}.token"]
    Invitation.objects.create(tenant=t, seller=s, token=tok, token_hash=token_hash(tok), expires_at=timezone.now())
"""

READ = """
import json
from sellers.models import Grant, Invitation, Tenant
t = Tenant.objects.get()
out = {"tenant.client_secret": t.client_secret, "tenant.previous_client_secret": t.previous_client_secret,
       "tenant.webhook_secret": t.webhook_secret}
for g in Grant.objects.order_by("pk"):
    out[f"grant{g.pk}.refresh_token"] = g.refresh_token
    out[f"grant{g.pk}.access_token"] = g.access_token
    if g.mws_auth_token:
        out[f"grant{g.pk}.mws_auth_token"] = g.mws_auth_token
for i in Invitation.objects.order_by("pk"):
    out[f"invitation{i.pk}.token"] = i.token
print(json.dumps(out))
"""

COLUMNS = {
    "sellers_tenant": ["client_secret", "previous_client_secret", "webhook_secret"],
    "sellers_grant": ["refresh_token", "access_token", "mws_auth_token"],
    "sellers_invitation": ["token"],
}


def env_for(db: Path, keys: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "DEBUG": "true",
        "SECRET_KEY": "k",
        "DATABASE_URL": f"sqlite:///{db}",
        "FIELD_ENCRYPTION_KEY": keys,
        "REDIS_URL": "",
    }


def manage(db: Path, keys: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], env=env_for(db, keys), cwd=ROOT, capture_output=True, text=True
    )
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


def raw_values(db: Path) -> dict[str, str]:
    out = {}
    with sqlite3.connect(db) as conn:
        for table, columns in COLUMNS.items():
            for row in conn.execute(f"SELECT id, {', '.join(columns)} FROM {table} ORDER BY id"):
                for column, value in zip(columns, row[1:], strict=True):
                    if value:
                        out[f"{table}.{row[0]}.{column}"] = value
    return out


@pytest.fixture(scope="module")
def template_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("keys") / "template.sqlite3"
    manage(db, OLD, "migrate", "-v0")
    manage(db, OLD, "shell", "-c", WRITE)
    return db


@pytest.fixture
def db_file(template_db, tmp_path) -> Path:
    copy = tmp_path / "spconnect.sqlite3"
    shutil.copy(template_db, copy)
    return copy


def test_rotation_round_trips_and_encrypts_nothing_twice(db_file):
    before = raw_values(db_file)
    assert len(before) == len(PLAIN)
    result = manage(db_file, f"{NEW},{OLD}", "rotate_encryption_key", "--batch-size", "2")
    out = result.stdout
    assert "sellers.Grant.refresh_token: re-encrypted 3, already under the new key 0, empty 0" in out
    assert "sellers.Grant.mws_auth_token: re-encrypted 1, already under the new key 0, empty 2" in out
    assert "sellers.Tenant.webhook_secret: re-encrypted 1" in out
    assert f"re-encrypted {len(PLAIN)} value(s)" in out
    for secret in PLAIN.values():
        assert secret not in out + result.stderr

    # Every raw value now decrypts with the new key alone, straight to the plaintext: one layer.
    after = raw_values(db_file)
    new = Fernet(NEW)
    assert set(after) == set(before)
    assert {new.decrypt(v.encode()).decode() for v in after.values()} == set(PLAIN.values())
    assert all(after[k] != before[k] for k in after)

    # The old key can go: a process that only knows the new key reads everything.
    read = manage(db_file, NEW, "shell", "-c", READ)
    assert json.loads(read.stdout.strip().splitlines()[-1]) == PLAIN

    # A second run finds nothing to do and changes no byte.
    again = manage(db_file, f"{NEW},{OLD}", "rotate_encryption_key").stdout
    # Ten encrypted fields: Grant (3), Tenant (3), Invitation (1), IdentityReview (3, its held tokens).
    assert f"re-encrypted 0 value(s) in 10 field(s); {len(PLAIN)} already under the new key" in again
    assert raw_values(db_file) == after


def test_an_unreadable_value_stops_the_run_naming_the_row_and_a_rerun_resumes(db_file):
    with sqlite3.connect(db_file) as conn:
        foreign = Fernet(FOREIGN).encrypt(b"Atza|written-under-a-lost-key").decode()
        conn.execute("UPDATE sellers_grant SET access_token = ? WHERE id = 2", [foreign])
    failed = manage(db_file, f"{NEW},{OLD}", "rotate_encryption_key", "--batch-size", "1", check=False)
    assert failed.returncode != 0
    assert "sellers.Grant row 2, field access_token: no key in FIELD_ENCRYPTION_KEY can decrypt it" in failed.stderr
    assert "Atza|written-under-a-lost-key" not in failed.stderr + failed.stdout and foreign not in failed.stderr
    raw = raw_values(db_file)
    new = Fernet(NEW)
    # Committed before the failure: all refresh tokens, and the access token of row 1.
    assert new.decrypt(raw["sellers_grant.1.access_token"].encode()).decode() == PLAIN["grant1.access_token"]
    assert raw["sellers_grant.2.access_token"] == foreign

    resumed = manage(db_file, f"{NEW},{OLD},{FOREIGN}", "rotate_encryption_key").stdout
    assert "sellers.Grant.refresh_token: re-encrypted 0, already under the new key 3" in resumed
    assert "sellers.Grant.access_token: re-encrypted 2, already under the new key 1" in resumed
    assert new.decrypt(raw_values(db_file)["sellers_grant.2.access_token"].encode()) == b"Atza|written-under-a-lost-key"


def test_dry_run_checks_everything_and_writes_nothing(db_file):
    before = raw_values(db_file)
    out = manage(db_file, f"{NEW},{OLD}", "rotate_encryption_key", "--dry-run").stdout
    assert f"Dry run, nothing written: would re-encrypt {len(PLAIN)} value(s)" in out
    assert raw_values(db_file) == before
