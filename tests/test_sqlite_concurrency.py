"""SQLite, the default database: callbacks that arrive at the same moment wait for each other
instead of failing with "database is locked".

A real server (runserver, threaded, the project's own settings) on a SQLite file, the local
sandbox as Amazon, and pairs of browsers that send their callbacks for one seller at once.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import requests

from .conftest import ROOT, parse_form
from .test_tasks import free_port, stop, wait_for_port

PAIRS = 6

SETUP = """
import django
django.setup()
from sellers.models import ScopeRequirement, Tenant
from sellers.services.invitations import invitation_create
tenant = Tenant.objects.create(
    slug="acme", name="Acme Agency", application_id="amzn1.sellerapps.app.acme",
    client_id="amzn1.application-oa2-client.acme", client_secret="secret-acme-0123456789",
    registered_scopes=["sellingpartnerapi::orders"],
)
ScopeRequirement.objects.create(tenant=tenant, scope="sellingpartnerapi::orders", reason="Orders.")
for n in range(int(__import__("sys").argv[1])):
    print(invitation_create(tenant=tenant, name=f"Shop {n}").url)
"""


def server_env(database_url: str, site_url: str) -> dict:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "DEBUG": "true",
        "SECRET_KEY": "concurrency-test-secret-key-0123456789abcdef0123456789",
        "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
        "SPAPI_SANDBOX": "true",
        "SITE_URL": site_url,
        "DATABASE_URL": database_url,
        "REDIS_URL": "",
        # Some 40 requests from one address: the rate limit is not what is tested here.
        "SPCONNECT_RATE_LIMIT_REQUESTS": "0",
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }


def callback_url(invite_url: str, spid: str) -> tuple[requests.Session, str]:
    """Open the invitation and approve at the sandbox; return the browser and its callback URL."""
    browser = requests.Session()
    page = browser.get(invite_url, timeout=20)
    assert page.status_code == 200, page.status_code
    csrf = [v for n, v, *_ in parse_form(page.text)["fields"] if n == "csrfmiddlewaretoken"][0]
    start = browser.post(invite_url + "start/", data={"csrfmiddlewaretoken": csrf}, allow_redirects=False, timeout=20)
    assert start.status_code == 302, start.status_code
    consent_url = start.headers["Location"]
    consent = browser.get(consent_url, timeout=20)
    assert consent.status_code == 200, consent.status_code
    form = parse_form(consent.text)
    data = {n: v for n, v, kind, _ in form["fields"] if kind != "checkbox"}
    data.update(selling_partner_id=spid, decision="approve", scope=[v for n, v, kind, _ in form["fields"] if kind == "checkbox"])
    back = browser.post(consent_url.split("?")[0], data=data, allow_redirects=False, timeout=20)
    assert back.status_code == 302, back.status_code
    return browser, back.headers["Location"]


def test_simultaneous_callbacks_for_one_seller_never_answer_database_is_locked(sqlite_file_db):
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    env = server_env(sqlite_file_db, site)
    setup = subprocess.run([sys.executable, "-c", SETUP, str(PAIRS)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert setup.returncode == 0, setup.stderr[-2000:]
    invites = setup.stdout.split()
    assert len(invites) == PAIRS
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    answers: list[tuple[int, str]] = []
    try:
        wait_for_port(port, server)
        for n, invite in enumerate(invites):
            # Two browsers of one seller, both back from Amazon's consent page.
            spid = f"A1PAIR{n:04d}"
            pair = [callback_url(invite, spid), callback_url(invite, spid)]
            barrier = threading.Barrier(len(pair))

            def land(browser: requests.Session, url: str, barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                response = browser.get(url, timeout=60)
                answers.append((response.status_code, response.text))

            threads = [threading.Thread(target=land, args=browser_and_url) for browser_and_url in pair]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        log = stop(server)

    assert len(answers) == 2 * PAIRS
    failed = [(status, text[:300]) for status, text in answers if status >= 500]
    assert failed == [], failed
    assert "database is locked" not in log
    # Every seller ends connected, once.
    with sqlite3.connect(Path(sqlite_file_db.removeprefix("sqlite:///"))) as db:
        connected = db.execute(
            "SELECT COUNT(*) FROM sellers_grant g JOIN sellers_seller s ON s.id = g.seller_id WHERE g.status = 'active'"
        ).fetchone()[0]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert connected == PAIRS
    assert journal == "wal"
