"""`make run` as people run it: `bin/run_dev.sh HOST PORT` (what the Makefile's `run` target runs)
on a port other than 8000, with a `.env` written by bin/write_env.py.

Its printed demo invitation link is followed over real HTTP, through the sandbox's consent page
and back; a second run reuses the demo seller; SIGTERM to the script alone stops everything.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests

from .conftest import ROOT
from .test_e2e_http import browser_flow
from .test_no_secrets_in_server_logs import Server, free_port
from .test_worker_command import alive

LINK_LINE = re.compile(r"^Invitation link for a demo seller: (\S+)$", re.M)


def dev_env(tmp_path: Path, database_url: str) -> dict:
    """The environment of a shell running `make run`: .env holds the keys, nothing names SITE_URL."""
    env_file = tmp_path / "dot.env"
    subprocess.run([sys.executable, "bin/write_env.py", str(env_file)], cwd=ROOT, check=True, timeout=30)
    # A .env written before SITE_URL followed HOST and PORT pinned it to port 8000.
    with env_file.open("a") as fh:
        fh.write("SITE_URL=http://127.0.0.1:8000\n")
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "PYTHON": sys.executable,
        "SPCONNECT_ENV_FILE": str(env_file),
        "DATABASE_URL": database_url,
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "Q_WORKERS": "1",
    }


def start(tmp_path: Path, env: dict, port: int, run: str) -> tuple[Server, str]:
    folder = tmp_path / run
    folder.mkdir()
    server = Server(["bash", "bin/run_dev.sh", "127.0.0.1", str(port)], env, folder, port)
    server.wait_until_listening(timeout=120)  # migrate, seed and invite come first
    found = LINK_LINE.search(server.output())
    assert found, server.output()[-3000:]
    return server, found.group(1)


def group_processes(pgid: int) -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid=,pgid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line.split()[1] == str(pgid) and not line.split()[2].startswith("Z")]


def stop_with_sigterm_to_the_script(server: Server) -> None:
    """`kill PID` of the script alone (what make does with its own SIGTERM): everything stops."""
    cluster = [int(line.split()[0]) for line in group_processes(server.process.pid)]
    os.kill(server.process.pid, signal.SIGTERM)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.stop()
        pytest.fail(f"bin/run_dev.sh still running 30 s after SIGTERM:\n{server.output()[-2000:]}")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (group_processes(server.process.pid) or any(alive(p) for p in cluster)):
        time.sleep(0.1)
    left = group_processes(server.process.pid)
    server.stop()
    assert left == [], f"left running after SIGTERM to bin/run_dev.sh: {left}"


def demo_sellers(env: dict) -> list[str]:
    script = (
        "import django, json; django.setup(); from sellers.models import Seller; "
        "print(json.dumps(list(Seller.objects.filter(tenant__slug='demo').values_list('name', 'status'))))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env | {"DJANGO_SETTINGS_MODULE": "spconnect.settings",
                          "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip().splitlines()[-1]


def test_make_run_on_another_port_links_there_reuses_its_demo_seller_and_stops_on_sigterm(tmp_path, sqlite_file_db):
    port = free_port()
    assert port != 8000
    base = f"http://127.0.0.1:{port}"
    env = dev_env(tmp_path, sqlite_file_db)

    server, link = start(tmp_path, env, port, "first")
    try:
        output = server.output()
        assert f"Admin login: {base}/admin/" in output
        assert f"Serving {base}/" in output
        assert f"written to files in {tmp_path / 'mail'}/, not sent" in output
        assert link.startswith(f"{base}/connect/"), link
        page, callback_url = browser_flow(link, spid="A1MAKERUN")
        # The consent page sent the browser back to this port, and the seller is connected.
        assert urlparse(callback_url).netloc == f"127.0.0.1:{port}", callback_url
        assert page.status_code == 200 and "all set" in page.text, page.text[:2000]
        assert page.url == f"{base}/authflow/result/"
    finally:
        stop_with_sigterm_to_the_script(server)
    assert demo_sellers(env) == '[["Demo Seller", "active"]]'
    # .env now names the address served, once, and stays readable by its owner only; commands run
    # beside the server (no SITE_URL in their environment) build their links there too.
    env_file = Path(env["SPCONNECT_ENV_FILE"])
    assert [line for line in env_file.read_text().splitlines() if line.startswith("SITE_URL=")] == [f"SITE_URL={base}"]
    assert env_file.stat().st_mode & 0o777 == 0o600
    invited = subprocess.run([sys.executable, "manage.py", "invite", "--tenant", "demo", "--name", "Beside Shop"], cwd=ROOT,
                             env=env | {"DJANGO_SETTINGS_MODULE": "spconnect.settings"}, capture_output=True, text=True,
                             timeout=60, check=True)
    assert invited.stdout.strip().splitlines()[-1].startswith(f"{base}/connect/")

    # The second run finds the same demo seller, connected, and prints a link that works.
    server, second_link = start(tmp_path, env, port, "second")
    try:
        assert second_link != link and second_link.startswith(f"{base}/connect/")
        assert "Demo Seller is already a seller of Demo Agency (Active); a new link" in server.output()
        page = requests.get(second_link, timeout=10)
        assert page.status_code == 200 and "Connect your Amazon seller account" in page.text
    finally:
        stop_with_sigterm_to_the_script(server)
    assert demo_sellers(env) == '[["Beside Shop", "invited"], ["Demo Seller", "active"]]'


def test_ctrl_c_stops_make_run(tmp_path, sqlite_file_db):
    port = free_port()
    server, _ = start(tmp_path, dev_env(tmp_path, sqlite_file_db), port, "run")
    try:
        os.killpg(server.process.pid, signal.SIGINT)  # what the terminal sends on Ctrl-C
        server.process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_processes(server.process.pid):
            time.sleep(0.1)
        assert group_processes(server.process.pid) == []
    finally:
        server.stop()
    assert server.process.returncode == 0, server.output()[-2000:]


MAIL_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
from django.core.mail import send_mail
if settings.DEBUG:
    send_mail("Subject line", "Body text", None, ["seller@example.com"])
print(json.dumps({"backend": settings.EMAIL_BACKEND, "path": settings.EMAIL_FILE_PATH}))
"""


def mail_settings(**env: str) -> dict:
    base = {"PATH": os.environ.get("PATH", ""), "SPCONNECT_ENV_FILE": "/nonexistent", "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "spconnect.settings", "SECRET_KEY": "k" * 50,
            "FIELD_ENCRYPTION_KEY": "iyHox1r1y7hesdCbWh1EvZHFwu4IN1JgMD6ez28BcFM="}
    done = subprocess.run([sys.executable, "-c", MAIL_SETTINGS], cwd=ROOT, env=base | env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_development_email_is_written_to_files_in_dot_mail_and_production_is_unchanged(tmp_path):
    default = mail_settings(DEBUG="true", EMAIL_FILE_PATH=str(tmp_path / "mail"))
    assert default["backend"] == "django.core.mail.backends.filebased.EmailBackend"
    [message] = list((tmp_path / "mail").iterdir())
    assert "Subject: Subject line" in message.read_text() and "Body text" in message.read_text()
    unset = mail_settings(DEBUG="false", ALLOWED_HOSTS="example.com", SITE_URL="https://example.com")
    assert unset["path"] == str(ROOT / ".mail")  # the folder .gitignore names
    assert unset["backend"] == "django.core.mail.backends.smtp.EmailBackend"
    assert ".mail/" in (ROOT / ".gitignore").read_text().splitlines()


def test_favicon_is_served_at_the_root_and_linked_from_the_public_pages(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body[:4] == b"\x00\x00\x01\x00" and response["Content-Type"] in ("image/x-icon", "image/vnd.microsoft.icon")
    assert '<link rel="icon" href="/favicon.ico"' in client.get("/").content.decode()
