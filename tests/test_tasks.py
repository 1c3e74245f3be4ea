"""The django-q2 refresh schedule and tasks, inline and with a real `qcluster` worker."""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
from django.core.management import call_command
from django_q.models import Schedule, Task

from sellers.models import Grant
from sellers.schedules import SCHEDULES
from sellers.services.tokens import access_token_cache_clear
from sellers.tasks import grant_refresh_task, grants_refresh_due

from .conftest import ROOT, read_output, subprocess_env
from .test_tokens import connected

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_token_cache():
    access_token_cache_clear()


def test_refresh_schedule_exists_after_migrate_and_setup_is_idempotent():
    schedule = Schedule.objects.get(name="refresh-due-tokens")
    assert schedule.func == "sellers.tasks.grants_refresh_due"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 5 and schedule.repeats == -1
    out = read_output(lambda stdout: call_command("setup_schedules", stdout=stdout))
    assert "refresh-due-tokens: every 5 min" in out and "up to date" in out
    assert Schedule.objects.filter(name__in=[s.name for s in SCHEDULES]).count() == len(SCHEDULES)


def test_sweep_enqueues_one_task_per_due_grant_and_tasks_are_safe_to_run_twice(
    tenant, amazon_calls, django_capture_on_commit_callbacks
):
    _, due_one = connected(tenant, "One", expires_in=120)
    _, due_two = connected(tenant, "Two", expires_in=800)
    _, fresh = connected(tenant, "Fresh", expires_in=3000)
    with django_capture_on_commit_callbacks(execute=True):
        assert grants_refresh_due() == "enqueued 2 refresh task(s)"
    assert len(amazon_calls.token_calls) == 2
    assert Task.objects.filter(func="sellers.tasks.grant_refresh_task", success=True).count() == 2
    assert Grant.objects.get(pk=fresh.pk).refresh_count == 0
    # Delivered twice (a redelivery, or the next sweep while the queue was slow): a no-op.
    assert grant_refresh_task(due_one.pk).startswith("skipped")
    assert grant_refresh_task(987654).startswith("skipped")
    with django_capture_on_commit_callbacks(execute=True):
        assert grants_refresh_due() == "enqueued 0 refresh task(s)"
    assert len(amazon_calls.token_calls) == 2


SETUP_SCRIPT = r'''
import hashlib, json, secrets
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from sandbox.models import SandboxAuthorization
from sellers.models import Grant, Seller, Tenant

tenant = Tenant.objects.create(slug="q", name="Q Agency", application_id="amzn1.sellerapps.app.q",
                               client_id="amzn1.application-oa2-client.q", client_secret="secret-q-0123456789")
now = timezone.now()
ids = {}
for name, expires_in, revoked in (("due-1", 60, False), ("due-2", 600, False), ("fresh", 3000, False), ("revoked", 60, True)):
    refresh = "Atzr|q-" + secrets.token_urlsafe(16)
    spid = "A1" + name.upper().replace("-", "")
    SandboxAuthorization.objects.create(client_id=tenant.client_id, selling_partner_id=spid, region="na", scopes=[],
        redirect_uri=tenant.effective_redirect_uri, code_hash=secrets.token_hex(32), code_expires_at=now, code_used_at=now,
        refresh_token_hash=hashlib.sha256(refresh.encode()).hexdigest())
    seller = Seller.objects.create(tenant=tenant, name=name, selling_partner_id=spid, status="revoked" if revoked else "active")
    grant = Grant.objects.create(seller=seller, refresh_token=refresh, access_token="Atza|old-" + name,
        access_token_expires_at=now + timedelta(seconds=expires_in), authorized_at=now,
        status="revoked" if revoked else "active", revoked_at=now if revoked else None)
    ids[name] = grant.pk
print(json.dumps(ids))
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {proc.stderr.read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.stderr.read()[-3000:] if proc.stderr else ""


@pytest.mark.django_db(transaction=True)
def test_a_real_qcluster_run_refreshes_due_grants(tmp_path, sqlite_file_db):
    """`migrate` created the schedule; a worker's scheduler fires it, per-grant tasks refresh over
    real HTTP against the sandbox served by runserver. Runs on a temporary SQLite file (the suite's
    in-memory database cannot be shared with other processes) and Redis when REDIS_URL is set."""
    port = free_port()
    (tmp_path / "qtest_settings.py").write_text(
        "from tests.settings import *  # noqa\n"
        "Q_CLUSTER = {k: v for k, v in Q_CLUSTER.items() if k != 'sync'}\n"
        f"Q_CLUSTER.update(name='spconnect-qtest-{uuid.uuid4().hex[:8]}', workers=2)\n"
        "# The guard calls the scheduler once its cycle counter reaches 30 s; one 30 s cycle means\n"
        "# the first call happens at start-up instead of half a minute later.\n"
        "Q_CLUSTER['guard_cycle'] = 30\n"
    )
    env = subprocess_env(sqlite_file_db, DJANGO_SETTINGS_MODULE="qtest_settings", PYTHONPATH=f"{ROOT}:{tmp_path}",
                         SITE_URL=f"http://127.0.0.1:{port}")
    script = tmp_path / "setup.py"
    script.write_text(SETUP_SCRIPT)
    ids = json.loads(subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env, check=True, timeout=60,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1])
    web = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                           cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        wait_for_port(port, web)
        worker = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        db_path = sqlite_file_db.removeprefix("sqlite:///")
        due = (ids["due-1"], ids["due-2"])
        deadline = time.monotonic() + 25
        counts = {}
        while time.monotonic() < deadline:
            with sqlite3.connect(db_path, timeout=5) as db:
                counts = dict(db.execute("SELECT id, refresh_count FROM sellers_grant").fetchall())
            if all(counts.get(pk) == 1 for pk in due):
                break
            time.sleep(0.5)
    finally:
        worker_log = stop(worker) if worker else ""
        stop(web)
    assert all(counts.get(pk) == 1 for pk in due), worker_log
    assert counts[ids["fresh"]] == 0 and counts[ids["revoked"]] == 0
    with sqlite3.connect(db_path) as db:
        funcs = [row[0] for row in db.execute("SELECT func FROM django_q_task WHERE success = 1")]
        assert funcs.count("sellers.tasks.grant_refresh_task") >= 2 and "sellers.tasks.grants_refresh_due" in funcs
        refreshed = db.execute("SELECT COUNT(*) FROM sellers_grant WHERE version = 2 AND last_error = ''").fetchone()[0]
        assert refreshed == 2
