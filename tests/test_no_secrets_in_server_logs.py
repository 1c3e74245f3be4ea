"""No invitation token, OAuth state or authorization code in what the servers write.

Each server runs as a real process, as it is run for people: `bin/run_dev.sh` (`make run`:
runserver and a qcluster worker, DEBUG on) and `bin/serve.sh web` (gunicorn, production
settings). A browser drives an invitation through the sandbox's consent page to the callback,
then opens the used, an expired and an unknown invitation link (Django logs `Gone:` and
`Not Found:` with the path). Everything the processes wrote to stdout and stderr is searched.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from .conftest import ROOT
from .test_e2e_http import browser_flow

# Runs inside the server's environment, against its database: a tenant, a live invitation and
# one that expired yesterday.
SETUP = """
import json
from datetime import timedelta

import django

django.setup()
from django.utils import timezone

from sellers.services.invitations import invitation_create
from tests.conftest import make_tenant

tenant = make_tenant("acme")
live = invitation_create(tenant=tenant, name="Logged Shop")
expired = invitation_create(tenant=tenant, name="Late Shop")
type(expired).objects.filter(pk=expired.pk).update(expires_at=timezone.now() - timedelta(days=1))
print(json.dumps({"live": live.token, "expired": expired.token}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(tmp_path: Path, database_url: str, port: int) -> dict:
    """What a `.env` written by bin/write_env.py holds, plus this run's database and address."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),  # gunicorn's control socket goes under $HOME
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "spconnect.settings",
        "SPCONNECT_ENV_FILE": "/nonexistent",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM=",
        "SITE_URL": f"http://127.0.0.1:{port}",
        "SPAPI_SANDBOX": "true",
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "DEBUG",
        "Q_WORKERS": "1",
    }


def runserver(tmp_path: Path, database_url: str, port: int) -> tuple[list[str], dict]:
    env = base_env(tmp_path, database_url, port) | {"DEBUG": "true"}
    return ["bash", "bin/run_dev.sh", "127.0.0.1", str(port)], env


def gunicorn(tmp_path: Path, database_url: str, port: int) -> tuple[list[str], dict]:
    env = base_env(tmp_path, database_url, port) | {
        # Production settings, over plain HTTP on 127.0.0.1, with the sandbox as Amazon.
        "DEBUG": "false",
        "SPAPI_SANDBOX_ALLOW_WITHOUT_DEBUG": "true",
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "SESSION_COOKIE_SECURE": "false",
        "CSRF_COOKIE_SECURE": "false",
        "SECURE_HSTS_SECONDS": "0",
        "STATIC_ROOT": str(tmp_path / "static"),
        "PYTHON": sys.executable,
        "BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_THREADS": "4",  # the callback calls the sandbox's LWA on this same server
    }
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, env=env,
                   check=True, timeout=60)
    return ["bash", "bin/serve.sh", "web"], env


class Server:
    """A server process group whose stdout and stderr go to files, read back as one text."""

    def __init__(self, argv: list[str], env: dict, tmp_path: Path, port: int):
        self.port = port
        self.out, self.err = tmp_path / "stdout.log", tmp_path / "stderr.log"
        # Its own process group: stopping it stops runserver's worker and gunicorn's workers too.
        self.process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=self.out.open("w"), stderr=self.err.open("w"),
                                        start_new_session=True)

    def output(self) -> str:
        return self.out.read_text(errors="replace") + self.err.read_text(errors="replace")

    def wait_until_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.output()[-3000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"server did not start:\n{self.output()[-3000:]}")

    def wait_for_lines(self, *needles: str, timeout: float = 10) -> None:
        """Servers write a request's line after answering it: wait until the last ones are out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(needle in self.output() for needle in needles):
                return
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, a moment to flush, then SIGKILL whatever of the group is left (a qcluster
        winding down its workers takes longer than this test needs)."""
        for sig, grace in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass


@pytest.mark.parametrize("serve", [runserver, gunicorn], ids=["runserver", "gunicorn"])
def test_no_invitation_token_state_or_code_in_server_output(serve, tmp_path, sqlite_file_db):  # noqa: F811
    port = free_port()
    argv, env = serve(tmp_path, sqlite_file_db, port)
    done = subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=env, check=True, timeout=60,
                          capture_output=True, text=True)
    tokens = json.loads(done.stdout.strip().splitlines()[-1])
    unknown = secrets.token_urlsafe(32)
    base = f"http://127.0.0.1:{port}"
    server = Server(argv, env, tmp_path, port)
    try:
        # bin/run_dev.sh migrates, seeds and prints the demo link first: give it time on a busy machine.
        server.wait_until_listening(timeout=120)
        page, callback_url = browser_flow(f"{base}/connect/{tokens['live']}/")
        assert page.status_code == 200 and "all set" in page.text
        # The link is used now; the others expired or never existed.
        assert requests.get(f"{base}/connect/{tokens['live']}/", timeout=10).status_code == 410
        assert requests.get(f"{base}/connect/{tokens['expired']}/", timeout=10).status_code == 410
        assert requests.get(f"{base}/connect/{unknown}/", timeout=10).status_code == 404
        server.wait_for_lines("Not Found: /connect/", '" 404 ')
    finally:
        server.stop()

    query = parse_qs(urlparse(callback_url).query)
    found = {
        "live invitation token": tokens["live"],
        "expired invitation token": tokens["expired"],
        "unknown invitation token": unknown,
        "state": query["state"][0],
        "authorization code": query["spapi_oauth_code"][0],
    }
    output = server.output()
    # The lines that would carry them were written: request lines and Django's warnings.
    assert "GET /authflow/callback/" in output, output[-3000:]
    assert output.count("Gone: /connect/") >= 2, output[-3000:]
    assert "Not Found: /connect/" in output, output[-3000:]
    assert output.count('"GET /connect/') >= 4, output[-3000:]
    leaked = [name for name, value in found.items() if value in output]
    for value in found.values():  # the failure message must not print them either
        output = output.replace(value, "<secret>")
    assert leaked == [], f"{', '.join(leaked)} in the server's output:\n{output[-4000:]}"
