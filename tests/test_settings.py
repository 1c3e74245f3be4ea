"""Production refuses to start without its secrets and names the missing one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BASE_ENV = {
    "PATH": os.environ.get("PATH", ""),
    "DJANGO_SETTINGS_MODULE": "spconnect.settings",
    "SPCONNECT_ENV_FILE": "/nonexistent",
}


def check(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env={**BASE_ENV, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize("missing", ["SECRET_KEY", "FIELD_ENCRYPTION_KEY", "SITE_URL"])
def test_missing_secret_stops_start_up_naming_it(missing):
    env = {"DEBUG": "false", "SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
           "ALLOWED_HOSTS": "example.com", "SITE_URL": "https://example.com"}
    del env[missing]
    result = check(env)
    assert result.returncode != 0
    assert f"The setting {missing} is missing" in result.stderr


def test_secret_can_come_from_a_file(tmp_path):
    secret_file = tmp_path / "key"
    secret_file.write_text("iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=\n")
    result = check({"DEBUG": "true", "SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY_FILE": str(secret_file),
                    "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3"})
    assert result.returncode == 0, result.stderr


def test_sandbox_is_refused_without_debug():
    result = check({"DEBUG": "false", "SECRET_KEY": "x" * 50, "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
                    "SPAPI_SANDBOX": "true", "ALLOWED_HOSTS": "example.com", "SITE_URL": "https://example.com"})
    assert result.returncode != 0
    assert "SPAPI_SANDBOX=true is for local runs" in result.stderr


def test_malformed_encryption_key_is_reported():
    result = check({"DEBUG": "true", "SECRET_KEY": "x", "FIELD_ENCRYPTION_KEY": "not-a-fernet-key"})
    assert result.returncode != 0
    assert "FIELD_ENCRYPTION_KEY defined incorrectly" in result.stderr
    assert "not-a-fernet-key" not in result.stderr
