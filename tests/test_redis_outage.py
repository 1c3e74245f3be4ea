"""Redis timeouts: a frozen Redis (SIGSTOP: connections are accepted, nothing answers) costs the
public pages at most REDIS_SOCKET_TIMEOUT, not redis-py's default 5 s, and the rate limit lets
them through; the cache and the broker both get the timeouts.

The Redis is one of the test's own, on a free port: the shared one is never frozen.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import redis
import requests

from .conftest import ROOT, subprocess_env
from .test_tasks import free_port, stop, wait_for_port

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")

# What a browser or a balancer gives up after; redis-py's default socket timeout (5 s) is longer,
# the project's (REDIS_SOCKET_TIMEOUT, 2 s by default) is shorter. Half a second under redis-py's
# default leaves a busy machine 2.5 s to render a page on top of the project's timeout.
CLIENT_TIMEOUT = 4.5

INVITE = """
import io, django
django.setup()
from django.core.management import call_command
call_command("seed_demo", stdout=io.StringIO())
out = io.StringIO()
call_command("invite", tenant="demo", name="Frozen Redis Seller", stdout=out)
print(out.getvalue().strip().splitlines()[-1])
"""

ENQUEUE = """
import json, time, django
django.setup()
from django_q.tasks import async_task
started = time.monotonic()
try:
    async_task("math.floor", 2.5)
    outcome = "enqueued"
except Exception as exc:
    outcome = type(exc).__name__
print(json.dumps({"outcome": outcome, "seconds": time.monotonic() - started}))
"""


class ThrowawayRedis:
    def __init__(self):
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="spconnect-redis-"))
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def close(self) -> None:
        if self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


@pytest.fixture
def own_redis(request):
    server = ThrowawayRedis()
    request.addfinalizer(server.close)
    wait_for_port(server.port, server.process)
    return server


def run_script(script: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


@needs_redis_server
def test_public_pages_answer_promptly_while_redis_is_frozen(own_redis, sqlite_file_db, tmp_path):  # noqa: F811
    server = own_redis
    port = free_port()
    env = subprocess_env(sqlite_file_db, REDIS_URL=server.url, SITE_URL=f"http://127.0.0.1:{port}")
    env.pop("REDIS_SOCKET_TIMEOUT", None)
    env.pop("REDIS_CONNECT_TIMEOUT", None)  # the defaults are what is tested
    link = run_script(INVITE, env)
    # The suite runs tasks inline (sync); this process enqueues through the broker like web processes.
    (tmp_path / "broker_settings.py").write_text(
        "from tests.settings import *  # noqa\nQ_CLUSTER = {k: v for k, v in Q_CLUSTER.items() if k != 'sync'}\n"
    )
    broker_env = {**env, "DJANGO_SETTINGS_MODULE": "broker_settings", "PYTHONPATH": f"{ROOT}:{tmp_path}"}
    web = subprocess.Popen(
        [str(Path(sys.executable).with_name("gunicorn")), "spconnect.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "2", "--worker-class", "gthread"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    counters = redis.Redis.from_url(server.url, socket_timeout=5)
    try:
        wait_for_port(port, web)
        assert requests.get(link, timeout=CLIENT_TIMEOUT).status_code == 200
        assert counters.keys("*spconnect:ratelimit:public:*"), "the rate limit does not count in this Redis"
        server.freeze()
        try:
            # Each request waits for the cache once, then the rate limit lets it through.
            frozen = [requests.get(link, timeout=CLIENT_TIMEOUT).status_code for _ in range(3)]
            enqueue = json.loads(run_script(ENQUEUE, broker_env))
        finally:
            server.thaw()
        assert requests.get(link, timeout=CLIENT_TIMEOUT).status_code == 200
    finally:
        logs = stop(web)
    assert frozen == [200, 200, 200], logs
    assert "Rate limit not applied, the cache is unreachable: TimeoutError" in logs
    # The broker gives up as quickly: a web process enqueuing a task is not held for 5 s either.
    assert enqueue["outcome"] == "TimeoutError" and enqueue["seconds"] < CLIENT_TIMEOUT, enqueue


SHOW_REDIS_SETTINGS = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({"cache": settings.CACHES["default"].get("OPTIONS"), "broker": settings.Q_CLUSTER.get("redis")}))
"""


def test_timeouts_reach_the_cache_and_the_broker_and_redis_url_query_wins():
    env = subprocess_env("sqlite:///unused.sqlite3", REDIS_URL="redis://:p%40ss@redis.internal:6379/2?socket_timeout=4",
                         REDIS_CONNECT_TIMEOUT="1.5", REDIS_SOCKET_TIMEOUT="3")
    shown = json.loads(run_script(SHOW_REDIS_SETTINGS, env))
    assert shown["cache"] == {"socket_connect_timeout": 1.5, "socket_timeout": 3.0}
    assert shown["broker"] == "redis://:p%40ss@redis.internal:6379/2?socket_connect_timeout=1.5&socket_timeout=4"
    options = redis.connection.parse_url(shown["broker"])
    assert options["password"] == "p@ss" and options["socket_connect_timeout"] == 1.5 and options["socket_timeout"] == 4


@pytest.mark.parametrize("value", ["1", "0.5", "60"])
def test_a_redis_socket_timeout_of_1_s_or_less_or_over_30_s_is_refused(value):
    # 1 s or less: every idle blocking pop of the broker (1 s on the server) would time out.
    env = subprocess_env("sqlite:///unused.sqlite3", REDIS_SOCKET_TIMEOUT=value)
    done = subprocess.run([sys.executable, "-c", SHOW_REDIS_SETTINGS], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "REDIS_SOCKET_TIMEOUT must be more than 1 and at most 30 seconds" in done.stderr
