"""`manage.py refresh_tokens`: due or all grants, per tenant, dry run, summary."""

from __future__ import annotations

import os

import pytest
from django.core.management import CommandError, call_command

from sellers.models import Grant, Seller
from sellers.services.tokens import access_token_cache_clear

from .conftest import read_output, shows_token
from .test_tokens import connected

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


def run(*args) -> str:
    return read_output(lambda stdout: call_command("refresh_tokens", *args, stdout=stdout, stderr=open(os.devnull, "w")))


def test_due_refreshes_only_grants_inside_the_window(tenant, amazon_calls):
    _, soon = connected(tenant, "Soon", expires_in=300)
    _, later = connected(tenant, "Later", expires_in=3000)
    out = run("--due")
    assert "1 due grant(s) in all tenants: refreshed 1, revoked 0, failed 0" in out
    assert len(amazon_calls.token_calls) == 1
    assert Grant.objects.get(pk=soon.pk).refresh_count == 1 and Grant.objects.get(pk=later.pk).refresh_count == 0
    assert not shows_token(out)
    assert "No due grants" in run()  # --due is the default; the second run has nothing left


def test_all_refreshes_fresh_grants_and_reports_revoked_ones(tenant, amazon_calls):
    connected(tenant, "Fresh", expires_in=3000)
    gone, _ = connected(tenant, "Gone", expires_in=3000)
    call_command("sandbox", "revoke", gone.selling_partner_id, stdout=open(os.devnull, "w"))
    out = run("--all")
    assert "2 active grant(s) in all tenants: refreshed 1, revoked 1, failed 0" in out
    assert f"Gone ({gone.selling_partner_id}): Revoked" in out
    assert Seller.objects.get(pk=gone.pk).status == Seller.Status.REVOKED


def test_tenant_filter_and_transient_failures_in_the_summary(tenant, other_tenant, amazon_calls):
    connected(tenant, "Mine", expires_in=60)
    _, theirs = connected(other_tenant, "Theirs", expires_in=60)
    amazon_calls.lwa_error("server_error", status=500)
    out = run("--tenant", "acme")
    assert "1 due grant(s) in tenant acme: refreshed 0, revoked 0, failed 1 (app credentials 0, transient 1)" in out
    assert Grant.objects.get(pk=theirs.pk).refresh_count == 0


def test_dry_run_calls_nobody(tenant, amazon_calls):
    connected(tenant, "Soon", expires_in=60)
    out = run("--dry-run")
    assert "Dry run: 1 due grant(s) in all tenants would be refreshed" in out
    assert amazon_calls.calls == []


def test_bad_arguments_are_clear_errors(tenant):
    with pytest.raises(CommandError, match="Unknown tenant 'nope'"):
        run("--tenant", "nope")
    with pytest.raises(CommandError, match="--workers"):
        run("--workers", "0")
    with pytest.raises(CommandError):
        run("--due", "--all")
