"""/healthz: 200 when the database and the task broker answer, 503 (naming which) otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

ROOT = Path(__file__).resolve().parent.parent

# Run /healthz in a fresh process whose database is somewhere nothing answers.
PROBE = """
import json, django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from django.test import Client
response = Client().get("/healthz")
print(json.dumps({"status": response.status_code, "body": json.loads(response.content)}))
"""


def probe(env: dict) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", **env},
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_healthy_when_database_and_broker_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok", "checks": {"database": "ok", "broker": "ok"}, "detail": {"refresh_tasks_lost_last_hour": 0},
    }
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_detail_counts_grants_that_lost_a_refresh_task_in_the_last_hour_without_failing(client, tenant):
    from sellers.models import Grant
    from tests.conftest import make_grant, make_seller

    now = timezone.now()
    noticed, expired, long_ago, claimed = (make_grant(make_seller(tenant, name)) for name in ("A", "B", "C", "D"))
    Grant.objects.filter(pk=noticed.pk).update(refresh_lost_at=now - timedelta(minutes=50))
    Grant.objects.filter(pk=expired.pk).update(refresh_claimed_until=now - timedelta(seconds=1))  # no sweep yet
    Grant.objects.filter(pk=long_ago.pk).update(refresh_lost_at=now - timedelta(minutes=70))
    Grant.objects.filter(pk=claimed.pk).update(refresh_claimed_until=now + timedelta(minutes=5))  # still queued
    response = client.get("/healthz")
    assert response.status_code == 200  # lost tasks are not an outage of this process
    assert response.json()["detail"] == {"refresh_tasks_lost_last_hour": 2}


@pytest.mark.django_db
def test_503_when_the_redis_broker_is_unreachable(client, settings):
    settings.Q_CLUSTER = {k: v for k, v in settings.Q_CLUSTER.items() if k != "orm"} | {"redis": "redis://127.0.0.1:1/0"}
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable", "checks": {"database": "ok", "broker": "unreachable"},
        "detail": {"refresh_tasks_lost_last_hour": 0},
    }
    assert b"127.0.0.1" not in response.content  # says which, never where


@pytest.mark.parametrize(
    "database_url",
    ["postgres://postgres@127.0.0.1:1/spc_nowhere", "sqlite:////nonexistent-directory/spconnect.sqlite3"],
    ids=["postgresql-refused", "sqlite-unopenable"],
)
def test_503_when_the_database_is_unreachable(database_url):
    # Without REDIS_URL the broker is the ORM queue: it goes down with the database.
    env = {"DATABASE_URL": database_url, "REDIS_URL": ""}
    answer = probe(env)
    assert answer["status"] == 503
    assert answer["body"]["checks"] == {"database": "unreachable", "broker": "unreachable"}


@pytest.mark.postgres(reason="a server connection to take away and give back")
@pytest.mark.django_db(transaction=True)
def test_503_while_postgres_is_away_and_200_once_it_is_back(client):
    # Simulated outage: the shared PostgreSQL is never stopped for real, the connection is
    # pointed at a port where nothing listens instead.
    real_port = connection.settings_dict["PORT"]
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        down = client.get("/healthz")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = real_port
    assert down.status_code == 503
    assert down.json()["checks"]["database"] == "unreachable"
    back = client.get("/healthz")
    assert back.status_code == 200, back.content


def _postgres_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


class ThrowawayPostgres:
    """A PostgreSQL server of the test's own (initdb in a temporary directory, its own port), so
    that it can really be stopped and started without touching the shared one."""

    def __init__(self, port: int):
        # Outside pytest's private temporary tree: the server's account must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="spconnect-healthz-pg-", dir="/tmp"))
        self.directory.chmod(0o777)
        self.bin, self.data, self.port = _postgres_bin(), self.directory / "data", port
        self.log = self.directory / "postgres.log"
        # PostgreSQL refuses to run as root: use its own system account then.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise AssertionError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout)[-1500:]}")

    def init(self) -> None:
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    def start(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30",
                 "-o", f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off", "start")

    def stop(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def stop_if_running(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()


@pytest.fixture
def throwaway_postgres(request) -> ThrowawayPostgres:
    from .test_tasks import free_port

    server = ThrowawayPostgres(free_port())
    request.addfinalizer(lambda: shutil.rmtree(server.directory, ignore_errors=True))
    server.init()
    server.start()
    request.addfinalizer(server.stop_if_running)  # runs first: whatever fails below, no server is left behind
    return server


def serve_with_gunicorn(server: ThrowawayPostgres, *, threads: int, **settings: str) -> tuple[subprocess.Popen, str]:
    """gunicorn (one gthread worker) serving the app against `server`; returns it and its base URL."""
    from .test_tasks import free_port, stop, wait_for_port

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{server.port}/postgres",
        "DATABASE_CONNECT_TIMEOUT": "2",
        **settings,
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=120)
    web = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "spconnect.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", str(threads), "--worker-class", "gthread"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for_port(port, web)
    except BaseException:
        stop(web)
        raise
    return web, f"http://127.0.0.1:{port}"


needs_postgres_programs = pytest.mark.skipif(_postgres_bin() is None, reason="needs PostgreSQL's server programs (initdb, pg_ctl)")


@pytest.mark.postgres(reason="a PostgreSQL server of its own to stop and start")
@needs_postgres_programs
def test_a_running_app_answers_503_while_its_database_is_stopped_and_200_once_it_is_back(throwaway_postgres):
    import requests

    from .test_tasks import stop

    server = throwaway_postgres
    web, base = serve_with_gunicorn(server, threads=2)
    try:
        url = f"{base}/healthz"
        assert requests.get(url, timeout=10).status_code == 200
        server.stop()
        down = requests.get(url, timeout=10)
        assert down.status_code == 503 and down.json()["checks"]["database"] == "unreachable"
        server.start()
        back = requests.get(url, timeout=10)
        assert back.status_code == 200, back.text
    finally:
        logs = stop(web)
    assert "Traceback" not in logs, logs


@pytest.mark.postgres(reason="a PostgreSQL server of its own to restart")
@needs_postgres_programs
def test_persistent_connections_survive_a_database_restart_without_a_single_error(throwaway_postgres):
    """CONN_MAX_AGE keeps each thread's connection between requests; a restart ends them all on
    the server side. Without CONN_HEALTH_CHECKS each thread reused its dead connection once after
    the database was back: a 500 on a page, a false 503 on /healthz."""
    from concurrent.futures import ThreadPoolExecutor

    import requests

    from .test_tasks import stop

    threads = 4
    server = throwaway_postgres
    web, base = serve_with_gunicorn(server, threads=threads, CONN_MAX_AGE="60", SPCONNECT_RATE_LIMIT_REQUESTS="0")
    pages = [f"{base}/healthz", f"{base}/connect/no-such-invitation/"] * (4 * threads)

    def statuses(urls: list[str]) -> list[tuple[str, int]]:
        # As many at once as the web process has threads: every thread opens (then keeps) a connection.
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda url: (url.removeprefix(base), requests.get(url, timeout=10).status_code), urls))

    try:
        assert set(statuses(pages)) == {("/healthz", 200), ("/connect/no-such-invitation/", 404)}
        server.stop()  # -m fast: the server ends every connection ("terminating connection due to administrator command")
        server.start()
        first_probe = requests.get(f"{base}/healthz", timeout=10)
        after = statuses(pages)
    finally:
        logs = stop(web)
    assert first_probe.status_code == 200, first_probe.text
    assert [answer for answer in after if answer[1] >= 500] == [], logs
    assert "Traceback" not in logs, logs


@pytest.mark.django_db
def test_healthz_answers_over_plain_http_when_https_is_enforced(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/").status_code == 301  # everything else still goes to HTTPS


@pytest.mark.django_db
def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
