"""Access tokens: cached while valid, refreshed once under concurrency, revocation, transient
failures with backoff and the failing/recovered streak, app-credential failures."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from sandbox.models import SandboxAuthorization
from sellers.models import Event, Grant, Seller, Tenant, TenantMembership
from sellers.services.tokens import (
    AppCredentialsRejected,
    ReauthorizationRequired,
    RefreshOutcome,
    TokenUnavailable,
    access_token_cache_clear,
    grant_access_token,
    grant_refresh,
    grants_due,
)
from sellers.services.tokens import refresh as tokens

from .conftest import INVENTORY, ORDERS, ROOT, make_grant, make_seller, requires_postgres, shows_token, subprocess_env
from .flow import run_flow


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()
    yield
    access_token_cache_clear()


def connected(tenant: Tenant, name: str = "Shop", *, spid: str | None = None, scopes=(ORDERS, INVENTORY),
              sandbox_scopes=None, expires_in: int = 3600) -> tuple[Seller, Grant]:
    """A seller whose refresh token the in-process sandbox knows (as after a real consent)."""
    spid = spid or "A1" + secrets.token_hex(5).upper()
    refresh = "Atzr|sandbox-test-" + secrets.token_urlsafe(24)
    now = timezone.now()
    SandboxAuthorization.objects.create(
        client_id=tenant.client_id, selling_partner_id=spid, region="na",
        scopes=list(scopes if sandbox_scopes is None else sandbox_scopes), redirect_uri=tenant.effective_redirect_uri,
        code_hash=secrets.token_hex(32), code_expires_at=now, code_used_at=now,
        refresh_token_hash=hashlib.sha256(refresh.encode()).hexdigest(),
    )
    seller = make_seller(tenant, name, spid=spid)
    grant = make_grant(seller, scopes=scopes, expires_in=expires_in, refresh_token=refresh)
    seller.refresh_from_db()
    return seller, grant


def staff(make_user, tenant, username, role=TenantMembership.Role.OWNER):
    user = make_user(username, tenant=tenant, role=role)
    user.email = f"{username}@agency.example"
    user.save()
    return user


pytestmark = pytest.mark.django_db


# --- Hot path -------------------------------------------------------------------------------


def test_valid_token_costs_no_lwa_call_and_no_query(tenant, amazon_calls, django_assert_num_queries):
    _, grant = connected(tenant, expires_in=3600)
    with django_assert_num_queries(0):
        for _ in range(5):
            assert grant_access_token(grant=grant) == grant.access_token
    assert amazon_calls.calls == []


def test_grant_loaded_without_tokens_costs_one_small_query_then_none(tenant, amazon_calls, django_assert_num_queries):
    _, grant = connected(tenant)
    light = Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=grant.pk)
    with django_assert_num_queries(1):
        assert grant_access_token(grant=light) == grant.access_token
    again = Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=grant.pk)
    with django_assert_num_queries(0):
        assert grant_access_token(grant=again) == grant.access_token
    assert amazon_calls.token_calls == []


def test_cache_is_not_used_once_the_grant_changed(tenant):
    _, grant = connected(tenant)
    light = Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=grant.pk)
    assert grant_access_token(grant=light) == grant.access_token  # cached now
    # Another process refreshes: new token, new expiry, version bumped.
    Grant.objects.filter(pk=grant.pk).update(
        access_token="Atza|from-another-process", access_token_expires_at=timezone.now() + timedelta(hours=1),
        version=grant.version + 1,
    )
    newer = Grant.objects.only("id", "status", "version", "access_token_expires_at").get(pk=grant.pk)
    assert grant_access_token(grant=newer) == "Atza|from-another-process"


# --- Refresh --------------------------------------------------------------------------------


def test_expiring_token_is_refreshed_once_and_stored_without_history(tenant, amazon_calls):
    seller, grant = connected(tenant, expires_in=60)  # inside the 5-minute margin
    events_before = Event.objects.count()
    token = grant_access_token(grant=grant)
    assert [c.grant_type for c in amazon_calls.token_calls] == ["refresh_token"]
    stored = Grant.objects.get(pk=grant.pk)
    assert token == stored.access_token and token.startswith("Atza|sandbox")
    assert stored.access_token_expires_at > timezone.now() + timedelta(minutes=55)
    assert stored.version == 2 and stored.refresh_count == 1 and stored.last_refreshed_at is not None
    assert Event.objects.count() == events_before  # routine refreshes do not flood the history
    assert grant_access_token(grant=stored) == token
    assert len(amazon_calls.token_calls) == 1


def test_a_routine_refresh_costs_at_most_four_queries(tenant, amazon_calls, django_assert_max_num_queries):
    _, grant = connected(tenant, expires_in=60)
    # A scripted LWA answer keeps the in-process sandbox's own queries out of the count.
    amazon_calls.script(url_contains="/auth/o2/token", body={"access_token": "Atza|n", "expires_in": 3600})
    with django_assert_max_num_queries(4):  # read (FOR UPDATE on PostgreSQL) + UPDATE (+ savepoint pair)
        assert grant_refresh(grant=grant).outcome == RefreshOutcome.REFRESHED


def test_a_sweep_costs_at_most_four_queries_per_refresh(tenant, amazon_calls, django_assert_max_num_queries):
    from sellers.services.tokens import grants_refresh

    ids = [connected(tenant, f"S{i}", expires_in=60)[1].pk for i in range(10)]
    amazon_calls.script(url_contains="/auth/o2/token", body={"access_token": "Atza|n", "expires_in": 3600}, times=None)
    with django_assert_max_num_queries(4 * len(ids) + 1):  # + the batch read
        summary = grants_refresh(grant_ids=ids)
    assert summary.counts[RefreshOutcome.REFRESHED] == 10
    assert Grant.objects.filter(pk__in=ids, version=2, refresh_count=1).count() == 10


def test_a_sweep_stores_what_the_orm_reads_back(tenant, amazon_calls):
    """The sweep writes with its own two statements; the ORM must read exactly what it meant."""
    from sellers.services.tokens import grants_refresh

    _, grant = connected(tenant, expires_in=60)
    amazon_calls.script(url_contains="/auth/o2/token", body={"access_token": "Atza|swept-token", "expires_in": 3600})
    before = timezone.now()
    grants_refresh(grant_ids=[grant.pk])
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.access_token == "Atza|swept-token" and stored.version == grant.version + 1
    assert timezone.is_aware(stored.access_token_expires_at)
    assert before + timedelta(seconds=3590) < stored.access_token_expires_at < timezone.now() + timedelta(seconds=3610)
    assert stored.last_refreshed_at >= before and stored.refresh_count == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT access_token FROM sellers_grant WHERE id = %s", [grant.pk])
        assert "swept-token" not in cursor.fetchone()[0]  # encrypted like any ORM write


def test_a_sweep_sees_a_backoff_recorded_after_it_loaded_the_grant(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=60)
    preloaded = Grant.objects.select_related("seller__tenant").get(pk=grant.pk)
    retry_at = timezone.now() + timedelta(minutes=10)
    Grant.objects.filter(pk=grant.pk).update(next_attempt_at=retry_at, consecutive_failures=2)  # another worker failed
    result = tokens._refresh(grant.pk, actor="test", force=False, fresh_margin=timedelta(minutes=15), preloaded=preloaded)
    assert result.outcome == RefreshOutcome.SKIPPED and "Backing off" in result.detail
    assert preloaded.next_attempt_at == retry_at and preloaded.consecutive_failures == 2
    assert amazon_calls.token_calls == []


def test_second_refresh_of_a_fresh_token_is_a_no_op(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=600)  # inside the 15-minute refresh window
    first = grant_refresh(grant=grant)
    second = grant_refresh(grant=grant)
    assert first.outcome == RefreshOutcome.REFRESHED and second.outcome == RefreshOutcome.SKIPPED
    assert len(amazon_calls.token_calls) == 1


def test_rotated_refresh_token_replaces_the_old_one(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=0)
    amazon_calls.script(
        url_contains="/auth/o2/token",
        body={"access_token": "Atza|rotated-access", "refresh_token": "Atzr|rotated-refresh", "token_type": "bearer", "expires_in": 3600},
    )
    result = grant_refresh(grant=grant)
    assert result.outcome == RefreshOutcome.REFRESHED and "new refresh token" in result.detail
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.refresh_token == "Atzr|rotated-refresh" and stored.access_token == "Atza|rotated-access"


def test_refresh_result_after_reauthorization_race_is_discarded(tenant, amazon_calls, monkeypatch):
    _, grant = connected(tenant, expires_in=0)
    real = tokens._on_success

    def reauthorized_meanwhile(g, token, *, actor):
        Grant.objects.filter(pk=g.pk).update(version=g.version + 5, access_token="Atza|newer-grant")
        return real(g, token, actor=actor)

    monkeypatch.setattr(tokens, "_on_success", reauthorized_meanwhile)
    result = grant_refresh(grant=grant)
    assert result.outcome == RefreshOutcome.SKIPPED and "changed during the refresh" in result.detail
    assert Grant.objects.get(pk=grant.pk).access_token == "Atza|newer-grant"


def test_invalid_grant_for_old_tokens_does_not_revoke_a_reauthorization_stored_meanwhile(
    tenant, amazon_calls, monkeypatch, make_user, django_capture_on_commit_callbacks
):
    """SQLite has no row lock: the seller re-authorizes while LWA refuses the old refresh token."""
    staff(make_user, tenant, "owner")
    seller, grant = connected(tenant, expires_in=0)
    real = tokens._on_revoked

    def reauthorized_meanwhile(g, exc, *, actor):
        Grant.objects.filter(pk=g.pk).update(version=g.version + 1, refresh_token="Atzr|from-the-new-consent")
        return real(g, exc, actor=actor)

    monkeypatch.setattr(tokens, "_on_revoked", reauthorized_meanwhile)
    call_command("sandbox", "revoke", seller.selling_partner_id, stdout=open(os.devnull, "w"))
    with django_capture_on_commit_callbacks(execute=True):
        result = grant_refresh(grant=grant)
    assert result.outcome == RefreshOutcome.SKIPPED and "changed during the refresh" in result.detail
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.status == Grant.Status.ACTIVE and stored.refresh_token == "Atzr|from-the-new-consent"
    assert not Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).exists()
    assert mail.outbox == []
    seller.refresh_from_db()
    assert seller.status != Seller.Status.REVOKED


# --- Revocation -----------------------------------------------------------------------------


def test_sandbox_revoke_then_refresh_marks_seller_revoked_with_event_and_notification(
    tenant, amazon_calls, make_user, django_capture_on_commit_callbacks
):
    staff(make_user, tenant, "owner")
    staff(make_user, tenant, "viewer", role=TenantMembership.Role.VIEWER)
    seller, grant = connected(tenant, expires_in=60)
    call_command("sandbox", "revoke", seller.selling_partner_id, stdout=open(os.devnull, "w"))
    with django_capture_on_commit_callbacks(execute=True):
        result = grant_refresh(grant=grant)
    assert result.outcome == RefreshOutcome.REVOKED and "revoked" in result.detail
    seller.refresh_from_db()
    stored = Grant.objects.get(pk=grant.pk)
    assert seller.status == Seller.Status.REVOKED
    assert stored.status == Grant.Status.REVOKED and stored.revoked_at is not None and stored.access_token == ""
    event = Event.objects.get(seller=seller, kind=Event.Kind.REVOKED)
    assert "User may have revoked" in event.detail and event.actor == "amazon"
    assert [m.to for m in mail.outbox] == [["owner@agency.example"]]
    assert seller.name in mail.outbox[0].subject and "revoked" in mail.outbox[0].subject
    assert not shows_token(mail.outbox[0].body)

    # Never refreshed again: not due, a forced refresh calls nobody, callers get the link.
    calls = len(amazon_calls.token_calls)
    assert not grants_due().filter(pk=grant.pk).exists()
    assert grant_refresh(grant=stored, force=True).outcome == RefreshOutcome.REVOKED
    with pytest.raises(ReauthorizationRequired) as caught:
        grant_access_token(grant=stored)
    assert caught.value.link.seller_id == seller.pk and "/connect/" in caught.value.link.url
    assert len(amazon_calls.token_calls) == calls


def test_reauthorization_link_restores_the_revoked_seller_in_place(client, tenant, amazon_calls):
    from sellers.services.invitations import invitation_create

    invitation = invitation_create(tenant=tenant, name="Comeback")
    run_flow(client, invitation.url, spid="A1COMEBACK")
    grant = Grant.objects.get(seller=invitation.seller)
    Grant.objects.filter(pk=grant.pk).update(access_token_expires_at=timezone.now())
    call_command("sandbox", "revoke", "A1COMEBACK", stdout=open(os.devnull, "w"))
    with pytest.raises(ReauthorizationRequired) as caught:
        grant_access_token(grant=Grant.objects.get(pk=grant.pk))
    assert Seller.objects.get(pk=invitation.seller.pk).status == Seller.Status.REVOKED

    page = run_flow(client, caught.value.link.url, spid="A1COMEBACK")
    assert page.status_code == 200
    seller = Seller.objects.get(pk=invitation.seller.pk)
    assert seller.status == Seller.Status.ACTIVE
    restored = Grant.objects.get(seller=seller)
    assert restored.pk == grant.pk and restored.status == Grant.Status.ACTIVE and restored.revoked_at is None
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REAUTHORIZED).count() == 1
    assert grant_access_token(grant=restored) == restored.access_token


# --- Transient failures -----------------------------------------------------------------------


def test_lwa_outage_keeps_grant_usable_then_failing_then_active_again(
    tenant, amazon_calls, make_user, django_capture_on_commit_callbacks, settings
):
    settings.SPCONNECT_FAILING_THRESHOLD = 3
    staff(make_user, tenant, "owner")
    seller, grant = connected(tenant, expires_in=600)  # due (window 15 min), still valid (margin 5 min)
    old_token = grant.access_token
    amazon_calls.lwa_error("server_error", status=503, times=2)
    amazon_calls.script(url_contains="/auth/o2/token", exc=requests.Timeout("read timed out"), times=2)

    with django_capture_on_commit_callbacks(execute=True):
        for attempt in range(1, 5):
            result = grant_refresh(grant=grant)
            assert result.outcome == RefreshOutcome.TRANSIENT_FAILURE
            stored = Grant.objects.get(pk=grant.pk)
            assert stored.consecutive_failures == attempt and stored.status == Grant.Status.ACTIVE
            assert stored.next_attempt_at > timezone.now()
            # The stored token still works for callers, without another LWA call.
            assert grant_access_token(grant=stored) == old_token
            expected = Seller.Status.FAILING if attempt >= 3 else Seller.Status.ACTIVE
            assert Seller.objects.get(pk=seller.pk).status == expected
            Grant.objects.filter(pk=grant.pk).update(next_attempt_at=None)  # time passes
    assert len(amazon_calls.token_calls) == 4
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REFRESH_FAILING).count() == 1
    assert Event.objects.filter(seller=seller, kind=Event.Kind.REVOKED).count() == 0
    assert len(mail.outbox) == 1 and "failing" in mail.outbox[0].subject

    with django_capture_on_commit_callbacks(execute=True):
        result = grant_refresh(grant=grant)
    assert result.outcome == RefreshOutcome.REFRESHED
    stored = Grant.objects.get(pk=grant.pk)
    assert stored.consecutive_failures == 0 and stored.failing_since is None and stored.next_attempt_at is None
    assert Seller.objects.get(pk=seller.pk).status == Seller.Status.ACTIVE
    recovered = Event.objects.get(seller=seller, kind=Event.Kind.REFRESH_RECOVERED)
    assert recovered.data == {"from": "failing", "to": "active"}
    assert "recovered" in mail.outbox[-1].subject


def test_backoff_is_respected_and_grows_with_failures(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=600)
    amazon_calls.lwa_error("temporarily_unavailable", status=503, times=None)
    before = timezone.now()
    assert grant_refresh(grant=grant).outcome == RefreshOutcome.TRANSIENT_FAILURE
    first = Grant.objects.get(pk=grant.pk).next_attempt_at
    assert before + timedelta(seconds=14) < first <= timezone.now() + timedelta(seconds=tokens.BACKOFF_BASE_SECONDS)
    skipped = grant_refresh(grant=grant)
    assert skipped.outcome == RefreshOutcome.SKIPPED and "Backing off" in skipped.detail
    assert not grants_due().filter(pk=grant.pk).exists()
    assert len(amazon_calls.token_calls) == 1
    Grant.objects.filter(pk=grant.pk).update(next_attempt_at=None, consecutive_failures=5)
    grant_refresh(grant=grant)
    fifth = Grant.objects.get(pk=grant.pk).next_attempt_at - timezone.now()
    assert fifth > timedelta(seconds=tokens.BACKOFF_BASE_SECONDS * 2**5 / 2 - 5)


def test_lwa_429_retry_after_sets_the_next_attempt(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=600)
    amazon_calls.script(url_contains="/auth/o2/token", status=429, body={"error": "rate_limited"}, headers={"Retry-After": "900"})
    assert grant_refresh(grant=grant).outcome == RefreshOutcome.TRANSIENT_FAILURE
    assert Grant.objects.get(pk=grant.pk).next_attempt_at >= timezone.now() + timedelta(seconds=890)


def test_expired_token_while_lwa_is_down_raises_token_unavailable(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=-10)
    amazon_calls.script(url_contains="/auth/o2/token", status=200, raw=b"<html>not json</html>")
    with pytest.raises(TokenUnavailable) as caught:
        grant_access_token(grant=grant)
    assert caught.value.retry_at is not None and not shows_token(str(caught.value))
    assert Grant.objects.get(pk=grant.pk).last_error.startswith("malformed_response")
    # Backing off: an immediate second ask does not call LWA again.
    with pytest.raises(TokenUnavailable):
        grant_access_token(grant=Grant.objects.get(pk=grant.pk))
    assert len(amazon_calls.token_calls) == 1


# --- App credentials -------------------------------------------------------------------------


def test_invalid_client_flags_tenant_notifies_once_and_revokes_no_seller(
    tenant, other_tenant, amazon_calls, make_user, django_capture_on_commit_callbacks
):
    staff(make_user, tenant, "owner")
    one, g1 = connected(tenant, "One", expires_in=60)
    two, g2 = connected(tenant, "Two", expires_in=-5)  # expired: nothing usable left
    three, g3 = connected(tenant, "Three", expires_in=600)
    elsewhere, g4 = connected(other_tenant, "Elsewhere", expires_in=60)
    amazon_calls.lwa_error("invalid_client", status=401, description="Client authentication failed", times=None)
    with django_capture_on_commit_callbacks(execute=True):
        assert grant_refresh(grant=g1).outcome == RefreshOutcome.CREDENTIALS_FAILED
        with pytest.raises(AppCredentialsRejected):
            grant_access_token(grant=Grant.objects.get(pk=g2.pk))
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is not None and "invalid_client" in tenant.credentials_error
    assert Event.objects.filter(tenant=tenant, kind=Event.Kind.CREDENTIALS_INVALID).count() == 1
    assert len(mail.outbox) == 1 and "credentials" in mail.outbox[0].subject
    assert set(Seller.objects.filter(tenant=tenant).values_list("status", flat=True)) == {Seller.Status.ACTIVE}
    assert not Grant.objects.filter(status=Grant.Status.REVOKED).exists()
    assert Grant.objects.get(pk=g1.pk).consecutive_failures == 0
    # While flagged, the sweep probes the tenant with one grant instead of all of them.
    due = list(grants_due().values_list("pk", flat=True))
    assert g4.pk in due and len([pk for pk in due if pk in (g1.pk, g2.pk, g3.pk)]) == 1

    amazon_calls.scripted.clear()  # the owner fixed the secret
    assert grant_refresh(grant=g1).outcome == RefreshOutcome.REFRESHED
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is None
    assert Event.objects.filter(tenant=tenant, kind=Event.Kind.CREDENTIALS_RECOVERED).count() == 1


def test_previous_secret_is_tried_during_a_rotation(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=0)
    good = tenant.client_secret
    Tenant.objects.filter(pk=tenant.pk).update(client_secret="brand-new-secret-not-live-yet", previous_client_secret=good)
    amazon_calls.lwa_error("invalid_client", status=401, times=1)  # LWA does not know the new one yet
    assert grant_refresh(grant=Grant.objects.get(pk=grant.pk)).outcome == RefreshOutcome.REFRESHED
    assert [c.data["client_secret"] for c in amazon_calls.token_calls] == ["brand-new-secret-not-live-yet", good]
    tenant.refresh_from_db()
    assert tenant.credentials_failing_since is None


# --- Sweep selection ----------------------------------------------------------------------------


def test_grants_due_takes_the_window_and_skips_revoked_and_backing_off(tenant):
    _, soon = connected(tenant, "Soon", expires_in=600)
    _, later = connected(tenant, "Later", expires_in=3000)
    _, expired = connected(tenant, "Expired", expires_in=-100)
    _, waiting = connected(tenant, "Waiting", expires_in=100)
    _, gone = connected(tenant, "Gone", expires_in=100)
    Grant.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=3))
    Grant.objects.filter(pk=gone.pk).update(status=Grant.Status.REVOKED, revoked_at=timezone.now())
    assert set(grants_due().values_list("pk", flat=True)) == {soon.pk, expired.pk}


# --- Single flight across threads and processes --------------------------------------------------

ASK_SCRIPT = r'''
import copy, json, os, sys, threading, time
import django
django.setup()
from datetime import timedelta
import requests
from django.db import connections
from django.utils import timezone
from sellers import http as amazon
from sellers.models import Grant, Seller, Tenant

if sys.argv[1] == "setup":
    tenant = Tenant.objects.create(slug="flight", name="Flight", application_id="amzn1.sellerapps.app.flight",
                                   client_id="amzn1.application-oa2-client.flight", client_secret="secret-flight-0123456789")
    seller = Seller.objects.create(tenant=tenant, name="Flight Shop", selling_partner_id="A1FLIGHT", status="active")
    now = timezone.now()
    grant = Grant.objects.create(seller=seller, refresh_token="Atzr|flight-refresh", access_token="Atza|expired",
                                 access_token_expires_at=now - timedelta(seconds=5), authorized_at=now)
    print(grant.pk)
    sys.exit(0)

from sellers.services.tokens import grant_access_token

grant_id, threads, start_at, calls_file = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]

def slow_lwa(method, url, **kwargs):
    fd = os.open(calls_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()} {kwargs.get('data', {}).get('grant_type')}\n".encode())
    os.close(fd)
    time.sleep(0.4)  # everybody else piles up behind the lock meanwhile
    response = requests.Response()
    response.status_code = 200
    response.headers["Content-Type"] = "application/json"
    response._content = json.dumps({"access_token": f"Atza|fresh-{os.getpid()}-{time.time_ns()}",
                                    "token_type": "bearer", "expires_in": 3600}).encode()
    return response

amazon.send = slow_lwa
grant = Grant.objects.get(pk=grant_id)
connections.close_all()
tokens, errors = [], []

def ask():
    mine = copy.copy(grant)
    while time.time() < start_at:
        time.sleep(0.002)
    try:
        tokens.append(grant_access_token(grant=mine))
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connections.close_all()

pool = [threading.Thread(target=ask) for _ in range(threads)]
for t in pool:
    t.start()
for t in pool:
    t.join()
print(json.dumps({"tokens": tokens, "errors": errors}))
'''


def postgres_test_db_url() -> str:
    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def run_single_flight(database_url: str, tmp_path: Path, *, processes: int, threads: int) -> tuple[list[str], list[str], list[str]]:
    script = tmp_path / "ask.py"
    script.write_text(ASK_SCRIPT)
    env = subprocess_env(database_url)
    grant_id = subprocess.run([sys.executable, str(script), "setup"], cwd=ROOT, env=env, check=True, timeout=60,
                              capture_output=True, text=True).stdout.strip().splitlines()[-1]
    calls_file = tmp_path / "lwa-calls.txt"
    start_at = time.time() + 4  # every process set up and waiting before the first asks
    procs = [
        subprocess.Popen([sys.executable, str(script), "ask", grant_id, str(threads), str(start_at), str(calls_file)],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    tokens_seen, errors = [], []
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err[-2000:]
        answer = json.loads(out.strip().splitlines()[-1])
        tokens_seen += answer["tokens"]
        errors += answer["errors"]
    calls = calls_file.read_text().splitlines() if calls_file.exists() else []
    return calls, tokens_seen, errors


@pytest.mark.django_db(transaction=True)
def test_fifty_threads_asking_for_one_expired_grant_make_one_lwa_call(tmp_path, request):
    if connection.vendor == "postgresql":
        url = postgres_test_db_url()
    else:
        # The suite's in-memory SQLite cannot be shared with another process: use a file.
        url = request.getfixturevalue("sqlite_file_db")
    calls, tokens_seen, errors = run_single_flight(url, tmp_path, processes=1, threads=50)
    assert errors == []
    assert calls == [calls[0]] and calls[0].endswith("refresh_token")
    assert len(tokens_seen) == 50 and len(set(tokens_seen)) == 1 and tokens_seen[0].startswith("Atza|fresh-")


@pytest.mark.django_db(transaction=True)
def test_four_processes_share_one_refresh_on_a_sqlite_file(tmp_path, sqlite_file_db):
    calls, tokens_seen, errors = run_single_flight(sqlite_file_db, tmp_path, processes=4, threads=8)
    assert errors == []
    assert len(calls) == 1
    assert len(tokens_seen) == 32 and len(set(tokens_seen)) == 1


@pytest.mark.postgres
@requires_postgres
@pytest.mark.django_db(transaction=True)
def test_four_processes_share_one_refresh_on_postgres(tmp_path):
    calls, tokens_seen, errors = run_single_flight(postgres_test_db_url(), tmp_path, processes=4, threads=12)
    assert errors == []
    assert len(calls) == 1
    assert len(tokens_seen) == 48 and len(set(tokens_seen)) == 1


def test_copied_grant_instances_do_not_share_refresh_state(tenant, amazon_calls):
    _, grant = connected(tenant, expires_in=0)
    a, b = copy.copy(grant), copy.copy(grant)
    assert grant_access_token(grant=a) == grant_access_token(grant=b)
    assert len(amazon_calls.token_calls) == 1
