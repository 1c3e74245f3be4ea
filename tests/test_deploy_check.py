"""`manage.py check --deploy` is clean with production settings, and would say so if it were not."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PRODUCTION = {
    "PATH": os.environ.get("PATH", ""),
    "DJANGO_SETTINGS_MODULE": "spconnect.settings",
    "SPCONNECT_ENV_FILE": "/nonexistent",
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
    "ALLOWED_HOSTS": "connect.agency.example",
    "SITE_URL": "https://connect.agency.example",
    "DATABASE_URL": "postgres://spconnect@db.internal:5432/spconnect",
    "REDIS_URL": "redis://redis.internal:6379/0",
}


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env={**PRODUCTION, **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("proxy_env", [{}, {"USE_X_FORWARDED_PROTO": "true", "SPCONNECT_TRUSTED_PROXY_COUNT": "1"}],
                         ids=["direct-tls", "behind-a-proxy"])
def test_check_deploy_reports_nothing(proxy_env):
    result = run("check", "--deploy", "--fail-level", "DEBUG", env=proxy_env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_check_deploy_would_catch_a_weakened_setting():
    result = run("check", "--deploy", "--fail-level", "WARNING", env={"SECURE_HSTS_SECONDS": "0", "SESSION_COOKIE_SECURE": "false"})
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W012" in result.stderr


def test_check_deploy_warns_when_each_process_would_count_its_own_rate_limit():
    without_redis = {"REDIS_URL": ""}
    result = run("check", "--deploy", env=without_redis)
    assert result.returncode == 0, result.stderr  # a warning: `bin/serve.sh release` stops on it
    assert "spconnect.W001" in result.stderr and "REDIS_URL" in result.stderr
    assert run("check", "--deploy", "--fail-level", "WARNING", env=without_redis).returncode != 0
    # Not on a bare `check`, not with the limits off, and not once silenced for a single process.
    assert "spconnect.W001" not in run("check", env=without_redis).stderr
    limits_off = {**without_redis, "SPCONNECT_RATE_LIMIT_REQUESTS": "0", "SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS": "0"}
    assert "spconnect.W001" not in run("check", "--deploy", env=limits_off).stderr
    silenced = run("check", "--deploy", "--fail-level", "WARNING", env={**without_redis, "SILENCED_SYSTEM_CHECKS": "spconnect.W001"})
    assert silenced.returncode == 0 and "spconnect.W001" not in silenced.stderr


def test_production_settings_are_hardened():
    script = (
        "from django.conf import settings as s;"
        "print(s.DEBUG, s.SECURE_SSL_REDIRECT, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS,"
        " getattr(s, 'SECURE_PROXY_SSL_HEADER', None), s.SPCONNECT_TRUSTED_PROXY_COUNT,"
        " 'spconnect.middleware.RateLimitMiddleware' in s.MIDDLEWARE,"
        " 'spconnect.middleware.ContentSecurityPolicyMiddleware' in s.MIDDLEWARE,"
        " s.CACHES['default']['BACKEND'].rsplit('.', 1)[-1], 'redis' in s.Q_CLUSTER)"
    )
    result = run("shell", "--no-imports", "-c", script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "True", "True", "31536000", "None", "0", "True", "True", "RedisCache", "True"]
    # The proxy header is opt-in: only a proxy that strips client-sent X-Forwarded-Proto may set it.
    result = run("shell", "--no-imports", "-c", script, env={"USE_X_FORWARDED_PROTO": "true"})
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in result.stdout


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("SPCONNECT_RATE_LIMIT_WINDOW_SECONDS", "0", "SPCONNECT_RATE_LIMIT_WINDOW_SECONDS must be 1 or more"),
        ("SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS", "-1", "SPCONNECT_LOGIN_RATE_LIMIT_REQUESTS must be 0 or more"),
    ],
)
def test_invalid_rate_limit_settings_refuse_to_start(name, value, message):
    result = run("check", env={name: value})
    assert result.returncode != 0
    assert message in result.stderr


def test_check_deploy_refuses_an_email_backend_that_prints_sellers_links():
    console = {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    result = run("check", "--deploy", env=console)
    assert result.returncode != 0 and "spconnect.E001" in result.stderr
    assert "spconnect.E001" not in run("check", "--deploy").stderr  # the production default sends by SMTP
    assert "spconnect.E001" not in run("check", "--deploy", env={**console, "DEBUG": "true"}).stderr
